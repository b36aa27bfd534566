"""logging/apache — write log lines in Apache's error log format, as 0.94's plugin did.

qpsmtpd 0.94's logging/apache wrote them under mod_perl, through Apache's ``ErrorLog``.

List it in the ``logging`` config file::

    logging/apache loglevel LOGINFO /var/log/qpsmtpd/error.log

Each line, in Apache 2.4's default error log format (prefork, no thread id)::

    [Sun Dec 06 22:12:05.123456 2026] [perl:info] [pid 4711] [client 192.0.2.7:40000] 1f rcpt_ok plugin: pass

``[perl:LEVEL]`` is where mod_perl's lines showed the module and level: ``debug``, ``info``,
``notice``, ``warn``, ``error``, ``crit``, ``alert``, ``emerg`` (qpsmtpd's LOGRADAR is
``emerg``, as 0.94's plugin mapped it). ``[client IP:PORT]`` is the connection's client
(the one a PROXY header named, see ``stunnel``), left out for lines outside a connection.
The text is 0.94's: ``<id> <plugin> plugin: <text>``, ``<id> running plugin (<hook>):
<text>`` or ``<id> <text>``, where 0.94 wrote the pid of the process serving the connection
and qpsmtpd-tx writes the connection's id (the process's pid outside a connection), as
logging/file does. So tools that read Apache error logs (fail2ban's apache filters, log
shippers) read these too. The plugin's own lines are not written.

Arguments: ``[loglevel L] [PATH]``
  ``loglevel L``  the highest level written: ``0``–``7`` or a name (``LOGINFO``…);
                  default ``LOGWARN`` (0.94 left the choice to Apache's ``LogLevel``).
  ``PATH``        the file, appended to and created if missing; default standard error
                  (where Apache's ErrorLog goes when it is not set).

Log rotation: on SIGHUP the file is closed, and the next line opens it again by name, as
logging/file does (``postrotate kill -HUP <pid>``). Each line is one unbuffered write.

Config files: none. Notes: none. Replies: none.

Intended difference from qpsmtpd 0.94: 0.94's plugin only ran inside Apache (mod_perl's
Apache::Qpsmtpd) and refused to load elsewhere; this one writes the same lines itself.
"""

import os
import sys
import time

from qpsmtpd_tx.codes import DECLINED, LEVEL_NAMES, LOGWARN
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import log_level
from qpsmtpd_tx.server_log import tagged_line
from qpsmtpd_tx.signals import SighupFlag

USAGE = "usage: logging/apache [loglevel L] [PATH]"
#: the module name mod_perl's lines carried
MODULE = "perl"


def apache_level(level):
    """Apache's name of qpsmtpd log level ``level`` (``LOGINFO`` → ``info``)."""
    return LEVEL_NAMES.get(level, "LOGEMERG")[3:].lower()   # LOGRADAR is LOGEMERG


def apache_time(now):
    """Apache 2.4's error log time stamp: ``Sun Dec 06 22:12:05.123456 2026`` (local time)."""
    seconds = int(now)
    return "%s.%06d %s" % (time.strftime("%a %b %d %H:%M:%S", time.localtime(seconds)),
                           int((now - seconds) * 1000000), time.strftime("%Y", time.localtime(seconds)))


def apache_line(now, level, connection, plugin_name, hook, message):
    """One error log line (without its newline)."""
    parts = ["[%s]" % apache_time(now), "[%s:%s]" % (MODULE, apache_level(level)),
             "[pid %d]" % os.getpid()]
    if connection is not None:
        parts.append("[client %s:%s]" % (connection.remote_ip, connection.remote_port))
        tag = connection.id
    else:
        tag = os.getpid()
    parts.append(tagged_line(tag, plugin_name, hook, message))
    return " ".join(parts)


class ApacheLog(Plugin):
    """Writes Apache-style error log lines to a file or standard error."""

    def init(self, args):
        args = list(args)
        #: read by the server: nothing above this level is formatted for us
        self.log_threshold = LOGWARN
        if args[:1] == ["loglevel"]:
            if len(args) < 2:
                raise PluginError("loglevel needs a value; " + USAGE)
            self.log_threshold = log_level(args[1])
            del args[:2]
        self.path = " ".join(args).strip() or None
        if self.path is not None and os.path.isdir(self.path):
            raise PluginError("%s is a directory; %s" % (self.path, USAGE))
        self._file = None
        self._sighup = None
        if self.path is not None:
            self._sighup = SighupFlag(lambda text: self.log(LOGWARN, text))

    def reopen(self):
        """Close the file; the next line opens it again (log rotation)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def stop(self):
        """Close the file (the server stops, or a SIGHUP loaded another instance)."""
        if self._sighup is not None:
            self._sighup.stop()
        self.reopen()

    def _write(self, line):
        if self.path is None:
            sys.stderr.write(line)
            return
        if self._sighup.take():
            self.reopen()
        if self._file is None:
            self._file = open(self.path, "ab", buffering=0)
        self._file.write(line.encode("utf-8", "backslashreplace"))

    def hook_logging(self, transaction, level, hook, plugin_name, message):
        if level > self.log_threshold or plugin_name == self.name:
            return DECLINED
        connection = transaction.connection if transaction is not None else None
        try:
            self._write(apache_line(time.time(), level, connection, plugin_name, hook, message) + "\n")
        except OSError:
            pass    # the server drops a line a logging plugin cannot write
        return DECLINED
