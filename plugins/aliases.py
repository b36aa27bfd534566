"""aliases — per-recipient settings and alias targets from a flat file, at RCPT time.

For each recipient, looks the address up in an aliases file and puts the ``key=value``
settings it finds into the recipient's notes, where content filters read them
(``spamassassin_reject_threshold``, ``virus_action``… see ``qpsmtpd_tx/policy.py``). An entry
may also rewrite the recipient to one or more other addresses. Always answers DECLINED: put it
ABOVE ``rcpt_ok`` (and above any other plugin that may answer OK for a recipient, e.g.
``relay only 1``), which still decides whether the recipient is accepted; a plugin that
answers before it runs leaves the recipient without notes.

Arguments: ``[FILE] [check_interval SECONDS] [loglevel LEVEL]``
  ``FILE``            the aliases file. A name with a ``/`` is a path, relative to the
                      current directory or absolute (``etc/aliases``, ``/srv/mail/aliases``);
                      a bare name (``aliases``, ``aliases.shop``) is a config item, looked up
                      like any qpsmtpd config file: ``--config`` directory, then ``config/``
                      beside the program, then ``$QMAIL/control``. Default: the config item
                      ``aliases`` (``etc/aliases`` with the shipped ``--config etc``). The file
                      must exist at start-up.
  ``check_interval``  seconds between two checks of the file for changes (default 5; 0 checks
                      at every RCPT). A check is one ``stat``.
  ``loglevel``        per-plugin log level (``6``, ``LOGINFO``, ``+1``, ``-2``).

File format (UTF-8). One entry per line: a recipient PATTERN at the start of the line, then
settings ``key=value``, then optionally ``->`` and the alias targets::

    # comment lines start with '#'; so does a comment after a word: '   # like this'
    *                    spamassassin_reject_threshold=10          # everybody else
    @example.com         spamassassin_reject_threshold=6  virus_action=reject
    @.example.com        spamassassin_reject_threshold=8           # every subdomain
    alice@example.com    spamassassin_reject_threshold=3           # + virus_action=reject
    bob@example.com      virus_action=                             # back to the plugin's own
    sales@example.com    -> bob@example.com, carol@example.net
    abuse@example.com    spamassassin_reject_threshold=100 -> security@example.net
    @old-name.example    -> @example.com                           # same user, new domain
    team@example.com     spamassassin_reject_threshold=4
        -> alice@example.com, bob@example.com,                     # continued lines
           carol@example.net
    postmaster           spamassassin_reject_threshold=100         # a bare <postmaster>

PATTERN is one of (matched without regard to case):
  ``user@domain``    one address (``<postmaster>`` without domain: ``postmaster``);
  ``@domain``        every address at that domain;
  ``@.domain``       every address at any subdomain of it (not the domain itself), as a
                     ``.domain`` line in ``rcpthosts``;
  ``*``              every address (the catch-all default). Takes no targets: it would
                     redirect every recipient, relayed mail included.
``key=value``: ``key`` is a note name (letters, digits, ``_ . -``; not starting with a digit),
``value`` any text without spaces. ``key=`` (empty) removes a setting inherited from a less
specific pattern, so the filter's plugin argument or default applies again.
``->`` then the targets, separated by commas and/or spaces: addresses ``user@domain``, or
``@domain`` for the recipient's own local part at another domain. Everything after ``->``
is a target, so settings come before it.
A pattern alone (no settings, no ``->``) is allowed: the address inherits the settings
and is an exception to the targets of a less specific pattern. Each pattern may be listed
once. A line starting with a space or tab continues the entry above (comment and blank
lines in between are skipped). A local part cannot contain spaces here, and a word starting
with ``#`` starts a comment.

Lookup and precedence. Every pattern that matches a recipient applies, from the least to the
most specific: ``*``, then ``@.domain`` patterns from the farthest parent to the nearest,
then ``@domain``, then the exact address. Settings MERGE: a more specific pattern overrides
the keys it names and inherits the others (above: alice gets threshold 3 and
``virus_action=reject``). Targets do NOT merge: only the most specific matching entry's
targets count, so an exact entry without ``->`` is an exception to an ``@domain ->``
catch-all. Targets carry the settings of the entry that matched the address the client
sent, not their own entries' (targets are not looked up again: write final addresses; a
target that is itself an alias with targets is reported as a warning at load time).

What a filter then uses for a recipient (see the README, "Per-recipient policy"): the
recipient's note, else the filter's argument on its ``plugins`` line, else its default. A
note whose value the filter cannot use (``spamassassin_reject_threshold=lots``) is ignored
the same way. Values that a loaded filter's declared setting cannot use are logged as
LOGWARN with file and line, at the first RCPT after start-up and whenever a new version of
the file is loaded.

Rewriting. A recipient with targets keeps its address until it is accepted (so ``rcpt_ok``
decides relaying on the address the client sent, and the ``250`` reply names it); the
session then puts the targets into the transaction in its place, each with a copy of the
recipient's notes. A target already in the transaction is not added twice. For recipient
grouping (config ``recipient_policy``) the targets count as the recipient the client sent:
all of them go into the transaction, or the whole alias gets ``452 4.5.3``.

Errors. At start-up, a malformed line stops the server with ``FILE:LINE: what is wrong``
(as does a missing file). At run time the file is re-read when its size, modification time,
change time or inode changes (checked at most every ``check_interval`` seconds, at an RCPT;
the change time catches a file copied back with its old modification time, ``cp -p``), in the
server's I/O thread pool, so a large file does not stop the server from serving; the old
table serves until the new one is complete, then is replaced at once. A new file that is
broken or unreadable is logged as LOGERROR with ``FILE:LINE`` and the old table stays in
use until the file is fixed.

Config files: the aliases file (above).

Notes: sets, on each recipient that an entry matches, the merged settings; with targets also
``alias_targets`` (list of addresses, expanded by the session) and ``original_recipient``
(the address given in RCPT; it stays on every target).

Replies: none (always DECLINED).
"""

