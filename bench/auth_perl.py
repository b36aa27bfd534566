#!/usr/bin/env python3
"""Perl qpsmtpd 0.94 (``qpsmtpd-forkserver``) in issue 12's email-authentication scenario,
with its own checks: the peer :mod:`auth_bench` compares qpsmtpd-tx with.

Plain chain: ``rcpt_ok``, ``queue/maildir``. With the checks: ``rcpt_ok``,
``sender_permitted_from reject 3`` (its POD's advice: a ``fail`` refused, a softfail or a DNS
error deferred), ``dkim reject 1`` and ``dmarc reject 1`` (their defaults: refuse on fail),
then bench/perl-plugins/auth_results_witness, which only copies this message's DKIM and DMARC
verdicts into a header (0.94 puts them into the *next* message's Authentication-Results), and
``queue/maildir``. Perl's resolvers (Net::DNS, under Mail::SPF, Mail::DKIM and Mail::DMARC)
read ``/etc/resolv.conf``: the server runs in a private mount namespace where it names the
private NSD. Mail::DMARC reads ``ROOT/mail-dmarc.ini`` (``MAIL_DMARC_CONFIG_FILE``), which
points it at Debian's Public Suffix List and turns its report store off.

Needs (Debian): qpsmtpd, libmail-spf-perl, libmail-dkim-perl, libmail-dmarc-perl (with
publicsuffix), util-linux's ``unshare``, root (the namespace; the server itself runs as the
``qpsmtpd`` user).

Reading Perl's figures (found while wiring it up, 0.94 with Mail::DMARC 1.20211209):
its dmarc needs sender_permitted_from before it (without, Mail::DMARC croaks "invalid spf
argument" on every message, a FATAL PLUGIN ERROR, and the message passes unchecked), so
Perl has no "dkim+dmarc" chain; each forked connection loads the Public Suffix List once
(~16 ms of CPU, over 40 messages here); the connection's Authentication-Results note is
never reset, so the 40th message of a connection carries a 4.7 KB header line holding the
earlier messages' verdicts; dmarc logs "has policy, no report URI" (LOGERROR, so at the
benchmark's level) for every message, the policy having no rua=.

The interface :mod:`auth_bench` calls: :func:`available`, :func:`start`,
:func:`check_delivered`. Run alone, :func:`main` loads it briefly with and without the checks
(10 clients, 5 s) and prints what it measured.

    .venv/bin/python bench/auth_perl.py
"""

import email.parser
import email.policy
import os
import pwd
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import auth_bench  # noqa: E402  (the signed message, the zones, the domain)
import run as bench  # noqa: E402  (configs, server commands, readiness, load runs)
from tests.support.resolv_conf import UNSHARE, with_resolv_conf, write_resolv_conf  # noqa: E402

#: forkserver refuses to run as root; Debian's package makes this user
PERL_USER = "qpsmtpd"
#: the Perl modules the three checks load (a plugin lacking its module disables itself)
CHECK_MODULES = {"Mail::SPF": "libmail-spf-perl", "Mail::DKIM::Verifier": "libmail-dkim-perl",
                 "Mail::DMARC::PurePerl": "libmail-dmarc-perl"}
#: the Public Suffix List Mail::DMARC finds organizational domains with (package publicsuffix)
PUBLIC_SUFFIX_LIST = "/usr/share/publicsuffix/public_suffix_list.dat"
#: the benchmark's domain is under this reserved TLD (RFC 6761), which the list lacks:
#: Mail::DMARC takes a From domain under a TLD it does not list for invalid, dmarc's
#: validate() dies, and 0.94's plugin then lets the message through unchecked
TEST_SUFFIX = auth_bench.DOMAIN.rsplit(".", 1)[-1]
WITNESS = "auth_results_witness"

PLAIN_PLUGINS = ["rcpt_ok"]
CHECK_PLUGINS = ["rcpt_ok", "sender_permitted_from reject 3", "dkim reject 1",
                 "dmarc reject 1", WITNESS]

#: Mail::DMARC's settings: Debian's PSL; no aggregate reports saved; no whitelist
DMARC_INI = """\
[report_store]
backend = SQL
dsn = dbi:SQLite:dbname={root}/dmarc_reports.sqlite
auto_save = 0

[dmarc]
backend = perl

[dns]
timeout = 5
public_suffix_list = {psl}

[smtp]
whitelist =
"""


def available():
    """(True, "") if Perl qpsmtpd can run with its three checks here, else (False, why and
    what to install)."""
    if not os.access(bench.PERL_SERVER, os.X_OK):
        return False, "%s is missing (apt-get install qpsmtpd libnet-ip-perl)" % bench.PERL_SERVER
    if os.geteuid() != 0:
        return False, "needs root (a private /etc/resolv.conf; forkserver -u %s)" % PERL_USER
    if not os.access(UNSHARE, os.X_OK):
        return False, "%s is missing (apt-get install util-linux)" % UNSHARE
    try:
        pwd.getpwnam(PERL_USER)
    except KeyError:
        return False, "user %s is missing (it comes with Debian's qpsmtpd package)" % PERL_USER
    missing = [package for module, package in CHECK_MODULES.items()
               if subprocess.run(["perl", "-M" + module, "-e", "1"],
                                 capture_output=True).returncode != 0]
    if missing:
        return False, "Perl modules missing (apt-get install %s)" % " ".join(missing)
    if not os.path.isfile(PUBLIC_SUFFIX_LIST):
        return False, "%s is missing (apt-get install publicsuffix)" % PUBLIC_SUFFIX_LIST
    return True, ""


