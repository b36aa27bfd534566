"""Our SPF evaluator (qpsmtpd_tx.spf.check_host, through our real resolver) against Perl's
Mail::SPF (tests/support/mail_spf.pl), on the cases of tests/support/spf_cases.py published
on the suite's private NSD: results compared (pass, fail, softfail, neutral, none,
permerror, temperror).

The small seeded run is tests/test_spf_differential.py; the big one is this module::

    .venv/bin/python -m tests.support.spf_differential --cases 20000 [--seed N] [--batch 500]

(as root, from the checkout's top: NSD listens on port 53 of a private address). It prints
the counts, each class of disagreement with its reason, and the first cases of any that
:data:`INTENDED` does not explain; exit status 1 if there is one.

Every disagreement must belong to a class of :data:`INTENDED`: a case where RFC 7208 and
Mail::SPF part (our result is the RFC's), each with the section that decides it.
"""

import argparse
import collections
import re
import sys
import time

from twisted.internet import defer, threads

from qpsmtpd_tx.dns import BadName, Resolver
from qpsmtpd_tx.spf import check_host
from tests.support import spf_cases
from tests.support.mail_spf import MailSPF

#: cases checked by our evaluator at once (Mail::SPF takes them one at a time, in a thread)
CONCURRENCY = 20


def _long_label_cut(case, ours, theirs):
    # Mail::SPF cuts a label of 64 to 63 and asks that name, which the case may publish
    return "long label" in case.made_by and "Invalid domain" not in ours[1]


def _ours_says(*texts):
    return lambda case, ours, theirs: ours[0] == "permerror" and any(
        text in ours[1] for text in texts)


def _void_by_query(case, ours, theirs):
    # Mail::SPF counts each empty query of an mx's or ptr's names
    return (theirs[0] == "permerror" and "void DNS look-ups" in theirs[1]
            and ours[0] != "permerror" and bool({"mx", "ptr"} & case.made_by))


def _upper_case_r(case, ours, theirs):
    return (theirs[0] == "permerror" and re.search(r"%\{[A-Za-z][0-9]*R", theirs[1])
            is not None)


def _refused_by_c_ares(case, ours, theirs):
    # a name with a character c-ares does not put in a query (its hostname check)
    return any(not _HOST_NAME.match(name) for name in case.bad_names)


_HOST_NAME = re.compile(r"^[A-Za-z0-9._-]*$")

#: disagreements where RFC 7208 decides for us: (class, reason, test(case, ours, theirs)),
#: ``ours`` and ``theirs`` the two results as (result, text)
INTENDED = [
    ("long label cut", "a label of 64 characters: RFC 7208 4.8 leaves it undefined, the RFC "
     "7208 suite calls it non-existent (ours); Mail::SPF cuts it to 63 and asks that other "
     "name (here one the zone holds)", _long_label_cut),
    ("more than 10 MX names", "RFC 7208 4.6.4: more than 10 MX names are a permerror (the "
     "suite's mx-limit); Mail::SPF (RFC 4408) uses the first 10",
     _ours_says("More than 10 MX records returned")),
    ("invalid macro", "RFC 7208 4.6 and 7.1: a macro-string that is not one (%{z}, %x, c, r "
     "or t outside exp=) is a syntax error of the record, also in an unknown modifier or a "
     "term not reached; Mail::SPF sees it only when it expands that term",
     _ours_says("Unknown Macro Encountered", "invalid-macro-char",
                "c,r,t macros allowed in exp= text only")),
    ("void lookups by term", "RFC 7208 4.6.4 limits the terms whose queries find nothing; "
     "Mail::SPF counts each address query of an mx's or ptr's names", _void_by_query),
    ("R transformer", "RFC 7208 7.1's ABNF is case-insensitive (RFC 5234 2.3): %{dR} is "
     "%{dr}; Mail::SPF refuses it", _upper_case_r),
]

#: disagreements that are bugs of ours not fixed yet: (class, where, test)
KNOWN = [
    ("name refused by c-ares", "qpsmtpd_tx/dns/resolver.py:198 (Resolver._send): c-ares 1.34 "
     "puts only letters, digits, '-', '_', '.' in a query name (ARES_EBADNAME), so a name "
     "made by %{l} from a+tag@... is taken as one that does not exist; Mail::SPF asks it",
     _refused_by_c_ares),
]


def intended(case, ours, theirs):
    """The :data:`INTENDED` or :data:`KNOWN` class of a disagreement, or None."""
    for name, _, test in INTENDED + KNOWN:
        if test(case, ours, theirs):
            return name
    return None


def setup(dns):
    """The zones every run needs (the PTR names of the clients); returns the origin of the
    PTR names' zone."""
    ptr_origin = dns.set_zone(dns.unique_zone("spfptr"), spf_cases.ptr_records())
    for zone, names in spf_cases.reverse_zones(ptr_origin).items():
        dns.set_zone(zone, [("@", "PTR", name) for name in names])
    return ptr_origin


