"""qpsmtpd_tx.spf.check_host against the RFC 7208 test suite (the openspf project's YAML).

The suite is not ours and is not in the repository: it ships in pyspf's source distribution,
which ``.ci/run`` downloads into ``.ci/downloads/`` (``pip download --no-binary :all:``); the
tests read it from the tarball there, or from the file ``$QPTX_PYSPF_SDIST`` names, and are
skipped (saying so) without it. One trial test per test of the suite.

The suite brings its own zone data, with records no DNS server serves as written (a name
whose lookups time out, SPF-type records standing for TXT ones): :class:`ZoneResolver`
answers from it as our resolver answers from a real server (the resolver's name checks, its
error classes, CNAMEs followed as c-ares follows them, a TXT record's strings joined). It is
a stand-in for the DNS only; ``check_host``, pyspf and the lookup loop are the real ones.
The private NSD tests are in tests/plugins/test_sender_permitted_from.py.
"""

import os
import tarfile

from twisted.internet import defer, task
from twisted.trial import unittest

from qpsmtpd_tx.dns import Answer, BadName, DNSTimeout, NoData, NXDomain, ServFail
from qpsmtpd_tx.dns.resolver import _normalise
from qpsmtpd_tx.spf import check_host

HERE = os.path.dirname(os.path.abspath(__file__))
SDIST = os.environ.get("QPTX_PYSPF_SDIST") or os.path.join(
    HERE, os.pardir, ".ci", "downloads", "pyspf-2.0.14.tar.gz")
MEMBER = "pyspf-2.0.14/test/rfc7208-tests.yml"
#: CNAME hops followed before giving up, as a recursive server would (a loop: SERVFAIL)
MAX_CNAMES = 8


def load_suite(path=SDIST):
    """The suite's scenarios (``zonedata``, ``tests``), or None without the file or PyYAML."""
    try:
        import yaml
    except ImportError:
        return None
    if not os.path.exists(path):
        return None
    with tarfile.open(path) as archive:
        text = archive.extractfile(MEMBER).read()
    return list(yaml.safe_load_all(text))


class ZoneResolver:
    """Answers from a scenario's ``zonedata`` with our resolver's interface and errors."""

    def __init__(self, zonedata, later=False):
        self.clock = task.Clock()
        self.asked = []
        #: with ``later``, answers wait for :meth:`flush` (as a real DNS server's do)
        self.later = later
        self.waiting = []
        self.zone = {}
        for name, records in zonedata.items():
            self.zone[name.lower().rstrip(".")] = records

    def lookup(self, name, rrtype, timeout=None):
        """A Deferred Answer, or a failure as the real resolver's."""
        self.asked.append((name, rrtype))
        try:
            key = _normalise(name)
        except BadName:
            return defer.fail(BadName(name, rrtype))
        try:
            d = defer.succeed(Answer(key, rrtype, self._records(key, rrtype, 0), 60))
        except (NXDomain, NoData, ServFail, DNSTimeout) as error:
            d = defer.fail(error)
        if not self.later:
            return d
        waiting = defer.Deferred()
        self.waiting.append((d, waiting))
        return waiting

    def flush(self):
        """Answer every lookup waiting (with ``later``); how many there were."""
        waiting, self.waiting = self.waiting, []
        for answer, d in waiting:
            answer.chainDeferred(d)
        return len(waiting)

    def result(self, d):
        """The result of Deferred ``d``, answering lookups until it has one."""
        results = []
        d.addBoth(results.append)
        while not results:
            if not self.flush():
                raise AssertionError("no result, and no lookup waiting")
        return results[0]

    def _records(self, name, rrtype, hops):
        if name not in self.zone:
            raise NXDomain(name, rrtype)
        entries = self.zone[name]
        typed = [(t, v) for entry in entries if isinstance(entry, dict) for t, v in entry.items()]
        wanted = [v for t, v in typed if t == rrtype]
        if "TIMEOUT" in entries and not [v for v in wanted if v != "NONE"]:
            # the suite's convention: a name's lookups time out but for the types listed
            raise DNSTimeout(name, rrtype)
        if rrtype == "TXT" and not wanted:
            # and SPF-type records stand for TXT ones too, unless the name has TXT records
            wanted = [v for t, v in typed if t == "SPF"]
        if "TIMEOUT" in wanted:
            raise DNSTimeout(name, rrtype)
        wanted = [v for v in wanted if v != "NONE"]
        if wanted:
            return [self._value(rrtype, v) for v in wanted]
        cnames = [v for t, v in typed if t == "CNAME"]
        if cnames:
            if hops >= MAX_CNAMES:
                raise ServFail(name, rrtype, "CNAME chain too long")
            return self._records(cnames[0].lower().rstrip("."), rrtype, hops + 1)
        raise NoData(name, rrtype)

    @staticmethod
    def _value(rrtype, value):
        if rrtype == "TXT":
            return "".join(value) if isinstance(value, list) else value
        if rrtype == "MX":
            return (value[0], value[1].rstrip("."))
        return value.rstrip(".") if rrtype == "PTR" else value


SUITE = load_suite()


def _test_method(zonedata, case):
    def test(self):
        expected = case["result"]
        expected = [expected] if isinstance(expected, str) else expected
        # answers that come later (a cold cache: pyspf runs once per round trip), and
        # answers there at once (a warm cache: one run)
        for later in (True, False):
            resolver = ZoneResolver(zonedata, later)
            result = resolver.result(check_host(resolver, case["host"], case["mailfrom"],
                                                case["helo"], default_explanation="DEFAULT"))
            self.assertIn(result.result, expected, (later, case.get("description")))
            if "explanation" in case:
                self.assertEqual(result.explanation, case["explanation"], later)
            if not later:
                self.assertLessEqual(result.runs, 1)
    test.__doc__ = "%s (RFC 7208 %s)" % (case.get("description", "").strip(), case.get("spec"))
    return test


class RFC7208Suite(unittest.TestCase):
    """Each test of the suite: the result (one of those allowed) and the explanation."""

    if SUITE is None:
        def test_suite_present(self):
            raise unittest.SkipTest("the RFC 7208 suite is missing: %s (.ci/run downloads it)"
                                    " or PyYAML is not installed" % SDIST)


if SUITE is not None:
    for _scenario in SUITE:
        for _name, _case in _scenario["tests"].items():
            setattr(RFC7208Suite, "test_" + _name.replace("-", "_"),
                    _test_method(_scenario["zonedata"], _case))
