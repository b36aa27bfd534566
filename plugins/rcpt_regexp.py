"""rcpt_regexp — decide about recipients by a list of addresses and patterns with return codes.

At RCPT, the recipient (``user@domain``, lower-cased) is compared with each line of the
``rcpt_regexp`` file in order; the first line that matches decides, with its return code and
text. ``DECLINED`` on a line hands the recipient on to the next ``rcpt`` plugin. Recipients
without a domain (``<postmaster>``) are not looked at. Without a matching line the plugin
declines.

Arguments: ``[loglevel N]`` (per-plugin log level: ``6``, ``LOGINFO``, ``+1``, ``-2``).

Config files:
  ``rcpt_regexp``   one rule per line: what to match, whitespace, a return code, and
                    optionally whitespace and the reply text:
                      ``me@myhost.org          OK        Accepting mail``
                      ``/^user\\d+@doma\\.in$/   OK``
                      ``info@myhost.org        DENY      User not found.``
                      ``/^unused@/             DENY      User not found.``
                      ``/^/                    DECLINED  fall through to the next plugin``
                    What to match: ``/pattern/`` is a regular expression (Python ``re``
                    syntax) searched case-insensitively; anything else is an address compared
                    case-insensitively. The return code is a name (``OK``, ``DENY``,
                    ``DENYSOFT``, ``DENY_DISCONNECT``/``DENYHARD``, ``DENYSOFT_DISCONNECT``,
                    ``DECLINED``; any case) or its number (901…). A line without a return
                    code, with an unknown one, or with ``DONE``/``YIELD`` (which would leave
                    the client without an answer), and a pattern that does not compile, stop
                    start-up with the file and line. Patterns run without a time limit: avoid
                    nested repeats such as ``(a+)+``, which can backtrack for a very long time
                    (start-up warns about them). Only trusted users should write this file.

Notes: none.

Replies: the line's code and text as the core answers RCPT: ``OK`` → ``250 <addr>, recipient
ok``; ``DENY`` → ``550 <text>`` (``550 relaying denied`` without text); ``DENYSOFT`` → 450;
``DENY_DISCONNECT`` → 550 and close (``550 delivery denied`` without text);
``DENYSOFT_DISCONNECT`` → 421 and close.

Differences from qpsmtpd 0.94, on purpose: a bad line stops start-up (0.94 logged a warning at
every RCPT and skipped the line), and found after a SIGHUP fails the reload: the rules in use
stay, the file logged once at LOGERROR until it changes; return code names are accepted in any
case, and as numbers; an ``OK`` for a local part holding ``%``, ``!`` or a quoted ``@`` (the
percent hack, a bang path: a back end such as Postfix would relay it elsewhere) becomes
``550 Relaying denied (#5.7.1)`` unless the client is a relay client or whitelisted, as in
``rcpt_ok``.
"""


from qpsmtpd_tx import codes
from qpsmtpd_tx.codes import DECLINED, LOGDEBUG, LOGWARN
from qpsmtpd_tx.patterns import compile_config_pattern
from qpsmtpd_tx.plugin import Plugin, PluginError

#: codes a config line may not give: the client would get no answer
NOT_ALLOWED = (codes.DONE, codes.YIELD)


def rule_code(word, line):
    """The return code named by ``word`` on config line ``line``; PluginError if unusable."""
    try:
        code = codes.parse_return_code(word)
    except ValueError:
        code = None
    if code is None or code in NOT_ALLOWED:
        raise PluginError("%s:%d: %r is not a return code a rcpt rule can give (one of OK, DENY, "
                          "DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT, DECLINED)"
                          % (line.path, line.lineno, word))
    return code


class Rules:
    """Parsed ``rcpt_regexp`` lines: ``(what, regex or None, address, code, text)``."""

    def __init__(self, lines, warn):
        self.rules = []
        for line in lines:
            words = line.text.split(None, 2)
            if len(words) < 2:
                raise PluginError("%s:%d: no return code after %r"
                                  % (line.path, line.lineno, words[0]))
            what, code = words[0], rule_code(words[1], line)
            text = words[2] if len(words) > 2 else None
            if len(what) >= 2 and what.startswith("/") and what.endswith("/"):
                pattern = what[1:-1]
                regex = compile_config_pattern(pattern, line, warn)
                self.rules.append((what, regex, None, code, text))
            else:
                self.rules.append((what, None, what.lower(), code, text))

    def match(self, address):
        """The first rule matching ``address`` (lower case), or None."""
        for rule in self.rules:
            regex = rule[1]
            if (regex.search(address) if regex is not None else rule[2] == address):
                return rule
        return None


class RcptRegexp(Plugin):
    """Answer RCPT from the rcpt_regexp rules."""

    def init(self, args):
        self.parse_kv_args(args, set())
        self._rules()  # a bad line stops start-up

    def _rules(self, transaction=None):
        """The rules (parsed again if the file changed); after a bad edit, the rules before it."""
        return self.parsed_config("rcpt_regexp", self._parse, transaction, lines_only=True)

    def _parse(self, lines):
        return Rules(lines, lambda m: self.log(LOGWARN, m))

    def hook_rcpt(self, transaction, recipient, params):
        if not recipient.user or not recipient.host:
            return DECLINED
        rule = self._rules(transaction).match((recipient.user + "@" + recipient.host).lower())
        if rule is None:
            return DECLINED
        what, _, _, code, text = rule
        self.log(LOGDEBUG, "%s matched %s, returning %s"
                 % (what, recipient.format(), codes.code_name(code)), transaction)
        if code == codes.OK:
            refusal = self.refuse_routing_recipient(transaction, recipient)
            if refusal is not None:
                return refusal
        return code if text is None else (code, text)