import os
import re

from twisted.internet import reactor

from qpsmtpd_tx.address import (
    MAX_LOCAL_PART,
    MAX_PATH,
    Address,
    is_valid_address_literal,
    is_valid_domain,
)
from qpsmtpd_tx import policy
from qpsmtpd_tx.codes import DECLINED, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd_tx.file_version import file_version
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.policy import ALIAS_TARGETS, ORIGINAL_RECIPIENT

DEFAULT_CONFIG_ITEM = "aliases"
DEFAULT_CHECK_INTERVAL = 5.0
ARROW = "->"
CATCH_ALL = "*"

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
# '#' at the start of a word starts a comment
_COMMENT = re.compile(r"(?:^|[ \t])#")
_SPACE = " \t"
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# the common ``dot.atom@host.name`` form, which Address.parse would accept and write back
# unchanged: a fast path for files of 100,000 addresses (anything else goes through it)
_FAST_ADDRESS = re.compile(r"(%s(?:\.%s)*)@%s(?:\.%s)*\Z" % (_ATEXT, _ATEXT, _LABEL, _LABEL))


class AliasesError(Exception):
    """A malformed aliases file; the message starts with ``FILE:LINE:`` when a line is at fault."""

    def __init__(self, path, lineno, message, signature=None):
        self.path = path
        self.lineno = lineno
        self.signature = signature
        where = "%s:%d: " % (path, lineno) if lineno else "%s: " % (path,)
        super().__init__(where + message)


class AliasTable:
    """A parsed aliases file: dicts keyed by lower-case address / domain.

    Each entry is a pair ``(settings, targets)``: ``settings`` a tuple of ``(key, value)``
    (value None: remove the key), ``targets`` a tuple of ``user@host`` or ``@domain``
    strings. Identical entries are one shared object, so 100,000 lines holding a few
    distinct settings cost little more than their keys.
    """

    __slots__ = ("path", "signature", "exact", "domains", "subdomains", "default",
                 "lines", "entry_count", "validated")

    def __init__(self, path, signature=None):
        self.path = path
        self.signature = signature
        self.exact = {}
        self.domains = {}
        self.subdomains = {}
        self.default = None
        #: {settings tuple: first line using it}, to report bad values with their line
        self.lines = {}
        self.entry_count = 0
        self.validated = False

    def matches(self, recipient):
        """The entries matching ``recipient``, least specific first, as ``(pattern, entry)``."""
        found = []
        if self.default is not None:
            found.append((CATCH_ALL, self.default))
        host = recipient.host
        if host:
            host = host.lower()
            if self.subdomains:
                labels = host.split(".")
                for i in range(len(labels) - 1, 0, -1):     # farthest parent first
                    parent = ".".join(labels[i:])
                    entry = self.subdomains.get(parent)
                    if entry is not None:
                        found.append(("@." + parent, entry))
            entry = self.domains.get(host)
            if entry is not None:
                found.append(("@" + host, entry))
        if self.exact:
            key = recipient.address.lower()
            entry = self.exact.get(key)
            if entry is not None:
                found.append((key, entry))
        return found

    def lookup(self, recipient):
        """``(notes, targets, patterns)`` for ``recipient``; targets are full addresses.

        ``notes`` is the merged dict of settings, ``patterns`` the patterns that matched,
        least specific first (empty if none did).
        """
        found = self.matches(recipient)
        notes = {}
        if not found:
            return notes, [], []
        for _, (settings, _) in found:
            for key, value in settings:
                if value is None:
                    notes.pop(key, None)
                else:
                    notes[key] = value
        targets = list(found[-1][1][1])
        for i, target in enumerate(targets):
            if target[0] == "@":
                targets[i] = Address(recipient.user, target[1:]).address
        return notes, targets, [pattern for pattern, _ in found]

    def __len__(self):
        return self.entry_count


