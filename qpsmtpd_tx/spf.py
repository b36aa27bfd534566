"""SPF (RFC 7208) ``check_host()`` on the connection's resolver, never blocking the reactor.

The evaluator is pyspf's (the reference implementation of the RFC 7208 test suite's authors),
which asks DNS through a synchronous, module-level hook. :func:`check_host` runs it with a
hook (in force for its runs only, per thread: other users of pyspf keep pyspf's own) that
asks our resolver (the connection's :class:`~qpsmtpd_tx.dns.DNSBudget`, so its cache and
budget apply): an answer the resolver has at once (from its cache) is used at once;
a lookup that has to wait ends that run (as a temporary error, which pyspf handles like any
DNS failure; its result is thrown away), and once the lookups under way have answered, pyspf
runs again from the start, until a run misses nothing. Every run sees the same answers for
the same names, so RFC 7208's limits (10 mechanisms or modifiers that look up DNS, 10 MX or
PTR names, 2 void lookups) are pyspf's and hold as they would with a synchronous resolver.
A run takes about 0.1 ms; with a cold cache a check takes one run per round trip to the DNS
(the addresses of an MX or PTR answer's names are asked as soon as it arrives, all at once),
with a warm one a single run.

Why pyspf rather than an evaluator of our own (measured on the RFC 7208 suite, both fed the
same way): pyspf passes 203 of 203 tests unchanged. An asynchronous evaluator written for
the comparison (~400 lines, not kept) passed 194 on its first run and 203 after fixes made
against the suite itself, with about half pyspf's CPU per check (~45 against ~80 us with
answers at once). pyspf is in production use elsewhere and has met cases the suite does
not hold; its cost is small beside a message's (~1.4 ms), and results are reused per
connection (see sender_permitted_from).

:class:`SPFResult` carries the result and formats what qpsmtpd's plugin (through Perl's
Mail::SPF) shows: the local explanation (``example.com: Sender is not authorized by default
to use 'a@example.com' in 'mfrom' identity (mechanism '-all' matched)``) and the
``Received-SPF`` field.
"""

import re
import threading

import attr
import spf as pyspf
from twisted.internet import defer

from qpsmtpd_tx.dns import DNSError, DNSTimeout, ServFail, parse_ip
from qpsmtpd_tx.message import field_bytes
from qpsmtpd_tx.printable import printable
from qpsmtpd_tx.small_cache import small_cache

#: RFC 7208 4.6.4: a check may take at most this long (the RFC says "at least 20 seconds")
DEFAULT_TIMEOUT = 20
#: distinct lookups one check may make; RFC 7208's limits keep a check far below (10 terms
#: with 10 MX names each and their addresses): this only bounds a bug
MAX_LOOKUPS = 250
#: MX or PTR names whose addresses are asked in advance (RFC 7208 4.6.4: 10 are looked at)
MAX_NAMES = 10
#: the longest SPF record read (characters): a longer one is a permerror. pyspf runs again
#: over every record read so far after each DNS round trip: 11 records of 53 KB (3000
#: ``ip4`` terms each) chained by ``include`` cost 1.7 s of reactor CPU per check, at
#: 3.5 KB each 0.11 s (measured). RFC 7208 3.4 asks records to fit in 512 bytes. (Below
#: 4300 also keeps pyspf's int() of a CIDR length or macro digits from raising ValueError.)
MAX_RECORD = 4096
#: the longest explanation (``exp=``) record expanded (characters); a longer one is ignored,
#: as RFC 7208 6.2 ignores one that cannot be used. pyspf expands one at every level of a
#: check (it looks for errors in includes' too) in time quadratic in its macros: 60 KB of
#: ``%{d1r+-._}`` cost 7.5 s of reactor CPU for one check, 1 KB 2 ms (measured)
MAX_EXPLANATION = 1024

