"""logging/syslog — send log lines to syslog, over the local socket (/dev/log) or UDP.

List it in the ``logging`` config file, e.g.::

    logging/syslog loglevel LOGINFO priority LOG_NOTICE
    logging/syslog loglevel LOGINFO facility local3 logsock udp:192.0.2.10:514

Arguments (``key value`` pairs, all optional):
  ``loglevel L``    the highest level sent: a number (``0``–``7``) or a name (``LOGINFO``…;
                    the ``LOG`` prefix may be left out). Default ``LOGWARN``.
  ``priority P``    send every line at this syslog priority (``LOG_NOTICE``, ``notice``, or
                    ``0``–``7``) instead of the one matching its level. The levels map one
                    to one: LOGEMERG→emerg … LOGERROR→err, LOGWARN→warning, … LOGDEBUG→debug.
  ``ident S``       the tag in front of each line (letters, digits, ``_``, ``-``, ``.``).
                    Default ``qpsmtpd``, so existing syslog filters keep working.
  ``facility F``    ``LOG_MAIL`` (default), ``mail``, ``local0``…``local7``, ``daemon``,
                    ``user``… (the names of syslog(3), with or without ``LOG_``).
  ``logsock T``     where to send, or a comma-separated list of choices, the first one that
                    can be opened at start-up being used:
                      ``/path``          a unix datagram socket (``/dev/log``, or rsyslog's
                                         or journald's own socket);
                      ``unix``, ``native``   the same as ``/dev/log`` (qpsmtpd's names);
                      ``udp:HOST[:PORT]``  a syslog server over UDP (port 514 by default;
                                         ``udp:[2001:db8::1]:514`` for IPv6);
                      ``udp``            the same as ``udp:127.0.0.1:514``.
                    qpsmtpd's ``tcp``, ``stream``, ``pipe`` and ``console`` are not
                    supported: they are skipped in a list, and alone stop start-up.
                    Default ``/dev/log``.
  ``ids 0|1``       (qpsmtpd-tx addition) ``1`` writes ``<conn-id> (<hook>) <plugin>: `` before
                    each text, as logging/warn does; default ``0``, the text only (as
                    qpsmtpd). Recommended: one process serves every connection, so the pid
                    in the tag no longer tells connections apart.

Each line is one datagram in the traditional BSD syslog format (RFC 3164) that the C
library's syslog(3) sends: ``<PRI>Mmm dd hh:mm:ss ident[pid]: text`` on a local socket, with
the host name after the time stamp over UDP (``<PRI>Mmm dd hh:mm:ss host ident[pid]: text``).
PRI is facility × 8 + priority; the time is local time, the month in English.

The socket is non-blocking and the server never waits for syslog: a line that cannot be sent
at once (syslog daemon busy, socket buffer full, daemon not running) is dropped and counted
(attribute ``dropped``); the next line that goes through is preceded by one
``logging/syslog: N log lines dropped`` line at priority warning.
When the daemon restarts (its socket is recreated), the plugin reconnects at the next line,
at most once a second.

The plugin's own lines are not sent; its start-up warnings (a skipped ``logsock`` choice, a
socket that cannot be opened yet) go to standard error. Config files: none. Notes: none.
Replies: none.

Differences from qpsmtpd 0.94, on purpose: the datagrams are built here rather than by
Perl's Sys::Syslog (same format); ``logsock`` also takes a socket path or ``udp:HOST:PORT``;
bad arguments stop start-up (qpsmtpd ignored them or printed a warning).
"""

import errno
import os
import re
import socket
import sys
import time

from qpsmtpd_tx.codes import DECLINED, LOGWARN
from qpsmtpd_tx.plugin import Plugin, PluginError
from qpsmtpd_tx.plugin_args import log_level
from qpsmtpd_tx.server_log import format_log_line

DEFAULT_SOCKET = "/dev/log"
DEFAULT_UDP_HOST = "127.0.0.1"
SYSLOG_PORT = 514
RECONNECT_INTERVAL = 1.0
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