class _Parser:
    """Turns the text of an aliases file into an AliasTable (pure: safe in a thread)."""

    def __init__(self, path, signature=None):
        self.path = path
        self.table = AliasTable(path, signature)
        self.shared = {}         # entry interning: equal entries are one object
        self.target_lines = {}   # exact key -> line, for entries with targets (warnings)
        self.warnings = []
        # the entry being read: [lineno, kind, key, settings, targets, arrow lineno or 0]
        self.entry = None

    def error(self, lineno, message):
        return AliasesError(self.path, lineno, message, self.table.signature)

    def lines(self, lines):
        """``(lineno, line, words)`` for every line holding words, comments removed."""
        for lineno, line in enumerate(lines, 1):
            if "#" in line:
                m = _COMMENT.search(line)
                if m:
                    line = line[:m.start()]
            words = line.split()
            if words:
                yield lineno, line, words

    def parse(self, lines, reopen):
        """Parse ``lines`` (an iterable of str); ``reopen()`` gives them again (for errors)."""
        self.reopen = reopen
        for lineno, line, words in self.lines(lines):
            if line[0] in _SPACE:
                if self.entry is None:
                    raise self.error(lineno, "continuation line without an entry above it")
                self.feed(lineno, words)
                continue
            self.finish()
            kind, key = self.pattern(lineno, words[0])
            self.entry = [lineno, kind, key, [], [], 0]
            if len(words) > 1:
                self.feed(lineno, words[1:])
        self.finish()
        self.check_targets()
        return self.table

    def pattern(self, lineno, word):
        """``(kind, key)`` of a PATTERN: kind is exact, domains, subdomains or default."""
        m = _FAST_ADDRESS.match(word)
        if m is not None and len(m.group(1)) <= MAX_LOCAL_PART and len(word) <= MAX_PATH - 2:
            return "exact", word.lower()
        if word == CATCH_ALL:
            return "default", CATCH_ALL
        if word.startswith("@."):
            key = word[2:].lower()
            if not is_valid_domain(key):
                raise self.error(lineno, "%r: not a domain after '@.'" % word)
            return "subdomains", key
        if word.startswith("@"):
            key = word[1:].lower()
            if not (is_valid_domain(key) or is_valid_address_literal(key)):
                raise self.error(lineno, "%r: not a domain after '@'" % word)
            return "domains", key
        address = Address.parse(word)
        if address is None or address.is_null or word.startswith("<"):
            raise self.error(lineno, "%r: not an address, @domain, @.domain or *" % word)
        return "exact", address.address.lower()

    def feed(self, lineno, words):
        entry = self.entry
        settings, targets = entry[3], entry[4]
        for word in words:
            if entry[5]:
                for part in word.split(","):
                    if part:
                        targets.append(self.target(lineno, part))
            elif word == ARROW:
                entry[5] = lineno
            else:
                key, eq, value = word.partition("=")
                if not eq:
                    hint = " (targets go after '->')" if "@" in word else ""
                    raise self.error(lineno, "%r: expected key=value or '->'%s" % (word, hint))
                if not _KEY.match(key):
                    raise self.error(lineno, "%r: bad setting name %r (letters, digits, _ . -)"
                                     % (word, key))
                if key in (ALIAS_TARGETS, ORIGINAL_RECIPIENT):
                    raise self.error(lineno, "%r: %s is set by the aliases plugin itself; use '->'"
                                     % (word, key))
                if any(k == key for k, _ in settings):
                    raise self.error(lineno, "%r: setting %s given twice" % (word, key))
                settings.append((key, value or None))

    def target(self, lineno, word):
        """A target as stored: ``user@host`` (quoted as needed) or ``@domain``."""
        m = _FAST_ADDRESS.match(word)
        if m is not None and len(m.group(1)) <= MAX_LOCAL_PART and len(word) <= MAX_PATH - 2:
            return word
        if word.startswith("@"):
            domain = word[1:]
            if not (is_valid_domain(domain) or is_valid_address_literal(domain)):
                raise self.error(lineno, "target %r: not a domain after '@'" % word)
            return "@" + domain.lower()
        address = Address.parse(word)
        if address is None or address.is_null or address.host is None or word.startswith("<"):
            raise self.error(lineno, "target %r: not an address user@domain or @domain%s"
                             % (word, " (settings go before '->')" if "=" in word else ""))
        return address.address

    def finish(self):
        """Store the entry being read (at the next entry and at the end of the file)."""
        entry, self.entry = self.entry, None
        if entry is None:
            return
        lineno, kind, key, settings, targets, arrow = entry
        if arrow and not targets:
            raise self.error(arrow, "'->' without targets")
        table = self.table
        value = (tuple(settings), tuple(targets))
        value = self.shared.setdefault(value, value)
        if kind == "exact":
            found = table.exact
        elif kind == "default":
            if targets:
                raise self.error(lineno, "'*' cannot have targets: it would redirect every "
                                         "recipient, relayed mail included")
            if table.default is not None:
                raise self.duplicate(lineno, kind, key)
            table.default = value
            found = None
        else:
            found = table.domains if kind == "domains" else table.subdomains
        if found is not None:
            if key in found:
                raise self.duplicate(lineno, kind, key)
            found[key] = value
        if targets and kind == "exact":
            self.target_lines[key] = lineno
        if value[0] not in table.lines:
            table.lines[value[0]] = lineno
        table.entry_count += 1

    def duplicate(self, lineno, kind, key):
        """The error for a pattern listed twice, naming the line of its first entry."""
        for first, line, words in self.lines(self.reopen()):
            if line[0] not in _SPACE and self.pattern(first, words[0]) == (kind, key):
                break
        shown = {"exact": "%s", "domains": "@%s", "subdomains": "@.%s", "default": "%s"}[kind]
        return self.error(lineno, "%s is already listed on line %d" % (shown % key, first))

    def check_targets(self):
        """Targets that are themselves aliases (not expanded again) become warnings."""
        exact = self.table.exact
        for key, lineno in self.target_lines.items():
            for target in exact[key][1]:
                if target[0] != "@":
                    hit = exact.get(target.lower())
                    if hit is not None and hit[1]:
                        self.warnings.append(
                            "%s:%d: target %s of %s has targets of its own, which are not used"
                            % (self.path, lineno, target, key))


