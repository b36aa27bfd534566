"""The names a URI block list is asked about, found in a message as qpsmtpd 0.94's uribl finds them.

A message line (quoted-printable soft line breaks joined, ``=XX``/``%XX`` escapes and ``&#NN;``
entities undone, semicolons dropped) is searched four ways, in this order:

1. ``proto://[user@]NNNNNNN`` — an address written as one number: its four bytes, reversed
   (``http://3232235777/`` → ``1.1.168.192``);
2. ``proto://[user@]a.b.c.d`` — a dotted address, octal (``0177``) and ``0x`` hex parts
   made decimal, reversed;
3. any host name ``label.label.tld`` in the text (``www.example.com``, also inside mail
   addresses), the TLD a generic one of 0.94's list or any two letters, not followed by a
   word character;
4. ``proto://[user@]host.tld``, the TLD as in 3 but without the look-ahead (so
   ``http://example.xyz`` gives ``example.xy``, as in 0.94).

A host name found by 3 or 4 gives itself and each parent down to its registered domain: the
last two labels, or three under the ccTLDs of :data:`STRICT_TWO_LEVEL_CCTLDS` (``co.uk``):
``a.b.example.com`` → ``a.b.example.com``, ``b.example.com``, ``example.com``. A host whose
registered domain is in the whitelist gives nothing. Every name is given once per message.

0.94 does this with four regular expressions whose ``(?:\\S+@)?`` and ``[a-z0-9.-]+\\.``
parts backtrack, so a long line of ``aaa:/`` or of dot-less letters costs time quadratic in
its length. :class:`URIScanner` finds the same matches in time linear in the line (each
possible start is tried once; see :meth:`URIScanner._uri_matches`), and reads at most
``max_line`` characters as one line.
"""

import bisect
import re

#: ccTLDs that register names at the third level (``example.co.uk``), 0.94's list
STRICT_TWO_LEVEL_CCTLDS = frozenset(
    "ac ae uk ai ar at au az bb bh bm br bs ca ck cn co cr cu cy do et ge hk id il jp kr kw "
    "lv sg za".split())

#: the generic TLDs of 0.94's patterns, in the order they are tried (then any two letters)
GENERIC_TLDS = ("aero", "arpa", "asia", "biz", "cat", "com", "coop", "edu", "gov", "info", "int",
                "jobs", "mil", "mobi", "museum", "name", "net", "org", "pro", "tel", "travel")
_GENERIC_SET = frozenset(GENERIC_TLDS)
_LONGEST_TLD = max(len(t) for t in GENERIC_TLDS)

#: longest line scanned as one (a longer one is scanned in pieces of this size), and the
#: longest quoted-printable continuation kept for joining
MAX_LINE = 65536
#: ``proto:/`` starts tried per line and pattern (a line of thousands of them is junk, and
#: each costs a call; 0.94 tries them all, at a cost quadratic in the line length)
MAX_URI_STARTS = 1000

_ESCAPE = re.compile(r"[=%]([0-9A-Fa-f]{2})")
_ENTITY = re.compile(r"&#([0-9]{2,3});?")
# "proto:/" (3 to 16 word characters); group 1 ends at the colon
_PREFIX = re.compile(r"(\w{3,16}):/+", re.ASCII)
_SPACE = re.compile(r"\s", re.ASCII)
# an "@" that may end a URI's user part: followed by what a host name or an address starts with
_AT_BEFORE_HOST = re.compile(r"@(?=[A-Za-z0-9][A-Za-z0-9\-]*+\.)")
_AT_BEFORE_DIGIT = re.compile(r"@(?=[0-9])")
# a dot and two letters: a line without one has no host name
_TLD_HINT = re.compile(r"\.[A-Za-z]{2}")
_HOST_CHARS = re.compile(r"[A-Za-z0-9.\-]+")
_ALNUM = re.compile(r"[A-Za-z0-9]")
_WORD = re.compile(r"\w+", re.ASCII)
# a maximal run of host characters containing a dot (each start is tried once: the
# look-behind refuses starts inside a run, the possessive part never backtracks)
_DOTTED_RUN = re.compile(r"(?<![A-Za-z0-9.\-])[A-Za-z0-9\-]*+\.[A-Za-z0-9.\-]*+")
_INTEGER_IP = re.compile(r"([0-9]{7,})(?::[0-9]*)?(?:[/?\s]|\Z)", re.ASCII)
_OCTET = r"([0-9]+|0[xX][0-9A-Fa-f]+)"
_DOTTED_IP = re.compile(r"\.".join([_OCTET] * 4))
_OCTAL = re.compile(r"\A0([0-7]+)\Z")
_HEX = re.compile(r"\A0x([0-9a-fA-F]+)\Z")
_UV_MAX = (1 << 64) - 1


