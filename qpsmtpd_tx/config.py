"""qpsmtpd's configuration files: lookup, syntax, ``$include``, defaults and cdb maps.

Config item ``X`` is the file ``X``, looked up per file: ``<config_dir>/X`` if it exists,
else ``<program_dir>/config/X``, else ``<qmail_dir>/control/X``. Lines are trimmed; blank
lines and lines whose first non-blank character is ``#`` are dropped (an inline ``#`` is
kept); a line ``$include PATH`` splices in a file, or every regular non-dot file of a
directory in sorted order. Files are decoded as UTF-8, undecodable bytes kept through
``surrogateescape`` so that nothing is lost.
"""

import os
import re
import socket
import time

import attr

from qpsmtpd_tx.cdb import CDB, CDBError
from qpsmtpd_tx.file_version import file_version

#: Perl's ``\s`` on byte strings: what qpsmtpd trims and splits on
WHITESPACE = " \t\n\r\f\v"
_WHITESPACE_RUN = re.compile("[%s]+" % re.escape(WHITESPACE))
_INTEGER = re.compile(r"[+-]?[0-9]+")

#: seconds before a map whose ``.cdb`` file was missing is looked for again (a connection
#: looking for it in every config directory cost more than the rest of the relay check)
NO_CDB_RECHECK = 1.0

#: origin given to lines supplied by ``config_hook`` and by the built-in defaults
HOOK_ORIGIN = "<config hook>"
DEFAULT_ORIGIN = "<built-in default>"

_DEFAULTS = {
    "me": socket.gethostname,
    "timeout": lambda: "1200",
}


class ConfigError(Exception):
    """A configuration file is wrong; the message starts with ``path:lineno:`` when known."""

    def __init__(self, message, path=None, lineno=None):
        """Keep ``path`` and ``lineno`` (either may be None) and prefix them to ``message``."""
        self.path = path
        self.lineno = lineno
        if path is not None and lineno is not None:
            message = "%s:%d: %s" % (path, lineno, message)
        elif path is not None:
            message = "%s: %s" % (path, message)
        super().__init__(message)


@attr.s(frozen=True)
class ConfigLine:
    """One config value and where it came from (1-based line number)."""

    text = attr.ib()
    path = attr.ib()
    lineno = attr.ib()


def split_words(text):
    """Split ``text`` on runs of whitespace as qpsmtpd does (``split /\\s+/``)."""
    return [word for word in _WHITESPACE_RUN.split(text) if word]