def parse_aliases(text, path="<aliases>", signature=None):
    """Parse the text of an aliases file: ``(AliasTable, warnings)``. Raises AliasesError."""
    parser = _Parser(path, signature)
    table = parser.parse(_split_lines(text), lambda: _split_lines(text))
    return table, parser.warnings


def read_aliases(path):
    """Read and parse file ``path``: ``(AliasTable, warnings)``. Raises AliasesError.

    Safe to run in a thread. The file is read with one call and parsed from memory:
    iterating over a file object from a thread (measured with a 100,000-line file) kept the
    reactor thread waiting for CPython's GIL for several hundred milliseconds at a time.
    """
    try:
        with open(path, "rb") as f:
            signature = file_version(os.fstat(f.fileno()))
            data = f.read()
    except OSError as e:
        raise AliasesError(path, None, "cannot read: %s" % (e.strerror or e))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AliasesError(path, data.count(b"\n", 0, e.start) + 1, "not valid UTF-8",
                           signature)
    del data
    return parse_aliases(text, path, signature)


def _split_lines(text):
    """The lines of ``text`` (split on LF only), one at a time (no list of them all)."""
    start = 0
    find = text.find
    while True:
        end = find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start:end]
        start = end + 1


def bad_values(table, declared):
    """Warnings for settings whose value a loaded filter cannot convert.

    ``declared`` maps a note name to ``[(plugin path, Setting), …]`` (the filters'
    ``recipient_settings``). Only distinct settings are checked, so this is cheap.
    """
    warnings = []
    if not declared:
        return warnings
    for settings, lineno in table.lines.items():
        for key, value in settings:
            if value is None:
                continue
            for plugin_path, setting in declared.get(key, ()):
                try:
                    setting.convert(value)
                except (TypeError, ValueError) as e:
                    warnings.append("%s:%d: %s=%s is not a valid value for plugin %s (%s); it "
                                    "gets the plugin's argument or default instead"
                                    % (table.path, lineno, key, value, plugin_path, e))
    return warnings


