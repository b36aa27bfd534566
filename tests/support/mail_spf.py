"""Perl's Mail::SPF as the SPF tests' independent evaluator: one long-running
``tests/support/mail_spf.pl`` process asking the suite's private DNS server, fed one case a
line (a few hundred cases a second), so a differential run of many thousand cases is quick.

Debian's ``libmail-spf-perl`` (qpsmtpd 0.94's sender_permitted_from uses it; ``.ci/run``
installs it); :func:`available` says whether it is here."""

import os
import subprocess

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mail_spf.pl")


def available():
    """Whether Perl can load Mail::SPF and Net::DNS."""
    done = subprocess.run(["perl", "-MMail::SPF", "-MNet::DNS::Resolver", "-e1"],
                          capture_output=True)
    return done.returncode == 0


class MailSPF:
    """A running ``mail_spf.pl`` asking the DNS server at ``nameserver`` (port 53); stop it
    with :meth:`close` (its stdin closed, then waited for)."""

    def __init__(self, nameserver):
        self.process = subprocess.Popen(["perl", SCRIPT, nameserver], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, encoding="utf-8",
                                        errors="surrogateescape")

    def check(self, scope, identity, ip, helo=""):
        """``(result, local explanation)`` of Mail::SPF for one identity: ``scope`` ``mfrom``
        (``identity`` an address) or ``helo`` (a host name). ``result`` is ``exception``
        (with Perl's text) if Mail::SPF died, as it does for a request it cannot make."""
        for value in (scope, identity, ip, helo):
            if "\t" in value or "\n" in value:
                raise ValueError("a tab or line end in a case: %r" % (value,))
        self.process.stdin.write("%s\t%s\t%s\t%s\n" % (scope, identity, ip, helo))
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("mail_spf.pl exited (status %s)" % self.process.wait())
        result, _, text = line.rstrip("\n").partition("\t")
        return result, text

    def close(self):
        """End the process (its input closed) and wait for it."""
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
