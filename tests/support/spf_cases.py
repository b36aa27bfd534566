"""SPF policies made at random from a seed, for the differential test of our evaluator
against Mail::SPF (tests/test_spf_differential.py, bench/spf_differential.py).

A case is a sender domain of its own, ``c<N>.<origin>``, with the zone records its SPF
record needs (addresses, MX, included and redirected records, explanations, the names its
macros expand to, or not) and the identity checked: ``mfrom`` (``local@domain``) or ``helo``
(the domain as HELO name), from one of the client addresses of :data:`CLIENTS` (IPv4,
IPv6, IPv4-mapped IPv6). Records are made of mechanisms, qualifiers, modifiers, macros,
CIDR lengths, include chains, void lookups, terms beyond the lookup limits; a share of
them is then mutated (a term dropped, doubled, cut, its case changed, a character put in)
for syntax errors. ``case.made_by`` names the parts used, so a run can tell what it covered.

The reverse zones of :data:`CLIENTS` (for ``ptr`` and ``%{p}``: :func:`reverse_zones`) and the
zone their PTR names are in (:func:`ptr_records`) are set up once per run: a client's PTR
names, some of which give its address back.
"""

import ipaddress
import random

from qpsmtpd_tx.dns.names import reverse_name

#: client addresses: (address, its PTR names as (label under the ptr zone, whether that
#: name's address is the client's))
CLIENTS = [
    ("192.0.2.10", [("p1", True), ("p2", False)]),
    ("192.0.2.77", [("p3", True)]),
    ("198.51.100.5", []),
    ("203.0.113.200", [("p4", False)]),
    ("2001:db8::10", [("p6", True)]),
    ("2001:db8:1::abcd", []),
    ("::ffff:192.0.2.10", None),          # mapped: checked as 192.0.2.10
]
#: addresses the records name that are no client's
OTHERS4 = ["192.0.2.11", "10.1.2.3", "198.51.100.0", "203.0.113.1"]
OTHERS6 = ["2001:db8::11", "2001:db8:ffff::1", "fe80::1"]
LOCAL_PARTS = ["user", "a.b", "x-y", "first.last", "UPPER", "postmaster", "a+tag"]
QUALIFIERS = ["", "", "", "+", "-", "~", "?"]
#: macros that name something a case can publish: (text, how the generator expands it)
MACROS = ["%{d}", "%{i}", "%{ir}", "%{l}", "%{o}", "%{h}", "%{v}", "%{s}", "%{d1}", "%{l-}",
          "%{lr}", "%{ir}.%{v}", "%{L}", "%{d2r}", "%{i1}", "%{o2}", "%{l1r-}"]
#: macro texts that are syntax errors or odd (RFC 7208 7.1)
ODD_MACROS = ["%{z}", "%x", "%{d0}", "%{i33}", "%{c}", "%{r}", "%{t}", "%%", "%_", "%-",
              "%{p}", "%{P}", "%{d1r}", "%{l=}", "%{d}%"]


def unmapped(ip):
    """The address pyspf and Mail::SPF check: an IPv4-mapped one as IPv4."""
    return ip[7:] if ip.startswith("::ffff:") else ip


def ptr_records():
    """The records of the zone that the PTR names of :data:`CLIENTS` point into (each
    name's address: the client's, or another)."""
    records = []
    for ip, names in CLIENTS:
        for label, own in names or ():
            if ":" in ip:
                records.append((label + ".ptr", "AAAA", ip if own else OTHERS6[0]))
            else:
                records.append((label + ".ptr", "A", ip if own else OTHERS4[0]))
    return records


def reverse_zones(origin):
    """``{reverse zone name: [PTR names]}`` for :data:`CLIENTS` (empty: a name without PTR)."""
    zones = {}
    for ip, names in CLIENTS:
        if names is not None:
            zones[reverse_name(ip)] = ["%s.ptr.%s" % (label, origin) for label, _ in names]
    return zones