PRIORITIES = {
    "emerg": 0, "panic": 0, "alert": 1, "crit": 2, "err": 3, "error": 3,
    "warning": 4, "warn": 4, "notice": 5, "info": 6, "debug": 7,
}
FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{"local%d" % n: 16 + n for n in range(8)},
}
UNSUPPORTED_SOCKETS = ("tcp", "stream", "pipe", "console", "inet", "eventlog")
_IDENT = re.compile(r"[\w\-.]+", re.ASCII)
#: errors after which the socket is reopened (the daemon went away or was restarted)
_RECONNECT_ERRNOS = {errno.ECONNREFUSED, errno.ENOTCONN, errno.ECONNRESET, errno.ENOENT,
                     errno.EPIPE, errno.EDESTADDRREQ}


def _syslog_name(word, table, what):
    key = word.lower()
    if key.startswith("log_"):
        key = key[4:]
    if key not in table:
        raise PluginError("unknown %s %r (one of %s)" % (what, word, ", ".join(sorted(table))))
    return table[key]


def parse_priority(word):
    """A ``priority`` argument: 0–7 or a syslog priority name."""
    if word.isdigit():
        if int(word) > 7:
            raise PluginError("priority must be 0-7, got %r" % (word,))
        return int(word)
    return _syslog_name(word, PRIORITIES, "priority")


def parse_logsock(value):
    """The ``logsock`` choices as a list of ("unix", path) / ("udp", host, port)."""
    targets = []
    for word in value.split(","):
        word = word.strip()
        if not word:
            continue
        lower = word.lower()
        if word.startswith("/"):
            targets.append(("unix", word))
        elif lower in ("unix", "native"):
            targets.append(("unix", DEFAULT_SOCKET))
        elif lower == "udp":
            targets.append(("udp", DEFAULT_UDP_HOST, SYSLOG_PORT))
        elif lower.startswith("udp:"):
            targets.append(("udp",) + _host_port(word[4:], word))
        elif lower in UNSUPPORTED_SOCKETS:
            targets.append(("unsupported", word))
        else:
            raise PluginError("logsock: %r is not a socket path, unix, udp or udp:HOST[:PORT]"
                              % (word,))
    if not [t for t in targets if t[0] != "unsupported"]:
        raise PluginError("logsock %r: no supported socket (a path, unix, udp or "
                          "udp:HOST[:PORT])" % (value,))
    return targets


def _host_port(text, word):
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise PluginError("logsock: bad address in %r" % (word,))
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host:
        raise PluginError("logsock: no host in %r" % (word,))
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise PluginError("logsock: bad port in %r" % (word,))
    return host, int(port) if port else SYSLOG_PORT