def unmunge(line):
    """``line`` with URI escapes (``=3D``, ``%2F``) and ``&#NN;`` entities undone and
    semicolons removed, as 0.94 prepares each line."""
    line = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), line)
    line = _ENTITY.sub(lambda m: chr(int(m.group(1))), line)
    return line.replace(";", "")


def registered_cutoff(labels):
    """How many labels a registered domain under ``labels[-1]`` has: 3 (``co.uk``) or 2."""
    return 3 if labels[-1] in STRICT_TWO_LEVEL_CCTLDS else 2


def host_names(host, whitelist=frozenset()):
    """``host`` and its parents down to its registered domain (none if that is whitelisted)."""
    labels = host.split(".")
    cutoff = registered_cutoff(labels)
    if ".".join(labels[-cutoff:]) in whitelist:
        return None
    return [".".join(labels[i:]) for i in range(len(labels) - cutoff + 1)]


def _uri_tld(line, start):
    """The TLD 0.94's URI pattern takes at ``start`` (no look-ahead), or None."""
    text = line[start:start + _LONGEST_TLD].lower()
    for tld in GENERIC_TLDS:
        if text.startswith(tld):
            return tld
    if len(text) >= 2 and text[:2].isascii() and text[:2].isalpha():
        return text[:2]
    return None


def _bare_tld(word):
    """Whether ``word`` (a whole run of word characters) is a TLD for a bare host name."""
    word = word.lower()
    return word in _GENERIC_SET or (len(word) == 2 and word.isascii() and word.isalpha())


def uri_host_at(line, start):
    """The host name of a URI starting at ``start`` (0.94's ``[a-z0-9][a-z0-9.-]+\\.tld``,
    greedy: the last dot followed by a TLD) as ``(host, end)``, or None."""
    run = _HOST_CHARS.match(line, start)
    if run is None or not _ALNUM.match(line, start):
        return None
    dot = line.rfind(".", start + 2, run.end())
    while dot != -1:
        tld = _uri_tld(line, dot + 1)
        if tld is not None:
            end = dot + 1 + len(tld)
            return line[start:end].lower(), end
        dot = line.rfind(".", start + 2, dot)
    return None


def integer_ip_at(line, start):
    """A URI's address written as one number at ``start`` → ``(reversed dotted quad, end)``."""
    match = _INTEGER_IP.match(line, start)
    if match is None:
        return None
    digits = match.group(1)
    # Perl's conversion saturates (and a 20-digit number is past 2**64 already)
    value = _UV_MAX if len(digits) > 20 else min(int(digits), _UV_MAX)
    octets = [(value >> shift) & 0xFF for shift in (24, 16, 8, 0)]
    return ".".join(str(o) for o in reversed(octets)), match.end()


def _perl_number(value):
    """``value`` as Perl prints the result of ``oct``/``hex``: past 64 bits a float."""
    if value <= _UV_MAX:
        return str(value)
    try:
        return "%.15g" % float(value)
    except OverflowError:
        return "Inf"


def _decimal_octet(text):
    text = _OCTAL.sub(lambda m: _perl_number(int(m.group(1), 8)), text)
    return _HEX.sub(lambda m: _perl_number(int(m.group(1), 16)), text)


def dotted_ip_at(line, start):
    """A URI's dotted address at ``start`` → ``(reversed, octal/hex parts decimal, end)``."""
    match = _DOTTED_IP.match(line, start)
    if match is None:
        return None
    octets = [_decimal_octet(part) for part in match.groups()]
    return ".".join(reversed(octets)), match.end()


def bare_hosts(line):
    """The host names 0.94's pattern for names anywhere in the text finds in ``line``."""
    hosts = []
    for run in _DOTTED_RUN.finditer(line):
        first = _ALNUM.search(line, run.start(), run.end())
        if first is None:
            continue
        start = first.start()
        dot = line.rfind(".", start + 2, run.end())
        while dot != -1:
            word = _WORD.match(line, dot + 1)
            if word is not None and _bare_tld(word.group()):
                hosts.append(line[start:word.end()].lower())
                break
            dot = line.rfind(".", start + 2, dot)
    return hosts