def _plugins(checks, maildir):
    """The plugins file: the plain chain or the chain with the checks, then the queue."""
    return "\n".join((CHECK_PLUGINS if checks else PLAIN_PLUGINS)
                     + ["queue/maildir " + maildir])


def _dmarc_settings(root):
    """Write Mail::DMARC's settings and Public Suffix List (Debian's, plus the benchmark's
    TLD) under ``root``; return the settings file."""
    psl = os.path.join(root, "public_suffix_list.dat")
    shutil.copyfile(PUBLIC_SUFFIX_LIST, psl)
    with open(psl, "a") as f:
        f.write("\n// bench/auth_perl.py: the benchmark's reserved TLD\n%s\n" % TEST_SUFFIX)
    ini = os.path.join(root, "mail-dmarc.ini")
    with open(ini, "w") as f:
        f.write(DMARC_INI.format(root=root, psl=psl))
    for path in (psl, ini):
        os.chmod(path, 0o644)
    return ini


def start(root, dns_address, checks):
    """Start qpsmtpd-forkserver on a free port, its config, Maildir, resolv.conf (naming
    ``dns_address``) and log ``server.log`` under the empty directory ``root``; ``checks``:
    the chain with SPF, DKIM and DMARC refusing on fail, else the plain chain. Waits for the
    greeting (RuntimeError with the log's end if none comes). Returns (process, port, log
    file, Maildir); the caller stops it with ``bench.stop_server(process)`` and closes the
    log. It serves at most 60 connections at once (run.py's ``-c 60 -m 60``)."""
    conf = bench.make_config(root, True, PERL_USER)
    maildir = os.path.join(root, "maildir")
    files = {"plugins": _plugins(checks, maildir)}
    if checks:
        files["plugin_dirs"] = "%s\n%s" % (bench.PERL_BENCH_PLUGINS, bench.PERL_PLUGIN_DIR)
    bench.write_config_files(conf, files)
    resolv_conf = write_resolv_conf(os.path.join(root, "resolv.conf"), [dns_address])
    dmarc_ini = _dmarc_settings(root)
    port = bench.free_port()
    argv, env, cwd = bench.server_command("perl", conf, port, PERL_USER)
    env["MAIL_DMARC_CONFIG_FILE"] = dmarc_ini
    log_path = os.path.join(root, "server.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen(with_resolv_conf(resolv_conf, argv), env=env, cwd=cwd,
                            stdout=log, stderr=subprocess.STDOUT)
    if not bench.wait_ready(proc, port, 60):
        bench.stop_server(proc)
        log.close()
        with open(log_path, "rb") as f:
            tail = f.read()[-2000:].decode("utf-8", "replace")
        raise RuntimeError("qpsmtpd-forkserver did not greet on port %d; the end of %s:\n%s"
                           % (port, log_path, tail))
    return proc, port, log, maildir


def _header_values(message_bytes):
    """{lower-case field name: [values]} of a delivered message's header (unfolded)."""
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(message_bytes)
    values = {}
    for name, value in head.items():
        values.setdefault(name.lower(), []).append(" ".join(str(value).split()))
    return values


def check_delivered(message_bytes, checks):
    """None if the delivered message ``message_bytes`` shows what the chain must have done,
    else what is wrong. With ``checks``: its Received-SPF says pass for the benchmark's
    sender domain, and the witness header holds this message's ``dkim=pass`` for the signing
    domain and dmarc's entry for it (``(p=reject) d=DOMAIN``: 0.94's dmarc writes it for a
    pass, and for a fail only beside a refusal, since the policy is reject without pct=; a
    DNS failure gives ``dmarc=none`` or no entry). Without: none of these headers."""
    values = _header_values(message_bytes)
    spf = values.get("received-spf", [])
    witness = values.get("x-bench-auth-results", [])
    if not checks:
        if spf or witness:
            return "plain chain, yet the message has %s" % (spf or witness)[0]
        return None
    domain = auth_bench.DOMAIN
    if len(spf) != 1 or not spf[0].startswith("pass (%s: " % domain):
        return "SPF did not pass for %s: Received-SPF %s" % (domain, spf or "missing")
    if len(witness) != 1:
        return "no (or several) X-Bench-Auth-Results (is %s in the chain?)" % WITNESS
    entries = [e.strip() for e in witness[0].split(";")]
    if "dkim=pass header.i=@" + domain not in entries:
        return "DKIM did not pass: X-Bench-Auth-Results: %s" % witness[0]
    if "(p=reject) d=" + domain not in entries:
        return "DMARC did not pass: X-Bench-Auth-Results: %s" % witness[0]
    return None


def main():
    """Load Perl qpsmtpd briefly without and with its checks (auth_bench.check_peer)."""
    return auth_bench.check_peer("perl", sys.modules[__name__])


if __name__ == "__main__":
    sys.exit(main())