class Run:
    """A differential run on ``dns`` (the private NSD): :meth:`batch` checks cases,
    ``counts``, ``explained`` and ``unexplained`` hold what it found."""

    def __init__(self, dns, reactor):
        self.dns = dns
        self.resolver = Resolver.from_settings(reactor, [dns.address], timeout=5)
        self.perl = MailSPF(dns.address)
        self.counts = collections.Counter()
        self.made_by = collections.Counter()
        self.explained = collections.defaultdict(list)
        self.unexplained = []

    def close(self):
        """Stop Mail::SPF's process and our resolver."""
        self.perl.close()
        self.resolver.close()

    @defer.inlineCallbacks
    def batch(self, cases):
        """Publish ``cases`` (one zone: all have the same origin), check each both ways,
        compare."""
        cases = list(cases)
        records = [record for case in cases for record in case.records]
        self.dns.set_zone(cases[0].origin, records)
        theirs_d = threads.deferToThread(self._theirs, cases)
        semaphore = defer.DeferredSemaphore(CONCURRENCY)
        ours = yield defer.gatherResults([semaphore.run(self._ours, case) for case in cases],
                                         consumeErrors=True)
        theirs = yield theirs_d
        for case, our, their in zip(cases, ours, theirs):
            self.compare(case, our, their)

    def _theirs(self, cases):
        return [self.perl.check(case.scope, case.identity, case.ip, case.helo)
                for case in cases]

    def _ours(self, case):
        sender = case.identity if case.scope == "mfrom" else ""
        dns = _NotingBadNames(self.resolver)
        case.bad_names = dns.bad_names
        d = check_host(dns, case.ip, sender, case.helo, receiver="receiver.example")
        d.addCallback(lambda result: (result.result, result.local_explanation()))
        return d

    def compare(self, case, ours, theirs):
        """Count one case; note a disagreement in ``explained`` or ``unexplained``."""
        self.counts["cases"] += 1
        self.counts["ours " + ours[0]] += 1
        self.made_by.update(case.made_by)
        if ours[0] == theirs[0]:
            self.counts["same"] += 1
            return
        name = intended(case, ours, theirs)
        if name is None:
            self.unexplained.append((case, ours, theirs))
        else:
            self.explained[name].append((case, ours, theirs))

    def report(self, examples=20):
        """The counts and the disagreements, as text."""
        lines = ["%s: %d" % item for item in sorted(self.counts.items())]
        for kind, classes in (("intended", INTENDED), ("known bug", KNOWN)):
            for name, reason, _ in classes:
                found = self.explained.get(name, [])
                lines.append("%s, %s: %d (%s)" % (kind, name, len(found), reason))
        kinds = collections.Counter((o[0], t[0]) for _, o, t in self.unexplained)
        lines += ["unexplained: %d ours %s / Mail::SPF %s" % (n, o, t)
                  for (o, t), n in kinds.most_common()]
        for case, ours, theirs in self.unexplained[:examples]:
            lines.append(describe(case, ours, theirs))
        return "\n".join(lines)


class _NotingBadNames:
    """``resolver`` as check_host sees it, noting the names it refuses (BadName)."""

    def __init__(self, resolver):
        self.resolver = resolver
        self.clock = resolver.clock
        self.bad_names = []

    def lookup(self, name, rrtype, timeout=None):
        """The resolver's lookup."""
        d = self.resolver.lookup(name, rrtype, timeout)
        d.addErrback(self._noted, name)
        return d

    def _noted(self, failure, name):
        if failure.check(BadName):
            self.bad_names.append(name)
        return failure


def describe(case, ours, theirs):
    """A disagreement as text: the case, both results, the records."""
    records = "\n".join("    %s.%s %s %r" % (name, case.origin, rtype, data)
                        for name, rtype, data in case.records)
    return "UNEXPLAINED %r\n  ours: %s\n  Mail::SPF: %s\n  records:\n%s" % (
        case, ours, theirs, records)


@defer.inlineCallbacks
def run(reactor, dns, count, seed, batch_size=500, progress=None):
    """Check ``count`` cases from ``seed`` in batches of ``batch_size`` (a zone each); the
    finished :class:`Run`."""
    ptr_origin = setup(dns)
    differential = Run(dns, reactor)
    try:
        done = 0
        while done < count:
            size = min(batch_size, count - done)
            origin = dns.unique_zone("spfd")
            yield differential.batch(spf_cases.cases(size, seed + done, origin, ptr_origin,
                                                     first=done))
            dns.remove_zone(origin)
            done += size
            if progress:
                progress(differential, done)
    finally:
        differential.close()
    return differential


def main(argv=None):
    """The big run (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--examples", type=int, default=30)
    args = parser.parse_args(argv)
    from twisted.internet import task
    from tests.support.dns import private_dns

    dns = private_dns()
    started = time.monotonic()

    def progress(differential, done):
        print("%d cases, %d same, %d unexplained, %.0f s" % (
            done, differential.counts["same"], len(differential.unexplained),
            time.monotonic() - started), file=sys.stderr, flush=True)

    def finished(differential):
        print(differential.report(args.examples))
        print("%d cases in %.0f s" % (differential.counts["cases"], time.monotonic() - started))
        if differential.unexplained:
            raise SystemExit(1)

    task.react(lambda reactor: run(reactor, dns, args.cases, args.seed, args.batch,
                                   progress).addCallback(finished))


if __name__ == "__main__":
    main()