class Case:
    """One check: ``scope``, ``identity``, ``ip``, ``helo``; ``domain`` and ``records``
    (``(owner relative to the zone origin, type, data)``); ``made_by`` (parts used)."""

    def __init__(self, number, origin, ptr_origin, rnd):
        self.number = number
        self.origin = origin
        self.ptr_origin = ptr_origin
        self.rnd = rnd
        self.label = "c%d" % number
        self.domain = "%s.%s" % (self.label, origin)
        self.records = []
        self.made_by = set()
        self.names = 0
        self.ip, _ = rnd.choice(CLIENTS)
        self.local = rnd.choice(LOCAL_PARTS)
        self.scope = "helo" if rnd.random() < 0.2 else "mfrom"
        if self.scope == "helo":
            self.helo = self.domain
            self.identity = self.domain
        else:
            self.helo = rnd.choice([self.domain, "helo." + self.domain])
            self.identity = "%s@%s" % (self.local, self.domain)
        self.made_by.add("ipv6" if ":" in unmapped(self.ip) else "ipv4")
        if self.ip.startswith("::ffff:"):
            self.made_by.add("mapped")
        self.made_by.add(self.scope)

    def __repr__(self):
        return "<case %d %s %s %s helo=%s>" % (self.number, self.scope, self.identity,
                                               self.ip, self.helo)

    # ---- names and records -------------------------------------------------------------

    def new_name(self, prefix):
        """A name under the case's domain no other part uses: ``prefix<k>.<domain>``."""
        self.names += 1
        return "%s%d.%s" % (prefix, self.names, self.domain)

    def add(self, name, rtype, data):
        """Publish a record at ``name`` (a full name under the origin)."""
        assert name.endswith("." + self.origin), name
        self.records.append((name[:-len(self.origin) - 1], rtype, data))

    def address(self, family=None, own=None):
        """An address for an A/AAAA record: the client's (``own``) or another, of the
        client's family unless ``family`` (4 or 6) says."""
        rnd = self.rnd
        client = unmapped(self.ip)
        family = family or (6 if ":" in client else 4)
        own = rnd.random() < 0.5 if own is None else own
        if own and (":" in client) == (family == 6):
            return client
        return rnd.choice(OTHERS6 if family == 6 else OTHERS4)

    def host(self, prefix="h"):
        """A name with A and/or AAAA records (or none: a void lookup)."""
        name = self.new_name(prefix)
        kind = self.rnd.random()
        if kind < 0.1:
            self.made_by.add("void")
            return name
        for _ in range(self.rnd.choice([1, 1, 2, 3])):
            self.add(name, "A", self.address(4))
        if kind < 0.5:
            self.add(name, "AAAA", self.address(6))
        return name

    # ---- the record --------------------------------------------------------------------

    def spf(self, name, depth=0):
        """Publish an SPF record at ``name`` (usually), made at random."""
        rnd = self.rnd
        shape = rnd.random()
        if shape < 0.03:
            self.made_by.add("no record")
            if rnd.random() < 0.5:
                self.add(name, "TXT", "not an spf record")
            return
        if shape < 0.05:
            self.made_by.add("two records")
            self.add(name, "TXT", "v=spf1 -all")
            self.add(name, "TXT", "v=spf1 +all")
            return
        terms = [self.term(depth) for _ in range(rnd.choice([0, 1, 1, 2, 2, 3, 4, 6]))]
        if rnd.random() < 0.05:
            self.made_by.add("lookup limit")
            terms += ["a:%s" % self.host() for _ in range(rnd.choice([9, 10, 11, 12]))]
            rnd.shuffle(terms)
        ending = rnd.random()
        if ending < 0.6:
            terms.append(rnd.choice(QUALIFIERS) + "all")
        elif ending < 0.75 and depth < 3:
            self.made_by.add("redirect")
            target = self.new_name("r")
            self.spf(target, depth + 1)
            terms.append("redirect=" + self.target(target))
        if rnd.random() < 0.15:
            self.made_by.add("exp")
            target = self.new_name("e")
            if rnd.random() < 0.8:
                self.add(target, "TXT", rnd.choice(["%{i} is not allowed", "see %{d}",
                                                    "bad %{z}", "plain words"]))
            terms.append("exp=" + target)
        if rnd.random() < 0.05:
            terms.append(rnd.choice(["moo=bar", "x-y=%{d}", "foo=%{z}", "v=spf1"]))
            self.made_by.add("unknown modifier")
        text = " ".join(["v=spf1"] + terms)
        if rnd.random() < 0.12:
            text = self.mutated(text)
        if len(text) > 255 and rnd.random() < 0.5:
            self.add(name, "TXT", [text[i:i + 200] for i in range(0, len(text), 200)])
        else:
            self.add(name, "TXT", text)

    def term(self, depth):
        """One mechanism (with its qualifier), publishing what it names."""
        rnd = self.rnd
        kind = rnd.choice(["ip4", "ip4", "ip6", "a", "a", "mx", "mx", "include", "include",
                           "exists", "ptr", "macro", "all", "long label"])
        self.made_by.add(kind)
        qualifier = rnd.choice(QUALIFIERS)
        if kind == "ip4":
            return qualifier + "ip4:" + self.address(4) + self.cidr(32)
        if kind == "ip6":
            return qualifier + "ip6:" + self.address(6) + self.cidr(128)
        if kind == "a":
            if rnd.random() < 0.2:
                for _ in range(rnd.choice([1, 2])):
                    self.add(self.domain, "A", self.address(4))
                return qualifier + "a" + self.dual_cidr()
            return qualifier + "a:" + self.target(self.host()) + self.dual_cidr()
        if kind == "mx":
            name = self.new_name("m")
            count = rnd.choice([0, 1, 1, 2, 3, 10, 11])
            if count > 10:
                self.made_by.add("mx limit")
            for i in range(count):
                self.add(name, "MX", (i * 10, self.host("x")))
            return qualifier + "mx:" + self.target(name) + self.dual_cidr()
        if kind == "include":
            name = self.new_name("i")
            if depth < 3:
                self.spf(name, depth + 1)
            else:
                self.made_by.add("include of nothing")
            return qualifier + "include:" + self.target(name)
        if kind == "exists":
            name = self.new_name("x")
            if rnd.random() < 0.5:
                self.add(name, "A", "127.0.0.2")
            else:
                self.made_by.add("void")
            return qualifier + "exists:" + self.target(name)
        if kind == "ptr":
            return qualifier + rnd.choice(["ptr", "ptr:ptr." + self.ptr_origin,
                                           "ptr:p1.ptr." + self.ptr_origin, "ptr:%{d}"])
        if kind == "macro":
            return qualifier + self.macro_term()
        if kind == "long label":
            # a label of 64 (RFC 1035: 63 at most); its first 63 letters published or not
            self.names += 1
            label = ("n%d" % self.names).ljust(64, "n")
            long, cut = "%s.%s" % (label, self.domain), "%s.%s" % (label[:63], self.domain)
            if rnd.random() < 0.5:
                self.add(cut, "A", unmapped(self.ip) if ":" not in unmapped(self.ip)
                         else "127.0.0.2")
                self.add(cut, "TXT", "v=spf1 +all")
            return qualifier + rnd.choice(["a", "exists", "include"]) + ":" + long
        return qualifier + "all"

    def target(self, name):
        """``name`` as written in a term: itself, or with the case's domain as ``%{d}``, or
        with a trailing dot, or in upper case."""
        rnd = self.rnd
        choice = rnd.random()
        if choice < 0.15 and name.endswith("." + self.domain):
            self.made_by.add("%{d}")
            return name[:-len(self.domain)] + "%{d}"
        if choice < 0.2:
            self.made_by.add("trailing dot")
            return name + "."
        if choice < 0.23:
            self.made_by.add("upper case")
            return name.upper()
        return name

    def macro_term(self):
        """``exists`` or ``a`` on a name made by macros, published (or not) as expanded."""
        rnd = self.rnd
        if rnd.random() < 0.15:
            macro = rnd.choice(ODD_MACROS)
            self.made_by.add("odd macro")
        else:
            macro = rnd.choice(MACROS)
            self.made_by.add("macro")
        mechanism = rnd.choice(["exists", "a"])
        spec = "%s.m.%%{d}" % macro
        expanded = self.expand(macro)
        if expanded is not None and rnd.random() < 0.6:
            name = "%s.m.%s" % (expanded, self.domain)
            if all(0 < len(label) < 64 for label in name.split(".")) and len(name) < 250:
                self.add(name, "A", unmapped(self.ip) if ":" not in unmapped(self.ip)
                         else "127.0.0.2")
                if mechanism == "a" and ":" in unmapped(self.ip):
                    self.add(name, "AAAA", unmapped(self.ip))
        return "%s:%s" % (mechanism, spec)

    def expand(self, macro):
        """What a macro of :data:`MACROS` gives for this case, or None (not worked out:
        the record is published without the name)."""
        ip = unmapped(self.ip)
        if ":" in ip:
            dotted = ".".join(ipaddress.ip_address(ip).exploded.replace(":", ""))
            version = "ip6"
        else:
            dotted, version = ip, "in-addr"
        domain = self.domain if self.scope == "mfrom" else self.helo
        local = self.local if self.scope == "mfrom" else "postmaster"
        values = {
            "%{d}": domain, "%{o}": domain, "%{i}": dotted, "%{h}": self.helo,
            "%{v}": version, "%{l}": local, "%{s}": "%s@%s" % (local, domain),
            "%{ir}": ".".join(reversed(dotted.split("."))),
            "%{d1}": domain.split(".")[-1],
            "%{l-}": local.replace("-", "."),
            "%{lr}": ".".join(reversed(local.split("."))),
            "%{i1}": dotted.split(".")[-1],
            "%{o2}": ".".join(domain.split(".")[-2:]),
        }
        values["%{ir}.%{v}"] = values["%{ir}"] + "." + version
        value = values.get(macro)
        return value.lower() if value else None

    def cidr(self, longest):
        """A CIDR length suffix, now and then (too long: a syntax error)."""
        choice = self.rnd.random()
        if choice < 0.6:
            return ""
        self.made_by.add("cidr")
        if choice < 0.95:
            return "/%d" % self.rnd.randint(0, longest)
        self.made_by.add("bad cidr")
        return self.rnd.choice(["/%d" % (longest + 1), "/", "/-1", "/08", "/x"])

    def dual_cidr(self):
        """An ``a``/``mx`` CIDR suffix: none, IPv4, IPv6 or both."""
        choice = self.rnd.random()
        if choice < 0.6:
            return ""
        self.made_by.add("cidr")
        if choice < 0.75:
            return self.cidr(32)
        if choice < 0.9:
            return "/" + self.cidr(128)
        return self.cidr(32) + "/" + self.cidr(128)

    def mutated(self, text):
        """``text`` with one change a typist or a broken tool makes."""
        rnd = self.rnd
        terms = text.split(" ")
        how = rnd.choice(["drop", "double", "cut", "case", "char", "space", "comma", "version"])
        self.made_by.add("mutation " + how)
        at = rnd.randrange(len(terms))
        if how == "drop" and len(terms) > 1:
            del terms[rnd.randrange(1, len(terms))]
        elif how == "double":
            terms.insert(at, terms[at])
        elif how == "cut":
            terms[at] = terms[at][:rnd.randrange(len(terms[at]) + 1)]
        elif how == "case":
            terms[at] = terms[at].upper()
        elif how == "char":
            word = terms[at]
            i = rnd.randrange(len(word) + 1)
            terms[at] = word[:i] + rnd.choice(":/=%.-_+~?{}@,;") + word[i:]
        elif how == "space":
            terms[at] += " " * rnd.choice([1, 2])
        elif how == "comma":
            terms[at] += ","
        else:
            terms[0] = rnd.choice(["v=spf1", "V=SPF1", "v=spf10", "v=spf2", "v=spf1x"])
        return " ".join(terms)


def cases(count, seed, origin, ptr_origin, first=0):
    """``count`` cases made from ``seed``, numbered from ``first``, their domains under
    ``origin``; PTR names are under ``ptr.<ptr_origin>``."""
    rnd = random.Random(seed)
    for number in range(first, first + count):
        case = Case(number, origin, ptr_origin, random.Random(rnd.getrandbits(64)))
        case.spf(case.domain)
        if case.scope == "mfrom" and rnd.random() < 0.1:
            # a HELO name with a record of its own (not checked here)
            case.add("helo." + case.domain, "TXT", "v=spf1 -all")
        yield case
