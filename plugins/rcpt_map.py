"""rcpt_map — decide about the recipients of one domain from a map of addresses and return codes.

At RCPT, a recipient in the plugin's domain is looked up in its map file: a listed address gets
the return code and text of its line, any other address of the domain gets the ``default``.
Recipients in other domains, and recipients without a domain, are left to the next plugin.
Load one instance per domain (``rcpt_map:1 domain …`` for a second one).

Arguments: ``domain NAME file PATH [default CODE[=TEXT]] [loglevel N]``
  ``domain``    the domain this map answers for (required; compared case-insensitively).
  ``file``      the map file (required). A relative name is looked up like a config file
                (the config directory, ``./config``, the qmail control directory), then in
                the working directory. The file is read again at the next connection after
                it changed; if it is then unreadable, empty or wrong, the previous map stays
                in use (and an error is logged).
  ``default``   the answer for addresses of the domain missing from the map (default
                ``DENY=No_such_user.``): a return code (see below), optionally ``=`` and a text
                in which every ``_`` stands for a space (``DENYSOFT=Try_again_later``); without
                a text, ``No such user.``.
  ``loglevel``  per-plugin log level (``6``, ``LOGINFO``, ``+1``, ``-2``).

Return codes, by name (any case) or number: ``OK``, ``DENY``, ``DENYSOFT``,
``DENY_DISCONNECT``/``DENYHARD``, ``DENYSOFT_DISCONNECT``, ``DECLINED``. ``DONE`` and ``YIELD``
are refused: they would leave the client without an answer.

Map file: one address per line, whitespace, its return code, and optionally whitespace and the
reply text (default ``No such user.``). Blank lines and lines starting with ``#`` are skipped.
  ``me@example.org      OK``
  ``info@example.org    DENY      User not found.``
A line without a return code or with an unknown one, or a map without any address, stops
start-up naming the file and line.

Notes: none.

Replies: the code and text of the line (or of ``default``) as the core answers RCPT: ``OK`` →
``250 <addr>, recipient ok``; ``DENY`` → ``550 No such user.``; ``DENYSOFT`` → 450;
``DENY_DISCONNECT`` → 550 and close; ``DENYSOFT_DISCONNECT`` → 421 and close; ``DECLINED`` →
the next plugin decides.

Differences from qpsmtpd 0.94, on purpose:
  - map lines are split on any whitespace and their line end is ignored (0.94 split on single
    spaces and kept the newline, so aligned columns and lines without a text, such as
    ``me@example.org OK``, were rejected as "not a valid constant");
  - the map's addresses are compared case-insensitively (0.94 lower-cased only the
    recipient, so a map entry with a capital letter never matched);
  - each instance has its own map (0.94 shared one map between all instances, so two
    domains could not have two maps);
  - an ``OK`` for a local part holding ``%``, ``!`` or a quoted ``@`` (the percent hack, a bang
    path: a back end such as Postfix would relay it elsewhere) becomes
    ``550 Relaying denied (#5.7.1)`` unless the client is a relay client or whitelisted, as in
    ``rcpt_ok``;
  - a bad line stops start-up (0.94 logged and skipped it); return code names may be in
    any case; a text given with ``default`` may hold ``=``.
"""

import os

from qpsmtpd_tx import codes
from qpsmtpd_tx.codes import DECLINED, LOGDEBUG, LOGERROR, LOGINFO
from qpsmtpd_tx.file_version import version_of
from qpsmtpd_tx.plugin import Plugin, PluginError

DEFAULT_TEXT = "No such user."
#: codes a map may not give: the client would get no answer
NOT_ALLOWED = (codes.DONE, codes.YIELD)


def map_code(word):
    """The return code named by ``word``; ValueError if unknown or not usable at RCPT."""
    code = codes.parse_return_code(word)
    if code in NOT_ALLOWED:
        raise ValueError("%s would leave the client without an answer" % word)
    return code


def read_map(path):
    """Read a map file into ``{address: (code, text)}``; PluginError naming the bad line."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PluginError("cannot read map file %s: %s" % (path, e.strerror))
    entries = {}
    for lineno, raw in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split(None, 2)
        if len(words) < 2:
            raise PluginError("%s:%d: no return code after %r" % (path, lineno, words[0]))
        try:
            code = map_code(words[1])
        except ValueError:
            raise PluginError("%s:%d: %r is not a return code a rcpt map can give (one of OK, "
                              "DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT, DECLINED)"
                              % (path, lineno, words[1]))
        entries[words[0].lower()] = (code, words[2] if len(words) > 2 else DEFAULT_TEXT)
    if not entries:
        raise PluginError("empty map file %s" % path)
    return entries


class RcptMap(Plugin):
    """Answer RCPT for one domain from a map file."""

    def init(self, args):
        options = self.parse_kv_args(args, {"domain", "file", "default"})
        if not options.get("domain"):
            raise PluginError("no domain given (domain NAME)")
        if not options.get("file"):
            raise PluginError("no map file given (file PATH)")
        self.domain = options["domain"].lower()
        self.default = self._parse_default(options.get("default", "DENY"))
        self.file = self._locate(options["file"])
        self.version = version_of(self.file)
        self.map = read_map(self.file)
        self.log(LOGDEBUG, "using map %s for domain %s" % (self.file, self.domain))

    @staticmethod
    def _parse_default(value):
        word, _, text = value.partition("=")
        try:
            code = map_code(word)
        except ValueError:
            raise PluginError("default: %r is not a return code a rcpt map can give (one of OK, "
                              "DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT, DECLINED)"
                              % word)
        return code, text.replace("_", " ") or DEFAULT_TEXT

    def _locate(self, name):
        if os.path.isabs(name):
            return name
        return self.server.config.path_of(name) or os.path.abspath(name)

    def hook_pre_connection(self, transaction, *args):
        version = version_of(self.file)
        if version is not None and version != self.version:
            self.version = version
            try:
                self.map = read_map(self.file)
                self.log(LOGINFO, "map %s read again" % self.file, transaction)
            except PluginError as e:
                self.log(LOGERROR, "keeping the previous map: %s" % e, transaction)
        return DECLINED

    def hook_rcpt(self, transaction, recipient, params):
        if not recipient.user or not recipient.host:
            return DECLINED
        if recipient.host.lower() != self.domain:
            return DECLINED
        address = (recipient.user + "@" + recipient.host).lower()
        code, text = self.map.get(address, self.default)
        self.log(LOGDEBUG, "%s: %s %s" % (address, codes.code_name(code), text), transaction)
        if code == codes.OK:
            return self.refuse_routing_recipient(transaction, recipient) or (code, text)
        return code, text