def encode(text):
    """UTF-8 bytes of ``text``, undecodable client bytes restored."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


class Syslog(Plugin):
    """Send log lines as syslog datagrams over a non-blocking socket."""

    #: the time source (tests replace it)
    clock = staticmethod(time.time)
    #: the host name written in UDP datagrams
    hostname = socket.gethostname().split(".")[0]

    def init(self, args):
        if len(args) % 2:
            raise PluginError("arguments must be key/value pairs, got %r" % (" ".join(args),))
        options = {}
        known = ("loglevel", "priority", "ident", "facility", "logsock", "ids")
        for key, value in zip(args[::2], args[1::2]):
            if key not in known:
                raise PluginError("unknown argument %r (known: %s)" % (key, ", ".join(known)))
            options[key] = value
        #: read by the server: nothing above this level is formatted for us
        self.log_threshold = log_level(options["loglevel"]) if "loglevel" in options else LOGWARN
        self.priority = parse_priority(options["priority"]) if "priority" in options else None
        self.ident = options.get("ident", "qpsmtpd")
        if not _IDENT.fullmatch(self.ident):
            raise PluginError("ident may hold letters, digits, _, - and . only, got %r"
                              % (self.ident,))
        self.facility = _syslog_name(options.get("facility", "LOG_MAIL"), FACILITIES, "facility")
        if options.get("ids", "0") not in ("0", "1"):
            raise PluginError("ids must be 0 or 1, got %r" % (options["ids"],))
        self.ids = options.get("ids") == "1"
        #: lines dropped since start-up, and since the last "dropped" notice
        self.dropped = 0
        self.unreported = 0
        self.sent = 0
        self._socket = None
        self._last_attempt = None
        self.target = None
        choices = parse_logsock(options.get("logsock", DEFAULT_SOCKET))
        supported = []
        for choice in choices:
            if choice[0] == "unsupported":
                sys.stderr.write("logging/syslog: logsock %s is not supported, skipped\n"
                                 % choice[1])
            else:
                supported.append(choice)
        for choice in supported:
            try:
                self._socket = self._open(choice)
            except OSError:
                continue
            self.target = choice
            break
        if self.target is None:
            # Nothing listens yet (syslog may start after us): keep the first choice and
            # try again when lines come.
            self.target = supported[0]
            self._last_attempt = self.clock()
            sys.stderr.write("logging/syslog: cannot open %s yet; lines are dropped until "
                             "it can be opened\n" % (self.describe_target(),))

    # -- the socket --------------------------------------------------------------------------

    def describe_target(self):
        if self.target[0] == "unix":
            return self.target[1]
        return "udp:%s:%d" % (self.target[1], self.target[2])

    @staticmethod
    def _open(target):
        if target[0] == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            address = target[1]
        else:
            family, kind, proto, _, address = socket.getaddrinfo(
                target[1], target[2], 0, socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return sock

    def _reconnect(self):
        """Open the socket again (at most once per RECONNECT_INTERVAL); True if it is open."""
        now = self.clock()
        if self._last_attempt is not None and now - self._last_attempt < RECONNECT_INTERVAL:
            return False
        self._last_attempt = now
        self.close()
        try:
            self._socket = self._open(self.target)
        except OSError:
            return False
        return True

    def close(self):
        """Close the socket (the next line opens it again)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, data):
        """Send one datagram without blocking; True if it went out."""
        for attempt in (1, 2):
            if self._socket is None and not self._reconnect():
                return False
            try:
                self._socket.send(data)
                return True
            except BlockingIOError:
                return False
            except OSError as e:
                if e.errno in _RECONNECT_ERRNOS and attempt == 1:
                    self.close()
                    self._last_attempt = None
                    continue
                return False
        return False

    # -- formatting --------------------------------------------------------------------------

    def datagram(self, priority, text, now=None):
        """The bytes sent for ``text`` at syslog ``priority`` (0–7)."""
        t = time.localtime(self.clock() if now is None else now)
        stamp = "%s %2d %02d:%02d:%02d" % (MONTHS[t.tm_mon - 1], t.tm_mday,
                                           t.tm_hour, t.tm_min, t.tm_sec)
        host = " " + self.hostname if self.target[0] == "udp" else ""
        return encode("<%d>%s%s %s[%d]: %s" % (self.facility * 8 + priority, stamp, host,
                                               self.ident, os.getpid(), text))

    # -- the hook ----------------------------------------------------------------------------

    def hook_logging(self, transaction, level, hook, plugin_name, message):
        if level > self.log_threshold or plugin_name == self.name:
            return DECLINED
        if self.ids:
            connection = transaction.connection if transaction is not None else None
            message = format_log_line(connection.id if connection is not None else None,
                                      hook, plugin_name, message)
        priority = self.priority if self.priority is not None else min(max(level, 0), 7)
        if self.unreported:
            notice = "logging/syslog: %d log lines dropped" % self.unreported
            if not self._send(self.datagram(LOGWARN, notice)):
                self._drop()
                return DECLINED
            self.unreported = 0
        if self._send(self.datagram(priority, message)):
            self.sent += 1
        else:
            self._drop()
        return DECLINED

    def _drop(self):
        self.dropped += 1
        self.unreported += 1
