"""Perl's Mail::DKIM as the independent DKIM signer and verifier of the dkim tests
(``tests/support/mail_dkim.pl``; Debian's libmail-dkim-perl, which spamassassin, in CI's
package list, depends on). Keys are made with ``openssl``, as qpsmtpd's dkim documentation
says; their public halves go on the suite's private DNS server."""

import base64
import os
import subprocess

from twisted.trial.unittest import SkipTest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mail_dkim.pl")


def _perl(args, message):
    if subprocess.run(["perl", "-MMail::DKIM", "-e1"], capture_output=True).returncode:
        raise SkipTest("Perl's Mail::DKIM (libmail-dkim-perl) is not installed")
    done = subprocess.run(["perl", SCRIPT] + list(args), input=message, capture_output=True,
                          timeout=60)
    if done.returncode:
        raise AssertionError("mail_dkim.pl %s: %s" % (args[0], done.stderr.decode()))
    return done.stdout.decode()


def sign(message, keyfile, domain, selector, method="relaxed/relaxed", length=None):
    """The DKIM-Signature field (text, ``Name: value``) Mail::DKIM makes for ``message``
    (bytes, CRLF)."""
    args = ["sign", keyfile, domain, selector, method] + ([str(length)] if length else [])
    return _perl(args, message).strip()


def verify(message, nameserver):
    """Mail::DKIM's verdict on ``message`` (bytes, CRLF), keys asked of ``nameserver``:
    ``(overall result, [(result, domain, detail)])``."""
    lines = _perl(["verify", nameserver], message).splitlines()
    overall = lines[-1].split(" ", 1)[1]
    return overall, [tuple(line.split(" ", 2)) for line in lines[:-1]]


def make_key(directory, kind="rsa", bits=2048):
    """A private key file (``openssl genrsa`` / ``genpkey -algorithm ed25519``) in
    ``directory``, named ``private`` as qpsmtpd's layout wants; returns (path, the TXT record
    publishing its public key)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "private")
    if kind == "rsa":
        subprocess.run(["openssl", "genrsa", "-out", path, str(bits)], check=True,
                       capture_output=True)
    else:
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", path],
                       check=True, capture_output=True)
    der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    if kind == "rsa":
        return path, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    # RFC 8463: p= is the raw 32-byte key, the end of the DER SubjectPublicKeyInfo
    return path, "v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:]).decode()