class URIScanner:
    """Collects the names to look up from a message's lines, at most ``limit`` distinct ones.

    Feed it the lines (str, one byte per character, without the line end) with :meth:`feed`;
    :attr:`names` is what was found, in order; :attr:`full` turns True when the limit cut the
    list. ``whitelist``: registered domains not looked up; ``check_ip``: look up addresses
    written in URIs (0.94 always does).
    """

    def __init__(self, whitelist=frozenset(), check_ip=True, limit=None):
        self.whitelist = whitelist
        self.check_ip = check_ip
        self.limit = limit
        self.names = []
        self.whitelisted = []
        self.full = False
        self._seen = set()
        self._continued = []
        self._continued_length = 0

    def feed(self, line):
        """Scan one line; returns False once the limit is reached (nothing more to find)."""
        if line.endswith("="):
            # A soft line break: the line is scanned alone now and joined with the next ones.
            if self._continued_length + len(line) > MAX_LINE:
                self._continued, self._continued_length = [], 0
            self._continued.append(line[:-1])
            self._continued_length += len(line) - 1
        elif self._continued:
            line = "".join(self._continued) + line
            self._continued, self._continued_length = [], 0
        self._scan(unmunge(line))
        return not self.full

    def _add(self, name):
        if self.full or name in self._seen:
            return
        if self.limit is not None and len(self.names) >= self.limit:
            self.full = True
            return
        self._seen.add(name)
        self.names.append(name)

    def _add_host(self, host):
        names = host_names(host, self.whitelist)
        if names is None:
            self.whitelisted.append(host)
            return
        for name in names:
            self._add(name)

    def _scan(self, line):
        has_uri = ":/" in line
        if has_uri and self.check_ip:
            for name in self._uri_matches(line, integer_ip_at):
                self._add(name)
            for name in self._uri_matches(line, dotted_ip_at):
                self._add(name)
        if not _TLD_HINT.search(line):
            return
        for host in bare_hosts(line):
            self._add_host(host)
        if has_uri:
            for host in self._uri_matches(line, uri_host_at):
                self._add_host(host)

    @staticmethod
    def _uri_matches(line, tail_at):
        """What ``proto:/+(?:\\S+@)?TAIL`` finds in ``line``, left to right, without overlap.

        As the backtracking pattern does, the user part runs to the *last* ``@`` of the
        non-blank text after the slashes that is followed by a TAIL, else there is none.
        The ``@`` signs followed by a TAIL are found once per line, so each prefix costs a
        binary search instead of a rescan of the rest of the line.
        """
        found = []
        valid_at = None
        run_end = -1
        position = 0
        for _ in range(MAX_URI_STARTS):
            prefix = _PREFIX.search(line, position)
            if prefix is None:
                break
            colon = prefix.end(1)
            after_slashes = prefix.end()
            if after_slashes >= run_end:
                blank = _SPACE.search(line, after_slashes)
                run_end = blank.start() if blank else len(line)
            if valid_at is None:
                candidates = (_AT_BEFORE_HOST if tail_at is uri_host_at else _AT_BEFORE_DIGIT)
                valid_at = [at.start() for at in candidates.finditer(line)
                            if tail_at(line, at.start() + 1) is not None]
            result = None
            i = bisect.bisect_left(valid_at, run_end) - 1
            # ":/" then at least one non-blank character before the "@"
            if i >= 0 and valid_at[i] >= colon + 3:
                result = tail_at(line, valid_at[i] + 1)
            if result is None:
                result = tail_at(line, after_slashes)
            if result is None:
                position = colon + 1
                continue
            value, position = result
            found.append(value)
        return found


def scan_lines(lines, scanner):
    """Feed ``lines`` (bytes, as read from the message) to ``scanner`` until it is full."""
    for raw in lines:
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if not scanner.feed(raw.decode("latin-1")):
            break
    return scanner


def message_lines(head, body, max_line=MAX_LINE):
    """The lines of ``head`` (bytes) then of ``body`` (a binary file, read from where it is),
    none longer than ``max_line`` bytes (a longer line comes in pieces). Blocking."""
    for line in head.splitlines(keepends=True):
        for i in range(0, len(line), max_line):
            yield line[i:i + max_line]
    while True:
        line = body.readline(max_line)
        if not line:
            return
        yield line
