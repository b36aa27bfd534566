"""Envelope addresses: RFC 5321 paths, parsed, compared and formatted.

:meth:`Address.parse` accepts ``<path>`` as sent in MAIL/RCPT (or a bare ``user@host``), strips
a source route, and returns None for anything that is not a valid path. Hosts compare
case-insensitively, local parts case-sensitively, as qpsmtpd does.

Where this parser intentionally differs from qpsmtpd 0.94 (whose local-part check only looks at
the first character, so it lets almost anything through):

* a quoted local part may hold spaces (``"q u"@example.org``), as RFC 5321 allows; 0.94 refuses;
* an unquoted local part must be atext and dots; 0.94 accepts spaces, specials, an unquoted ``@``
  and control characters after the first character (``<ask @perl.org>``, ``<a@b@c.example>``);
* dots in odd places (``a..b``, ``a.``) are still accepted as 0.94 does, because such legacy
  mailboxes exist (Japanese mobile carriers), but they are written back quoted (``"a..b"@x``);
* non-ASCII is refused: we do not offer SMTPUTF8, and RFC 6531 forbids UTF-8 addresses without
  it; 0.94 accepts a non-ASCII local part if its first character is ASCII;
* a domain is dot-separated labels; 0.94's pattern lets any character stand in for a dot
  (``<a@ex ample.com>``, ``<a@example!com>``, control characters) and takes a path followed by
  a newline;
* address literals are checked (0-255 octets, a real IPv6 address); 0.94 only checks the
  character set. A source route may not carry literals, ``<@a:>`` is not a null path and
  ``<@a:postmaster>`` is not ``<postmaster>``;
* the RFC 5321 limits apply: local part 64 octets, path 256 octets, DNS labels 63; 0.94 has none;
* :meth:`Address.format` escapes only ``"`` and ``\\`` inside quotes (0.94 escapes every
  special: ``"foo\\ bar"``), and :attr:`Address.address` quotes too (0.94 does not; see
  :attr:`Address.unquoted_address`).
"""

import ipaddress
import re

import attr

MAX_LOCAL_PART = 64
#: a whole path, angle brackets included; it also bounds the domain below RFC 5321's 255
MAX_PATH = 256

_ATEXT = r"\-A-Za-z0-9!#$%&'*+/=?^_`{|}~"
_DOT_STRING = re.compile(r"[{0}]+(?:\.[{0}]+)*".format(_ATEXT))
_LENIENT_DOT_STRING = re.compile(r"[{0}][{0}.]*".format(_ATEXT))
# RFC 5321 qtextSMTP (space included) and quoted-pairSMTP; no control characters
_QUOTED_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_SNUM = re.compile(r"[0-9]{1,3}")
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]+")
_IPV6_GROUP_SEP = re.compile(r":+")


def _casefold_host(host):
    """The comparison key of a host: hosts are case-insensitive."""
    return host.lower() if host is not None else None


def _optional_str(instance, attribute, value):
    """attrs validator: None or a str."""
    if value is not None and not isinstance(value, str):
        raise TypeError("%s must be a str or None, not %r" % (attribute.name, value))


def is_valid_domain(domain):
    """True for dot-separated DNS labels (letter/digit at both ends, at most 63 characters)."""
    return all(_LABEL.fullmatch(label) for label in domain.split("."))