#: RFC 1035 2.3.4: the longest label; RFC 7208 7.3: the longest domain name a macro gives
MAX_LABEL = 63
MAX_NAME = 253

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")
#: the mechanisms that match the client's address, whose texts name it (Mail::SPF's
#: SenderIPAddrMech: a, mx, ptr, ip4, ip6): "192.0.2.1 is authorized ..."
_ADDRESS_MECHANISMS = ("ip4", "ip6", "a", "mx", "ptr")
#: Mail::SPF's explanation templates by result; ``{who}`` is "Sender" ("sender" inside the
#: neutral text) or, for the address mechanisms, the client address; ``{default}`` " by
#: default" for ``all``
_TEMPLATES = {
    "pass": "{who} is authorized{default} to use '{identity}' in '{scope}' identity",
    "fail": "{who} is not authorized{default} to use '{identity}' in '{scope}' identity",
    "softfail": "{who} is not authorized{default} to use '{identity}' in '{scope}' identity,"
                " however domain is not currently prepared for false failures",
    "neutral": "Domain does not state whether {who} is authorized to use '{identity}' in"
               " '{scope}' identity",
}
#: RFC 7208 4.3: a domain that is malformed or has a single label gives "none" at once
_DOMAIN = re.compile(r"^(?=.{1,253}\.?$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)+"
                     r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$")
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*$")


@small_cache(1024, 255)
def is_domain(name):
    """Whether ``name`` can be checked: a multi-label domain name, each label 1-63 letters,
    digits, hyphens or underscores (not an address literal such as ``[192.0.2.1]``).
    Remembered for names up to 255 characters (no longer one is a domain name): a
    connection's HELO name is asked again at each MAIL FROM."""
    return bool(name) and _DOMAIN.match(name) is not None


class _Missing(pyspf.TempError):
    """Raised by the hook for a lookup not made yet: the run's result is thrown away."""


@attr.s
class SPFResult:
    """The outcome of one ``check_host()``.

    ``result``: one of :data:`RESULTS`; ``scope``: ``mfrom`` or ``helo`` (Mail::SPF's names);
    ``identity``: the address (``mfrom``) or host name (``helo``) checked; ``domain``: the
    domain whose record was asked first; ``ip``, ``helo``: the client's; ``mechanism``: the
    term that matched in that record (``include:…`` for a match inside an include; None for
    none, an error or the default neutral); ``authority``: the domain of the record that
    decided (after ``redirect=``); ``explanation``: the sender domain's explanation (``exp=``)
    or pyspf's default text; ``problem``: what went wrong for permerror and temperror;
    ``lookups``: DNS lookups made; ``runs``: times pyspf ran.
    """

    result = attr.ib()
    scope = attr.ib()
    identity = attr.ib()
    domain = attr.ib()
    ip = attr.ib()
    helo = attr.ib()
    mechanism = attr.ib(default=None)
    authority = attr.ib(default=None)
    explanation = attr.ib(default="")
    problem = attr.ib(default=None)
    lookups = attr.ib(default=0)
    runs = attr.ib(default=0)

    def local_explanation(self):
        """Mail::SPF's local explanation, the text of qpsmtpd's replies (``domain: why``).
        Kept once made: a connection reuses its result for many messages."""
        text = self.__dict__.get("_explanation")
        if text is None:
            text = self._explanation = self._local_explanation()
        return text

    def _local_explanation(self):
        domain = self.domain
        if self.authority and self.authority != domain.lower():
            domain = "%s ... %s" % (domain, self.authority)
        return "%s: %s" % (domain, self._why())

    def _why(self):
        if self.result == "none":
            return "No applicable sender policy available"
        if self.result in ("permerror", "temperror"):
            return self.problem or self.result
        if self.mechanism is None:
            return "Default neutral result due to no mechanism matches"
        kind = re.split(r"[:/=]", self.mechanism.lstrip("+-~?"), 1)[0].lower()
        who = "sender" if self.result == "neutral" else "Sender"
        text = _TEMPLATES[self.result].format(
            who=self.ip if kind in _ADDRESS_MECHANISMS else who,
            default=" by default" if kind == "all" else "",
            identity=self.identity, scope=self.scope)
        if self.result == "neutral" and kind == "all":
            text = text.replace(" by default", "")
        return "%s (mechanism '%s' matched)" % (text, self.mechanism.lstrip("+"))

    def received_spf(self, receiver):
        """The ``Received-SPF`` field's value (RFC 7208 9.1), as Mail::SPF writes it, with
        unsafe characters escaped (:func:`~qpsmtpd_tx.printable.printable`: the field must
        not be split by client text); kept once made, as the explanation."""
        made = self.__dict__.setdefault("_received_spf_texts", {})
        if receiver not in made:
            made[receiver] = self._received_spf(receiver)
        return made[receiver]

    def received_spf_field(self, receiver):
        """The whole ``Received-SPF`` field, as :func:`~qpsmtpd_tx.message.field_bytes` makes
        it from :meth:`received_spf` (with its checks); kept once made, for
        :meth:`~qpsmtpd_tx.message.Header.add_field` at each message of the connection."""
        made = self.__dict__.setdefault("_received_spf_fields", {})
        raw = made.get(receiver)
        if raw is None:
            raw = made[receiver] = field_bytes("Received-SPF", self.received_spf(receiver))
        return raw

    def _received_spf(self, receiver):
        pairs = [("receiver", receiver or "unknown"),
                 ("identity", "mailfrom" if self.scope == "mfrom" else "helo")]
        if self.scope == "mfrom":
            pairs.append(("envelope-from", self.identity))
            if self.helo:
                pairs.append(("helo", self.helo))
        else:
            pairs.append(("helo", self.identity))
        pairs.append(("client-ip", self.ip))
        return printable("%s (%s) %s" % (self.result, self.local_explanation(),
                                         "; ".join("%s=%s" % (k, _quoted(v)) for k, v in pairs)))


def _quoted(value):
    value = str(value)
    if _DOT_ATOM.match(value):
        return value
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


class _Query(pyspf.query):
    """pyspf's query, noting the domain in force when the deciding term is recorded."""

    authority = None

    @property
    def mechanism(self):
        """The deciding term (pyspf sets it at the top level only)."""
        return self.__dict__.get("_mechanism")

    @mechanism.setter
    def mechanism(self, value):
        # the record that decided, also by its default (neutral, no term matched: after a
        # redirect=, the target's), as Mail::SPF names it: "example.com ... target", in
        # lower case
        self.__dict__["_mechanism"] = value
        self.authority = self.d.lower() if self.d else self.d

    def get_explanation(self, spec):
        """pyspf's, but an explanation record longer than :data:`MAX_EXPLANATION` is not
        expanded (None: as if the domain gave none). Its lookup is the one pyspf makes."""
        if spec:
            try:
                records = self.dns_txt(spec, ignore_void=True)
            except (pyspf.TempError, pyspf.PermError):
                records = ()        # pyspf's own call below meets the same error
            if len(records) == 1 and len(records[0]) > MAX_EXPLANATION:
                return None
        return super().get_explanation(spec)

    def check0(self, spf, recursion):
        """pyspf's evaluation of a record, with RFC 7208's rules for modifier names: they
        are case-insensitive (4.6.1; pyspf ignored ``REDIRECT=`` and ``EXP=`` as unknown
        modifiers), and an unknown modifier is ignored however often it appears (6; pyspf
        made a second one a permerror). Its macros are still checked (7.1)."""
        if spf and spf.count("=") > 1:      # a modifier besides v=spf1
            spf = self._with_modifiers_normalised(spf)
        return super().check0(spf, recursion)

    def _with_modifiers_normalised(self, record):
        terms = record.split(" ")
        kept, seen = terms[:1], set()
        for term in terms[1:]:
            parts = pyspf.RE_MODIFIER.split(term)[1:]
            if len(parts) == 2:
                name, value = parts[0].lower(), parts[1]
                if name in seen and name not in ("redirect", "exp"):
                    self.expand(value)      # a syntax error in it is still one
                    continue
                seen.add(name)
                term = "%s=%s" % (name, value)
            kept.append(term)
        return " ".join(kept)

    def expand(self, s, stripdot=True):
        """pyspf's, where a domain name longer than 253 characters loses labels from its
        left until it fits (RFC 7208 7.3; pyspf removes one label only, so a longer name
        was looked up as a name that cannot be, where Mail::SPF asks the shortened one),
        and where the transformer ``R`` reverses as ``r`` does (RFC 7208 7.1's ABNF, whose
        quoted strings are case-insensitive: RFC 5234 2.3; pyspf ignored it). A macro
        selecting zero parts (``%{d0}``) or a ``%`` that starts no macro (``%{d``) is a
        syntax error (7.1, 7.3; pyspf expanded the one as ``%{d}``, kept the other)."""
        if "%" in s:
            s = self._checked_macros(s)
        result = super().expand(s, stripdot)
        if stripdot:        # a domain-spec (an explanation's text is expanded without)
            while len(result) > MAX_NAME and "." in result:
                result = result.split(".", 1)[1]
        return result

    @staticmethod
    def _checked_macros(s):
        if "R" in s:
            s = pyspf.RE_CHAR.sub(_lower_transformer, s)
        zero = _ZERO_PARTS.search(s)
        if zero:
            # RFC 7208 7.3: "If a DIGIT is specified, the value MUST be nonzero"
            raise pyspf.PermError("invalid-macro-char ", zero.group(0))
        if "%" in pyspf.RE_CHAR.sub("", s):
            # a % that starts no macro (an unclosed "%{d"): RFC 7208 7.1 allows none
            raise pyspf.PermError("invalid-macro-char ", s)
        return s

    def dns(self, name, qtype, cnames=None, ignore_void=False):
        """pyspf's lookup, with RFC 7208 4.6.4's void lookups counted by term, and a name no
        query can be made for taken as one that does not exist.

        4.6.4 limits the "terms" for which DNS queries find nothing: a term counts once,
        however many of its queries do (pyspf counted each query: an ``mx`` whose MX names
        had no address before the one that matched was a permerror; Mail::SPF counts each
        query too, but stops at the match). A name with a label that is empty or longer
        than 63 characters (RFC 1035 2.3.4) gives no records and is void as a Name Error
        is (pyspf gave no records without counting it): RFC 7208 4.8 leaves such a
        target-name undefined; the RFC 7208 suite's invalid-domain tests call it
        non-existent (by analogy with 4.3 and section 5's Name Error)."""
        if name and not _askable(name):
            result = []
        else:
            result = super().dns(name, qtype, cnames, ignore_void=True)
        if not result and not ignore_void:
            self._void_lookup()
        return result

    #: the term being evaluated (a number: see check_lookups and dns_spf) and the last one
    #: that counted a void lookup
    _term = 0
    _void_term = None

    def check_lookups(self):
        """pyspf's count of the terms that look up DNS, each of which starts a term for
        the count of void lookups."""
        self._term += 1
        super().check_lookups()

    def dns_spf(self, domain):
        """pyspf's, the lookup of a record (the first, or an ``include`` or ``redirect=``
        target's: the latter is looked up after the record's mechanisms) a term of its own
        for the count of void lookups."""
        self._term += 1
        return super().dns_spf(domain)

    def _void_lookup(self):
        if self._void_term == self._term:
            return
        self._void_term = self._term
        self.void_lookups += 1
        if self.void_lookups > pyspf.MAX_VOID_LOOKUPS:
            raise pyspf.PermError("Void lookup limit of %d exceeded" % pyspf.MAX_VOID_LOOKUPS)

    def validated_ptrs(self):
        """pyspf's, where a PTR or address lookup that fails counts as no records: RFC 7208
        5.5 skips such a name (a real resolver's SERVFAIL for a CNAME loop, for one)."""
        self.answers.lenient += 1
        try:
            return super().validated_ptrs()
        finally:
            self.answers.lenient -= 1


#: a macro whose transformer selects zero parts (``%{d0}``); ``%%`` is an escaped percent
_ZERO_PARTS = re.compile(r"(?<!%)(?:%%)*%\{[A-Za-z]0+(?![0-9])[^}]*\}")


def _lower_transformer(match):
    """A macro (a match of pyspf's ``RE_CHAR``) with an ``R`` transformer written ``r``."""
    return re.sub(r"^(%\{[A-Za-z][0-9]*)R", r"\1r", match.group(0))


#: a name a DNS query can be made for (one final dot allowed): every label 1 to 63 long
_ASKABLE = re.compile(r"[^.]{1,%d}(?:\.[^.]{1,%d})*\.?" % (MAX_LABEL, MAX_LABEL), re.S)


def _askable(name):
    """Whether a DNS query can be made for ``name`` (:data:`_ASKABLE`)."""
    return _ASKABLE.fullmatch(name) is not None


class _Answers:
    """The outcomes of the lookups made so far, those under way, and whether a run missed one.

    ``fetch(name, rrtype)`` starts a lookup: a Deferred outcome (records or DNSError) that
    never fails. ``address_type`` (A or AAAA) is what the names of MX and PTR answers are
    asked for, as soon as such an answer arrives.
    """

    def __init__(self, fetch=None, address_type="A"):
        self.fetch = fetch
        self.address_type = address_type
        self.known = {}
        self.pending = {}
        self.missed = False
        self.too_many = False
        self.failed = None
        #: inside the ``ptr`` mechanism or ``%{p}``: failures count as no records
        self.lenient = 0

    def start(self, key):
        """Start the lookup ``key`` (name, rrtype) unless made or under way; a cached answer
        is known at once."""
        if key in self.known or key in self.pending or self.fetch is None:
            return
        if len(self.known) + len(self.pending) >= MAX_LOOKUPS:
            self.too_many = True
            return
        d = self.pending[key] = self.fetch(*key)
        d.addCallback(self._arrived, key)

    def _arrived(self, outcome, key):
        self.pending.pop(key, None)
        self.known[key] = outcome
        for follower in _followers(key, outcome, self.address_type):
            self.start(follower)

    def hook(self, name, qtype, strict=True, timeout=None):
        """pyspf's ``DNSLookup``: ``((name, type), value)`` pairs for the records known."""
        key = (name.lower().rstrip("."), qtype.upper())
        self.start(key)
        if key not in self.known:
            self.missed = True
            raise _Missing("lookup of %s %s not made yet" % key)
        outcome = self.known[key]
        if isinstance(outcome, DNSError):
            if outcome.no_record or self.lenient:
                return []
            self.failed = outcome
            raise pyspf.TempError(_dns_problem(outcome))
        if qtype.upper() in ("TXT", "SPF"):
            _check_size(name, outcome)
        return [((name, qtype), _pyspf_value(qtype, record)) for record in outcome]


def _check_size(name, records):
    """Raise pyspf's PermError if one of the TXT ``records`` at ``name`` is an SPF record
    longer than :data:`MAX_RECORD`."""
    for record in records:
        if len(record) > MAX_RECORD and record[:6].lower() == "v=spf1":
            raise pyspf.PermError("SPF record at %s is %d characters long (at most %d are "
                                  "read)" % (name, len(record), MAX_RECORD))


def _dns_problem(error):
    """Mail::SPF's text for a lookup that failed."""
    if isinstance(error, DNSTimeout):
        return "Time-out on DNS '%s' lookup of '%s'" % (error.rrtype, error.name)
    return "'SERVFAIL' error on DNS '%s' lookup of '%s'" % (error.rrtype, error.name)


def _pyspf_value(qtype, record):
    """A record as pyspf's dnspython hook gives it (TXT as a tuple of byte strings)."""
    if qtype in ("TXT", "SPF"):
        return (record.encode("utf-8", "surrogateescape"),)
    return record


#: the answers of the run in progress in this thread (pyspf's hook is one for the process)
_current = threading.local()
#: pyspf's own DNS function, for anyone else in the process using pyspf (not us)
_pyspf_lookup = pyspf.DNSLookup


def _dispatch(name, qtype, strict=True, timeout=None):
    """pyspf's DNS hook: a run of ours answers from its own lookups; any other use of pyspf
    (another thread, another library) gets pyspf's own lookup as before."""
    answers = getattr(_current, "answers", None)
    if answers is None:
        return _pyspf_lookup(name, qtype, strict, timeout)
    return answers.hook(name, qtype, strict, timeout)


pyspf.DNSLookup = _dispatch


class _SearchedOnce:
    """pyspf's ``RE_INVALID_MACRO`` with its last answer kept: pyspf's ``expand`` searches
    the whole text once for each of its labels, the same search each time (time quadratic
    in its dots: ``%{d}`` and 4000 dots took 0.5 s per expansion, measured); here the
    search of a text runs once. Same answers for every user of pyspf."""

    def __init__(self, pattern):
        self.pattern = pattern
        self.last = (None, None)

    def search(self, text):
        """``pattern.search(text)``, at once for the text searched last (the same object:
        str is immutable)."""
        last = self.last
        if last[0] is not text:
            last = self.last = (text, self.pattern.search(text))
        return last[1]


pyspf.RE_INVALID_MACRO = _SearchedOnce(pyspf.RE_INVALID_MACRO)

#: pyspf's ``RE_TOPLAB`` (does a domain-spec end in a valid top label: ``RE_TOPLAB.split(spec)
#: [-1]`` is empty) has for "letters and digits, one letter at least" ``[0-9a-z]*[a-z]
#: [0-9a-z]*``, which backtracks in time quadratic in a label's length where it fails
#: (``x.``, 4000 letters and ``_``: 0.25 s a search, at every term of every run, measured);
#: ``[0-9]*[a-z][0-9a-z]*`` matches the same strings (the first letter is the first
#: character that is not a digit) in linear time: the same answers, 0.2 ms for that search
_SLOW_TOPLABEL, _FAST_TOPLABEL = "[0-9a-z]*[a-z][0-9a-z]*", "[0-9]*[a-z][0-9a-z]*"
if _SLOW_TOPLABEL in pyspf.RE_TOPLAB.pattern:
    pyspf.RE_TOPLAB = re.compile(pyspf.RE_TOPLAB.pattern.replace(_SLOW_TOPLABEL, _FAST_TOPLABEL),
                                 pyspf.RE_TOPLAB.flags)


def _run(answers, ip, sender, helo, receiver, default_explanation, check=True):
    """One synchronous run of pyspf on the answers known; ``(query, (result, code, text))``
    (with ``check`` false, only the query, and None)."""
    _current.answers = answers
    try:
        query = _Query(i=ip, s=sender, h=helo, receiver=receiver, strict=True)
        query.answers = answers
        if default_explanation:
            query.set_default_explanation(default_explanation)
        return query, (query.check() if check else None)
    finally:
        _current.answers = None


def _followers(key, outcome, rrtype):
    """Lookups pyspf will make next from an MX or PTR answer: the names' addresses."""
    if isinstance(outcome, DNSError):
        return []
    if key[1] == "MX":
        names = [exchange for _, exchange in sorted(outcome)[:MAX_NAMES]]
    elif key[1] == "PTR":
        names = list(outcome)[:MAX_NAMES]
    else:
        return []
    return [(name.lower().rstrip("."), rrtype) for name in names if name]


def _records(answer):
    return answer.records


@defer.inlineCallbacks
def check_host(dns, ip, sender, helo, receiver=None, timeout=DEFAULT_TIMEOUT, clock=None,
               default_explanation=None):
    """A Deferred :class:`SPFResult` of RFC 7208's check_host for ``ip`` and ``sender``.

    ``dns``: anything with ``lookup(name, rrtype, timeout)`` giving Deferred answers (the
    connection's ``dns``); ``sender``: ``user@domain``, or empty for a null sender, when the
    HELO identity ``postmaster@helo`` is checked (RFC 7208 2.4); ``helo``: the HELO/EHLO
    argument (the ``%{h}`` macro); ``receiver``: our host name (``%{r}``); ``timeout``: the
    longest the whole check may wait for DNS (a lookup beyond it is a temperror); ``clock``:
    for that deadline (default: ``dns.clock``); ``default_explanation``: the explanation of a
    fail when the domain gives none (default: pyspf's ``SPF fail - not authorized``).
    """
    clock = clock or dns.clock
    domain = sender.rpartition("@")[2] if sender else helo
    if not is_domain(domain):
        query, _ = _run(_Answers(), ip, sender, helo, receiver, default_explanation,
                        check=False)
        return _result(query, "none", "", _Answers(), 0)
    deadline = clock.seconds() + timeout if timeout else None
    address = parse_ip(ip)          # an IPv4-mapped IPv6 address is its IPv4 one
    if address is None:
        raise ValueError("not an IP address: %r" % (ip,))

    def fetch(name, qtype):
        left = None if deadline is None else deadline - clock.seconds()
        return _fetch(dns, name, qtype, left)
    answers = _Answers(fetch, "A" if address.version == 4 else "AAAA")
    runs = 0
    while True:
        runs += 1
        answers.failed = None
        answers.missed = False
        query, (result, _, text) = _run(answers, ip, sender, helo, receiver,
                                           default_explanation)
        if answers.too_many:
            result, text = "temperror", "more than %d DNS lookups" % MAX_LOOKUPS
            query.mechanism = None
            break
        if not answers.missed:
            break
        while answers.pending:      # with the lookups that answers under way start
            yield defer.DeferredList(list(answers.pending.values()))
    return _result(query, result, text, answers, runs)


def _fetch(dns, name, qtype, left):
    """One lookup's records (a tuple), or its DNSError; never fails."""
    if left is not None and left <= 0:
        return defer.succeed(DNSTimeout(name, qtype, "the SPF check's time is up"))
    d = dns.lookup(name, qtype, left)
    d.addCallback(_records)
    d.addErrback(_failed, name, qtype)
    return d


def _failed(failure, name, qtype):
    """A failed lookup as its DNSError (anything else counts as a server failure)."""
    if failure.check(DNSError):
        return failure.value
    return ServFail(name, qtype, failure.getErrorMessage())


def _result(query, result, text, answers, runs):
    problem = None
    if result == "temperror":
        problem = _dns_problem(answers.failed) if answers.failed else text.split(": ", 1)[-1]
    elif result == "permerror":
        problem = getattr(query, "prob", None) or text.split(": ", 1)[-1]
    return SPFResult(
        result=result,
        scope="helo" if query.ident == "helo" else "mfrom",
        identity=query.h if query.ident == "helo" else query.s,
        domain=query.o,
        ip=query.c,
        helo=query.h,
        mechanism=query.mechanism if result in ("pass", "fail", "softfail", "neutral") else None,
        authority=query.authority,
        explanation=text,
        problem=problem,
        lookups=len(answers.known),
        runs=runs)