def apply_match(plugin, transaction, recipient, notes, targets, patterns):
    """Give ``recipient`` the ``notes`` and alias ``targets`` that ``patterns`` matched, and log
    it (for every notes source: this plugin, ``rcpt_notes/sql``, ``rcpt_notes/ldap``)."""
    recipient.notes.update(notes)
    if targets:
        recipient.notes[ORIGINAL_RECIPIENT] = recipient.address
        recipient.notes[ALIAS_TARGETS] = targets
    if plugin.server.log_enabled(LOGINFO):
        plugin.log(LOGINFO, "%s: matched %s%s%s" % (
            recipient.format(), ", ".join(patterns),
            "".join(" %s=%s" % item for item in notes.items()),
            " -> " + ", ".join(targets) if targets else ""), transaction)


def load_checked(path, declared):
    """:func:`read_aliases`, the value warnings added (the table marked validated)."""
    table, warnings = read_aliases(path)
    table.validated = True
    return table, warnings + bad_values(table, declared)


class Aliases(Plugin):
    """Fill recipient notes (and alias targets) from an aliases file."""

    #: sets recipient notes at RCPT (``qpsmtpd-tx notes`` asks it)
    notes_source = True
    #: the clock used for check_interval (tests replace it with a task.Clock)
    clock = reactor

    def init(self, args):
        args = list(args)
        name = args.pop(0) if len(args) % 2 else DEFAULT_CONFIG_ITEM
        options = self.parse_kv_args(args, {"check_interval"},
                                     {"check_interval": str(DEFAULT_CHECK_INTERVAL)})
        try:
            self.check_interval = float(options["check_interval"])
            if self.check_interval < 0:
                raise ValueError
        except ValueError:
            raise PluginError("check_interval must be a number of seconds >= 0, got %r"
                              % options["check_interval"])
        self.aliases_file = self._resolve(name)
        try:
            table, warnings = read_aliases(self.aliases_file)
        except AliasesError as e:
            raise PluginError(str(e))
        self._install(table, warnings)
        self._next_check = self.clock.seconds() + self.check_interval
        self._rejected = None     # signature of a broken file, not parsed again
        self._last_error = None
        #: the Deferred of a reload running in a thread, else None (tests wait on it)
        self.reloading = None

    def _resolve(self, name):
        if "/" in name:
            return os.path.abspath(name)
        path = self.server.config.path_of(name)
        if path is None:
            raise PluginError("aliases file: config item %r not found (looked in %s)"
                              % (name, ", ".join(self.server.config.search_dirs())))
        return os.path.abspath(path)

    def _install(self, table, warnings):
        self.table = table
        for warning in warnings:
            self.log(LOGWARN, warning)
        self.log(LOGINFO, "%s: %d entries loaded" % (table.path, len(table)))

    # -- RCPT ---------------------------------------------------------------------------------

    def hook_rcpt(self, transaction, recipient, params):
        if self.clock.seconds() >= self._next_check:
            self.check_file()
        table = self.table
        if not table.validated:
            # the filters declaring settings are only known once every plugin is loaded
            table.validated = True
            for warning in bad_values(table, self._declared()):
                self.log(LOGWARN, warning)
        notes, targets, patterns = table.lookup(recipient)
        if not patterns:
            return DECLINED
        apply_match(self, transaction, recipient, notes, targets, patterns)
        return DECLINED

    # -- reloading ----------------------------------------------------------------------------

    def check_file(self):
        """Start a reload in a thread if the file changed (returns the Deferred, or None)."""
        self._next_check = self.clock.seconds() + self.check_interval
        if self.reloading is not None:
            return None
        try:
            signature = file_version(os.stat(self.aliases_file))
        except OSError as e:
            self._error("%s: cannot read: %s" % (self.aliases_file, e.strerror or e))
            return None
        if signature in (self.table.signature, self._rejected):
            return None
        self.reloading = d = self.server.run_blocking(load_checked, self.aliases_file,
                                                      self._declared())
        d.addCallbacks(self._reloaded, self._reload_failed)
        return d

    def _reloaded(self, result):
        self.reloading = None
        self._rejected = self._last_error = None
        self._install(*result)
        return self.table

    def _reload_failed(self, failure):
        self.reloading = None
        if failure.check(AliasesError):
            self._rejected = failure.value.signature
            self._error(str(failure.value))
        else:
            self._error("%s: reload failed: %s" % (self.aliases_file, failure.getErrorMessage()))
        return None

    def _error(self, message):
        if message != self._last_error:
            self._last_error = message
            self.log(LOGERROR, "%s; keeping the %d entries loaded before"
                     % (message, len(self.table)))

    def _declared(self):
        """The settings the loaded filters read: ``{note: [(plugin path, Setting), …]}``."""
        return policy.declared_settings(self.server)