def _is_valid_ipv6(text):
    # The character check keeps out the zone ids (``%eth0``) the ipaddress module accepts.
    if not _IPV6_CHARS.fullmatch(text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    # RFC 5321 4.1.3: "::" stands for at least two zero groups, so at most six are explicit
    # (an embedded IPv4 address counts as two); ipaddress also allows "::" for one group.
    explicit = sum(2 if "." in g else 1 for g in _IPV6_GROUP_SEP.split(text) if g)
    return "::" not in text or explicit <= 6


def is_valid_address_literal(literal):
    """True for ``[1.2.3.4]`` or ``[IPv6:...]`` holding a valid address (the tag in any case)."""
    if len(literal) < 2 or literal[0] != "[" or literal[-1] != "]":
        return False
    text = literal[1:-1]
    if text[:5].lower() == "ipv6:":
        return _is_valid_ipv6(text[5:])
    octets = text.split(".")
    return len(octets) == 4 and all(_SNUM.fullmatch(o) and int(o) <= 255 for o in octets)


def _parse_local_part(local):
    """The local part without quoting, or None if it is not acceptable."""
    if len(local) > MAX_LOCAL_PART:
        return None
    if _LENIENT_DOT_STRING.fullmatch(local):
        return local
    m = _QUOTED_STRING.fullmatch(local)
    if m:
        return _QUOTED_PAIR.sub(r"\1", m.group(1))
    return None


def _strip_source_route(path):
    """``@a,@b:user@host`` → ``user@host``; None if the route is malformed."""
    # A route's domains cannot hold ":" (no address literals there), so the first ":" ends it.
    route, colon, mailbox = path.partition(":")
    if not colon:
        return None
    for hop in route.split(","):
        if not (hop.startswith("@") and is_valid_domain(hop[1:])):
            return None
    return mailbox


def quote_local_part(user):
    """``user`` as it must be written in a path: as is if a dot-atom, else a quoted string."""
    if _DOT_STRING.fullmatch(user):
        return user
    return '"%s"' % user.replace("\\", "\\\\").replace('"', '\\"')


#: local-part characters that make a mail router send the address elsewhere
ROUTING_CHARACTERS = "%!@"


@attr.s(slots=True, unsafe_hash=True)
class Address:
    """An envelope address: ``user`` (local part, unquoted) and ``host``, or the null path.

    ``Address(user, host)`` takes the parts as given, without checks. The null path ``<>`` has
    ``user`` and ``host`` None; ``<postmaster>`` has user ``postmaster`` and no host.
    Equality and hash use ``(user, host.lower())``; ``notes`` is per-address data for plugins
    (the per-recipient policy mechanism) and takes no part in either. Do not change ``user``
    or ``host`` of an address that sits in a set or dict.
    """

    user = attr.ib(default=None, validator=_optional_str)
    host = attr.ib(default=None, validator=_optional_str, eq=_casefold_host)
    notes = attr.ib(factory=dict, eq=False, repr=False)

    @classmethod
    def null(cls):
        """The null reverse-path ``<>``."""
        return cls(None, None)

    @classmethod
    def parse(cls, path):
        """Parse ``<path>`` (or a bare ``user@host``) into an Address; None if invalid.

        ``<>`` is the null path; ``<postmaster>`` in any case is user ``postmaster`` without
        host. A source route (``<@a,@b:user@host>``) is checked and dropped.
        """
        if len(path) >= 2 and path[0] == "<" and path[-1] == ">":
            inner = path[1:-1]
            if inner == "":
                return cls.null()
        else:
            inner = path
        if len(inner) + 2 > MAX_PATH:
            return None
        if inner.lower() == "postmaster":
            return cls("postmaster", None)
        if inner.startswith("@"):
            inner = _strip_source_route(inner)
            if inner is None:
                return None
        # No domain or literal holds "@", so the last one separates the local part.
        local, at, host = inner.rpartition("@")
        if not at:
            return None
        user = _parse_local_part(local)
        if user is None:
            return None
        if not (is_valid_domain(host) or is_valid_address_literal(host)):
            return None
        return cls(user, host)

    @property
    def is_null(self):
        """True for the null path ``<>``."""
        return self.user is None

    @property
    def address(self):
        """``user@host`` without angle brackets, the local part quoted if needed; "" if null."""
        if self.user is None:
            return ""
        return self._join(quote_local_part(self.user))

    @property
    def unquoted_address(self):
        """``user@host`` with the local part as is, never quoted; "" if null.

        This is what 0.94's ``address()`` returns, and the envelope form qmail-queue and
        Postfix's cleanup expect.
        """
        if self.user is None:
            return ""
        return self._join(self.user)

    def _join(self, local):
        return local if self.host is None else local + "@" + self.host

    def routing_character(self):
        """The first of ``%``, ``!``, ``@`` in the local part, or None.

        A mail router may send such a local part elsewhere: the percent hack
        (``victim%elsewhere@local``), a UUCP bang path (``elsewhere!victim@local``), an ``@``
        inside a quoted local part. Postfix does all three by default.
        """
        user = self.user or ""
        for char in ROUTING_CHARACTERS:
            if char in user:
                return char
        return None

    def format(self):
        """The path as written in SMTP: ``<user@host>``, ``<"foo bar"@host>``, ``<>``."""
        return "<%s>" % self.address

    def __str__(self):
        return self.format()
