"""DMARC (RFC 7489) without the DNS: policy records, organizational domains, alignment and
the disposition. The dmarc plugin fetches the ``_dmarc`` TXT records and calls these.

The organizational domain is the registrable domain by the Public Suffix List (the
``publicsuffixlist`` package's current copy, or the rules of a ``public_suffix_list``
config file).
"""

import io
import random
import re
from email.utils import getaddresses

from publicsuffixlist import PublicSuffixList

from qpsmtpd_tx.small_cache import small_cache

POLICIES = ("none", "quarantine", "reject")
#: a message not sampled by pct= gets the next less strict policy (RFC 7489 section 6.6.4)
_LESS_STRICT = {"reject": "quarantine", "quarantine": "none", "none": "none"}
#: a tag name (RFC 7489 section 6.4)
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

_default_list = None


def suffix_list(rules=None):
    """A PublicSuffixList: of ``rules`` (lines in the list's format) if given, else the
    package's (loaded once: it takes a fifth of a second)."""
    global _default_list
    if rules is not None:
        return PublicSuffixList(io.StringIO("\n".join(rules) + "\n"))
    if _default_list is None:
        _default_list = PublicSuffixList()
    return _default_list


# The caches below hold what every message from the same domain asks again (a few
# hundredths of a millisecond each, measured under load); their entries are immutable.
# Arguments longer than this are not remembered (no real From field, domain or policy
# record is): a cache keeps its arguments.
CACHED_CHARS = 1024
#: the longest From field read (characters; longer: unparseable). The email package's
#: address parser costs about 2 us a character at worst (a field of 120,000 "@": 0.25 s of
#: reactor CPU, measured); a real From field is a few hundred characters.
MAX_FROM = 4096

@small_cache(4096, CACHED_CHARS)
def organizational_domain(domain, psl):
    """The registrable domain of ``domain`` (itself if it is a public suffix or unknown)."""
    domain = domain.lower().strip(".")
    return psl.privatesuffix(domain) or domain


@small_cache(4096, CACHED_CHARS)
def from_domain(froms):
    """The domain of the one address in the From fields ``froms`` (a tuple of values), lower
    case, a non-ASCII one in its IDNA form (``xn--…``, as DKIM's ``d=`` and SPF's domains
    are written: else they never align with it); None if there is not exactly one field
    with one address that has a domain, or if the field cannot be read (the email
    package's parser recurses once per ``(`` or ``:`` and raises RecursionError on a few
    hundred of them), or if that domain is no domain name written as such in the field
    (see :func:`_as_written`), or longer than :data:`MAX_FROM` characters."""
    if sum(map(len, froms)) > MAX_FROM:
        return None
    try:
        addresses = getaddresses(froms)
    except RecursionError:
        return None
    domains = {a.rpartition("@")[2].strip().lower().strip(".") for _, a in addresses}
    if len(froms) > 1 or len(addresses) != 1 or "" in domains or "@" not in addresses[0][1]:
        return None
    return _as_written(domains.pop(), froms[0])


#: a domain name's form (before the length checks): labels of letters, digits, ``-``, ``_``
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def _as_written(domain, value):
    """``domain`` (lower case; its IDNA form if it is not ASCII) if it is a domain name that
    the From field ``value`` holds as it is, else None. The email package's parser joins
    what follows an address to its domain (``a@bank.example x`` gives ``bank.examplex``, a
    name with no policy) and keeps characters no name has (``a@bank.example\\``): a mail
    reader shows ``bank.example``, so such a field is refused as unparseable, not checked
    for the wrong domain."""
    try:
        name = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return None
    if (len(name) <= 253 and _NAME.fullmatch(name) is not None
            and all(len(label) <= 63 for label in name.split("."))
            and domain in value.lower()):
        return name.lower()
    return None


