"""rspamd as an independent ARC implementation for the tests (its ``arc`` module, on its
``dkim`` one): it checks the ARC sets of a message with keys from the suite's private NSD,
and seals messages (for an authenticated user) with a key it is given.

    rspamd = shared_arc_rspamd()             # started at the first call, once per run
    symbols = rspamd.check(message)          # {"ARC_ALLOW": [options], ...}
    sealed = rspamd.seal(message)            # message with rspamd's ARC set on top

rspamd seals as ``d=<rspamd.zone>``, ``s=rspamd``, with a key of its own published on the
private NSD. Started with :func:`tests.support.rspamd.start_rspamd` (skipped without rspamd
or NSD), stopped by its PID when the test run ends.
"""

import json
import os
import shutil
import tempfile
import urllib.request

from tests.support import mail_dkim
from tests.support.dns import private_dns
from tests.support.rspamd import start_rspamd
from tests.support.shared import SharedDaemon

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_ARC = """
dkim { }
arc {
  allow_hdrfrom_mismatch = true;
  allow_username_mismatch = true;
  sign_authenticated = true;
  use_esld = false;
  use_domain = "header";
  domain {
%s
  }
}
"""


class ARCRspamd:
    """A private rspamd with ARC checking and sealing (see the module docstring)."""

    def __init__(self, dns, keys):
        """``keys``: ``{domain: (selector, PEM private key)}`` rspamd seals with."""
        domains = "".join('    "%s" { path = "{dir}/%s.key"; selector = "%s"; }\n'
                          % (zone, zone, selector) for zone, (selector, _) in keys.items())
        self.rspamd = start_rspamd(nameserver="%s:53" % dns.address, modules=["dkim", "arc"],
                                   extra_config=_ARC % domains)
        for zone, (_, pem) in keys.items():
            path = os.path.join(self.rspamd.dir, "%s.key" % zone)
            with open(path, "wb") as f:
                f.write(pem)
            os.chmod(path, 0o644)
        self.process = self.rspamd.process

    def log(self):
        """rspamd's log."""
        return self.rspamd.log()

    def stop(self):
        """Stop rspamd (by its PID)."""
        self.rspamd.stop()

    def _ask(self, message, headers):
        request = urllib.request.Request(self.rspamd.url + "/checkv2", data=message,
                                         headers=headers)
        with _OPENER.open(request, timeout=30) as response:
            return json.loads(response.read())

    def check(self, message, ip="192.0.2.7"):
        """rspamd's symbols for ``message`` (bytes, CRLF) from ``ip``: ``{name: options}``."""
        answer = self._ask(message, {"IP": ip})
        return {name: symbol.get("options", []) for name, symbol in answer["symbols"].items()}

    def seal(self, message, ip="192.0.2.7"):
        """``message`` (bytes, CRLF) with the ARC set rspamd adds for an authenticated user
        (from ``ip``) on top; raises AssertionError if it added none."""
        answer = self._ask(message, {"IP": ip, "User": "tester"})
        added = answer.get("milter", {}).get("add_headers", {})
        names = ("ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results")
        if not all(name in added for name in names):
            raise AssertionError("rspamd added no ARC set: %r" % (answer,))
        top = b"".join(("%s: %s\r\n" % (name, added[name]["value"])).encode() for name in names)
        return top + message


def _start():
    dns = private_dns()
    zone = dns.unique_zone("arcrspamd")
    directory = tempfile.mkdtemp(prefix="qptx-arc-key-")
    try:
        path, record = mail_dkim.make_key(directory)
        with open(path, "rb") as f:
            pem = f.read()
    finally:
        shutil.rmtree(directory, True)
    dns.set_zone(zone, [("rspamd._domainkey", "TXT", record)])
    rspamd = ARCRspamd(dns, {zone: ("rspamd", pem)})
    rspamd.zone = zone
    return rspamd


#: the ARC rspamd of this test run (see the module docstring)
shared_arc_rspamd = SharedDaemon("rspamd (ARC)", _start).get