class Config:
    """Reads config items the way qpsmtpd does, caching each item once read.

    ``config_hook``, if set, is called as ``config_hook(name)`` before any file is read;
    a list it returns is the value (cached like a file's), None means "not supplied".
    """

    config_hook = None

    def __init__(self, config_dir=None, program_dir=None, qmail_dir=None, environ=None):
        """Set the three lookup places; unset ones come from ``environ`` (default os.environ)."""
        if environ is None:
            environ = os.environ
        # An empty QPSMTPD_CONFIG counts as unset (qpsmtpd would look in "/").
        self.config_dir = config_dir or environ.get("QPSMTPD_CONFIG") or None
        self.program_dir = program_dir
        self.qmail_dir = qmail_dir or environ.get("QMAIL") or "/var/qmail"
        self._cache = {}
        self._cdb_cache = {}
        #: map name → when to look again for its .cdb file, which was not there
        self._no_cdb = {}
        #: map name → (generation, its plain item as a mapping), see get_map
        self._plain_maps = {}
        #: goes up whenever cached items are dropped, so parsed copies know to re-parse
        self.generation = 0

    def search_dirs(self):
        """The directories looked in, in order."""
        dirs = []
        if self.config_dir:
            dirs.append(self.config_dir)
        if self.program_dir:
            dirs.append(os.path.join(self.program_dir, "config"))
        dirs.append(os.path.join(self.qmail_dir, "control"))
        return dirs

    def path_of(self, name):
        """The file config item ``name`` comes from, or None if no lookup place has it."""
        for directory in self.search_dirs():
            path = os.path.join(directory, name)
            if os.path.exists(path):
                return path
        return None

    def clear_cache(self):
        """Forget every item read so far (qpsmtpd does this on HUP)."""
        self._cache.clear()
        self._cdb_cache.clear()
        self._no_cdb.clear()
        self.generation += 1

    def forget(self, name):
        """Forget one cached item, so its next lookup reads it again (e.g. a config hook changed it)."""
        self._cache.pop(name, None)
        self.generation += 1

    def get_lines(self, name):
        """The values of config item ``name`` as :class:`ConfigLine`, with their origin.

        Order of precedence: ``config_hook``, then the file, then a built-in default
        (``me``, ``timeout``) when the file gives no line. A file that cannot be read (or
        includes itself) raises ConfigError, the same one until the item is read again.
        """
        cached = self._cache.get(name)
        if cached is None:
            try:
                cached = self._load(name)
            except ConfigError as e:
                cached = e      # (not read again at every lookup: a lookup may be per connection)
            self._cache[name] = cached
        if isinstance(cached, ConfigError):
            raise cached.with_traceback(None)
        return list(cached)

    def get(self, name):
        """The values (lines) of config item ``name``; see :meth:`get_lines`."""
        return [line.text for line in self.get_lines(name)]

    def get_scalar(self, name, default=None):
        """The first value of config item ``name``, or ``default`` if it has none."""
        lines = self.get(name)
        return lines[0] if lines else default

    def get_int(self, name, default, minimum=None):
        """The first value of ``name`` as an int, or ``default`` if it has none.

        Raises ConfigError naming the file and line if the value is not an integer (or is
        below ``minimum``, when given).
        """
        lines = self.get_lines(name)
        if not lines:
            return default
        line = lines[0]
        if not _INTEGER.fullmatch(line.text):
            raise ConfigError("%s: not an integer: %r" % (name, line.text), line.path, line.lineno)
        if minimum is not None and int(line.text) < minimum:
            raise ConfigError("%s: must be at least %d, not %s" % (name, minimum, line.text),
                              line.path, line.lineno)
        return int(line.text)

    def get_map(self, name):
        """Config item ``name`` as a mapping: ``<name>.cdb`` if found, else the file's lines.

        The cdb file is read again whenever it changes (qpsmtpd never caches maps); a cdb file
        created where there was none is used within :data:`NO_CDB_RECHECK` seconds; one that
        is not a valid cdb raises ConfigError naming it (see :meth:`Plugin.config_map`). The
        fallback maps each line of the plain item to "": the same mapping until the item is
        read again (SIGHUP, :meth:`forget`), so read it, do not change it.
        """
        missing_until = self._no_cdb.get(name)
        if missing_until is None or time.monotonic() >= missing_until:
            path = self.path_of(name + ".cdb")
            if path is not None and os.path.isfile(path):
                self._no_cdb.pop(name, None)
                return self._open_cdb(path)
            self._no_cdb[name] = time.monotonic() + NO_CDB_RECHECK
        cached = self._plain_maps.get(name)
        if cached is None or cached[0] != self.generation:
            # (built per lookup, it cost relay a microsecond per connection, rcpt_ok per RCPT)
            cached = self._plain_maps[name] = (self.generation, dict.fromkeys(self.get(name), ""))
        return cached[1]

    def _open_cdb(self, path):
        """The CDB at ``path``, opened again when the file changed. A file that is no cdb
        raises ConfigError, the same one until the file changes (it is not opened again at
        each lookup)."""
        try:
            version = file_version(os.stat(path))
        except OSError as e:
            raise ConfigError("cannot read cdb file: %s" % e.strerror, path)
        cached = self._cdb_cache.get(path)
        if cached is None or cached[0] != version:
            try:
                opened = CDB.open(path)
            except OSError as e:
                opened = ConfigError("cannot read cdb file: %s" % e.strerror, path)
            except CDBError as e:
                opened = ConfigError(e.reason, path)
            cached = self._cdb_cache[path] = (version, opened)
        if isinstance(cached[1], ConfigError):
            raise cached[1].with_traceback(None)
        return cached[1]

    def _load(self, name):
        if self.config_hook is not None:
            values = self.config_hook(name)
            if values is not None:
                return [ConfigLine(str(value), HOOK_ORIGIN, n) for n, value in enumerate(values, 1)]
        path = self.path_of(name)
        lines = self._read(path, ()) if path is not None else []
        if not lines and name in _DEFAULTS:
            lines = [ConfigLine(_DEFAULTS[name](), DEFAULT_ORIGIN, 0)]
        return lines

    def _read(self, path, stack, include_from=(None, None)):
        """The lines of file ``path``, includes expanded.

        ``stack`` holds the real paths of the files whose ``$include`` led here, to
        detect cycles; ``include_from`` is the (path, lineno) of that ``$include``.
        """
        if not os.path.isfile(path):
            return []  # a directory given as an item reads as empty, as in qpsmtpd
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise ConfigError("cannot read %s: %s" % (path, e.strerror), *include_from)

        stack = stack + (os.path.realpath(path),)
        lines = []
        text = data.decode("utf-8", "surrogateescape")
        for lineno, raw in enumerate(text.split("\n"), 1):
            line = raw.strip(WHITESPACE)
            if not line or line.startswith("#"):
                continue
            words = split_words(line)
            if len(words) == 2 and words[0] == "$include":
                for target in self._include_targets(words[1], path, lineno):
                    if os.path.realpath(target) in stack:
                        raise ConfigError("circular $include of %s" % target, path, lineno)
                    lines.extend(self._read(target, stack, (path, lineno)))
            else:
                lines.append(ConfigLine(line, path, lineno))
        return lines

    def _include_targets(self, inclusion, path, lineno):
        """The files ``$include inclusion`` (at ``path``:``lineno``) reads: one, a directory's, or none."""
        if not os.path.isabs(inclusion):
            inclusion = self.path_of(inclusion)
            if inclusion is None:
                return []
        if os.path.isdir(inclusion):
            try:
                names = os.listdir(inclusion)
            except OSError as e:
                raise ConfigError("cannot list %s: %s" % (inclusion, e.strerror), path, lineno)
            # Sort as qpsmtpd (Perl's sort on bytes) does.
            names.sort(key=os.fsencode)
            paths = (os.path.join(inclusion, n) for n in names if not n.startswith("."))
            return [p for p in paths if os.path.isfile(p)]
        return [inclusion]
