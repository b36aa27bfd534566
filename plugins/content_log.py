"""content_log — append a copy of every incoming message to an archive file.

Meant for debugging other plugins or keeping a plain archive. At ``data_post`` (after the core
added its ``Received`` and ``Authentication-Results`` headers, before the ``queue`` plugins)
the message — header, empty line, body, with LF line endings — is appended to a file whose
name comes from a strftime pattern (local time), by default one file per day. Messages follow
each other without a separator (no mbox ``From`` line), as in qpsmtpd. The writing runs in
the server's I/O thread pool (a slow disk does not stop other clients), one message at a time
in the order they arrived, a megabyte at a time; the file is closed before the next plugin
runs, so a copy is complete once the client has its reply. The plugin never rejects: if the
file cannot be written the error is logged and the message goes on.

Arguments: none (``loglevel`` is accepted as for every plugin).

Config files:
  ``content_log_enabled``  ``true`` (the default when the file is missing), ``1``, ``yes``,
                           ``on``, ``enabled`` — or ``false``, ``0``, ``no``, ``off``,
                           ``disabled`` to turn the plugin off (read at start-up; any other
                           value stops start-up, naming the file and line).
  ``content_log_file``     the file name pattern, passed through strftime: ``%Y`` year,
                           ``%m`` month, ``%d`` day, ``%H`` hour, ``%%`` a percent sign…
                           Default ``mail/%Y%m%d``. A relative name is relative to the
                           server's working directory (as in qpsmtpd); missing directories
                           are created.

Notes: none.

Replies: none. The hook declines with ``successfully saved message.. continuing`` or, when
the file could not be written, ``Could not open log file.. continuing anyway`` (logged, not
sent).

Differences from qpsmtpd 0.94 (whose content_log always wrote to ``mail/YYYYMMDD``): the two
config files come from later qpsmtpd versions; missing directories are created (qpsmtpd could
not open the file then).
"""

import os
import time

from twisted.internet import defer

from qpsmtpd_tx.codes import DECLINED, LOGDEBUG, LOGERROR
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.streaming import write_to_fd

DEFAULT_PATTERN = "mail/%Y%m%d"
TRUE_WORDS = ("true", "1", "yes", "on", "enabled", "enable")
FALSE_WORDS = ("false", "0", "no", "off", "disabled", "disable")
SAVED = "successfully saved message.. continuing"
FAILED = "Could not open log file.. continuing anyway"


class ContentLog(Plugin):
    """Append each message to the strftime-named archive file at data_post."""

    #: the clock for the file name: a function returning epoch seconds (tests replace it)
    now = staticmethod(time.time)

    def init(self, args):
        self.parse_kv_args(args, set())
        self.enabled = self._read_enabled()
        lines = self.server.config.get_lines("content_log_file")
        self.pattern = lines[0].text if lines else DEFAULT_PATTERN
        self._appending = defer.DeferredLock()

    def _read_enabled(self):
        lines = self.server.config.get_lines("content_log_enabled")
        if not lines:
            return True
        line = lines[0]
        word = line.text.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise PluginError("%s:%s: content_log_enabled must be true or false, got %r"
                          % (line.path, line.lineno, line.text))

    def register(self, registry):
        if self.enabled:
            registry.register("data_post", self, self.save)

    def path_for(self, when):
        """The archive file for a message received at ``when`` (epoch seconds)."""
        return time.strftime(self.pattern, time.localtime(when))

    def save(self, transaction):
        """data_post: append the message to the archive file (in the I/O thread pool)."""
        path = self.path_for(self.now())
        # Taken now: later plugins may change the header once this hook is done.
        header, body = transaction.header_bytes(), transaction.body.open()
        # One append at a time, in the order the messages arrived: each message stays whole.
        d = self._appending.run(self.server.run_blocking, append_message, path, header, body)
        d.addCallbacks(self._saved, self._failed, callbackArgs=(path, transaction),
                       errbackArgs=(path, transaction))
        return d

    def _saved(self, _, path, transaction):
        self.log(LOGDEBUG, "saved message to %s" % (path,), transaction)
        return DECLINED, SAVED

    def _failed(self, failure, path, transaction):
        error = failure.value
        self.log(LOGERROR, "cannot write %s: %s" % (path, getattr(error, "strerror", None) or error),
                 transaction)
        return DECLINED, FAILED


def append_message(path, header, body):
    """Append ``header`` and the file ``body`` to ``path`` (directories created), a chunk at a
    time, and close both. Blocking: runs in the I/O thread pool."""
    try:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            write_to_fd(fd, [header], body)
        finally:
            os.close(fd)
    finally:
        body.close()