class Record:
    """A DMARC policy record: ``p``, ``sp``, ``pct``, ``adkim``, ``aspf`` (defaults applied)."""

    def __init__(self, tags):
        self.tags = tags
        self.p = tags.get("p", "").lower()
        self.sp = tags.get("sp", "").lower() or self.p
        self.adkim = tags.get("adkim", "r").lower()
        self.aspf = tags.get("aspf", "r").lower()
        try:
            self.pct = min(100, max(0, int(tags.get("pct", "100"))))
        except ValueError:
            self.pct = 100
        if self.p not in POLICIES:
            # RFC 7489 section 6.6.3: an unknown p= with a report address counts as p=none
            self.p = "none"
        if self.sp not in POLICIES:
            self.sp = self.p


@small_cache(1024, CACHED_CHARS)
def parse_record(text):
    """The Record of TXT ``text``, or None if it is not a DMARC record (shared: not to be
    changed)."""
    parts = text.split(";")
    if not re.fullmatch(r"\s*v\s*=\s*DMARC1\s*", parts[0]):
        return None
    tags = {}
    for part in parts[1:]:
        # (a pattern ending in "(.*?)\s*$" went back over a run of spaces at each of its
        # characters: 20,000 spaces in a record cost 1.5 s, measured)
        name, equals, value = part.partition("=")
        name = name.strip()
        if equals and _TAG_NAME.fullmatch(name):
            tags.setdefault(name.lower(), value.strip())
    if "p" not in tags and "rua" not in tags:
        return None
    return Record(tags)


def select_record(records):
    """The one DMARC record among TXT ``records``; None if none or several (RFC 7489 6.6.3)."""
    return _select_record(tuple(records))


@small_cache(1024, CACHED_CHARS)
def _select_record(records):
    """:func:`select_record` of a tuple: remembered, as a DNS answer is read again for each
    message from its domain."""
    found = [r for r in (parse_record(text) for text in records) if r is not None]
    return found[0] if len(found) == 1 else None


def aligned(domain, from_domain, mode, psl):
    """Whether an authenticated ``domain`` is aligned with the From domain (``s``: the same
    name; ``r``: the same organizational domain)."""
    if domain == from_domain:   # the usual case (d= is the From domain): aligned either way
        return True
    return _aligned(domain, from_domain, mode, psl)


@small_cache(4096, CACHED_CHARS)
def _aligned(domain, from_domain, mode, psl):
    """:func:`aligned` of two different strings. Remembered: a message asks it for each
    passing DKIM signature and for SPF, and the next message from that sender asks again."""
    domain, from_domain = domain.lower().strip("."), from_domain.lower().strip(".")
    if mode == "s":
        return domain == from_domain
    return organizational_domain(domain, psl) == organizational_domain(from_domain, psl)


class Verdict:
    """The outcome for one message: ``result`` (pass/fail), ``policy`` (p= or sp= applied),
    ``disposition`` (what to do: none/quarantine/reject), and the aligned identifiers."""

    def __init__(self, result, policy, disposition, dkim_domains, spf_domain):
        self.result = result
        self.policy = policy
        self.disposition = disposition
        self.dkim_domains = dkim_domains
        self.spf_domain = spf_domain


def evaluate(record, from_domain, org_record, dkim_domains, spf, psl, sample=None):
    """The Verdict for a From domain ``from_domain`` under ``record``; ``org_record`` True
    when the record is the organizational domain's, not the From domain's own (then ``sp=``
    applies). ``dkim_domains``: d= of passing signatures; ``spf``: ``(domain, result)`` or
    None. ``sample`` (0–100, default random) decides ``pct=``."""
    dkim_ok = []
    for d in dkim_domains:     # (a loop: a list comprehension is a function call on 3.11)
        if aligned(d, from_domain, record.adkim, psl):
            dkim_ok.append(d)
    spf_ok = None
    if spf and spf[1] == "pass" and spf[0] and aligned(spf[0], from_domain, record.aspf, psl):
        spf_ok = spf[0]
    policy = record.sp if org_record else record.p
    if dkim_ok or spf_ok:
        return Verdict("pass", policy, "none", dkim_ok, spf_ok)
    if sample is None:
        sample = random.uniform(0, 100)
    disposition = policy if sample < record.pct else _LESS_STRICT[policy]
    return Verdict("fail", policy, disposition, [], None)
