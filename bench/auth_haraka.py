#!/usr/bin/env python3
"""Haraka in issue 12's email-authentication scenario (bench/auth_bench.py), with its own
SPF and DKIM checks: the peer's side, for the lead's runs beside qpsmtpd-tx.

Haraka 3.3.4 (bench/install_haraka.sh, one process, no cluster) with run.py's chain,
``rcpt_to.in_host_list`` then bench/haraka-plugins' ``queue/maildir`` (no fsync, run.py's
default); with the checks, the same chain with npm's ``haraka-plugin-spf`` 1.3.0 (MAIL
FROM's place, refusing an SPF ``fail`` of the HELO name or the sender, the README's advice)
and ``haraka-plugin-dkim`` 1.3.1 (DATA's place, verify only), in the order of Haraka's own
config/plugins. Two bench plugins make the checks work and bite as an operator's would:

* ``loopback_is_public``, first: the load comes from 127.0.0.1, which Haraka marks private,
  and the spf plugin skips private clients (no lookup, no result);
* ``dkim_enforce``, right after ``dkim``: the dkim plugin records its verdict but has no
  setting to refuse a message; this refuses a ``fail``.

Haraka has no DMARC plugin on npm (``npm view haraka-plugin-dmarc``: 404), so the checks
here are SPF and DKIM only.

Haraka's resolver (node's c-ares) reads /etc/resolv.conf: the server runs in a private mount
namespace where the run's resolv.conf names the private NSD (tests/support/resolv_conf.py),
which needs root. Every delivered message carries Haraka's Authentication-Results
(``spf=`` and ``dkim=``) and a Received-SPF field: :func:`check_delivered` reads them.

    .venv/bin/python bench/auth_haraka.py      (a short run of each chain, 10 clients)
"""

import email.parser
import email.policy
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import auth_bench  # noqa: E402  (the signed message, its zones)
import run as bench  # noqa: E402  (Haraka's instance, readiness, load runs)
from tests.support.resolv_conf import UNSHARE, with_resolv_conf, write_resolv_conf  # noqa: E402

#: npm packages the checks need, beside Haraka (install_haraka.sh installs them)
CHECK_PLUGINS = ("haraka-plugin-spf", "haraka-plugin-dkim")
#: the chain with the checks: run.py's HARAKA_PLUGIN_CHAIN with spf at MAIL FROM and dkim at
#: DATA, where Haraka's config/plugins lists them, and the two bench plugins (module docstring)
CHECKS_CHAIN = "loopback_is_public\nspf\nrcpt_to.in_host_list\ndkim\ndkim_enforce\nqueue/maildir"
#: spf.ini: refuse an SPF fail (HELO name or MAIL FROM); none, softfail and errors go through
SPF_INI = "[deny]\nhelo_fail=true\nmfrom_fail=true"
#: dkim.ini: verify, never sign
DKIM_INI = "[sign]\nenabled=false\n\n[verify]\nenabled=true"
#: how long Haraka may take to greet (it loads its TLD lists first, ~5 s)
START_TIMEOUT = 60


def available():
    """(True, "") if Haraka and its SPF and DKIM plugins are installed (running
    bench/install_haraka.sh if one is missing) and a private resolv.conf can be mounted;
    else (False, why, and how to fix it)."""
    if os.geteuid() != 0:
        return False, "Haraka's private /etc/resolv.conf needs root (unshare --mount)"
    if not os.access(UNSHARE, os.X_OK):
        return False, "%s is missing (Debian package util-linux)" % UNSHARE
    if bench.haraka_available()[0] and _missing_plugins():
        print("-- installing Haraka's spf and dkim plugins: bench/install_haraka.sh", flush=True)
        subprocess.run(["sh", os.path.join(HERE, "install_haraka.sh")], capture_output=True)
    ok, why = bench.haraka_available()
    if ok and _missing_plugins():
        return False, "%s missing under %s (bench/install_haraka.sh failed?)" % (
            ", ".join(_missing_plugins()), os.path.dirname(bench.HARAKA_DIR))
    return ok, why


def _missing_plugins():
    """The npm packages of CHECK_PLUGINS not installed beside Haraka."""
    modules = os.path.dirname(bench.HARAKA_DIR)
    return [n for n in CHECK_PLUGINS if not os.path.exists(os.path.join(modules, n, "package.json"))]


def start(root, dns_address, checks):
    """Start Haraka in the empty directory ``root`` (its instance, maildir/, resolv.conf
    naming ``dns_address``, its output in server.log), with the checks if ``checks``, and
    wait for its greeting; returns (process, port, log file, maildir). The caller stops it
    with bench.stop_server(process) and closes the log file. RuntimeError (with the end of
    the log) if it does not greet."""
    port = bench.free_port()
    maildir = os.path.join(root, "maildir")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub))
    bench.haraka_instance(root, port, False)
    if checks:
        bench.write_config_files(os.path.join(root, "haraka", "config"), {
            "plugins": CHECKS_CHAIN, "spf.ini": SPF_INI, "dkim.ini": DKIM_INI})
    resolv_conf = write_resolv_conf(os.path.join(root, "resolv.conf"), [dns_address])
    argv, env, cwd = bench.server_command("haraka", os.path.join(root, "config"), port, None)
    log_path = os.path.join(root, "server.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen(with_resolv_conf(resolv_conf, argv), env=env, cwd=cwd,
                            stdout=log, stderr=subprocess.STDOUT)
    if not bench.wait_ready(proc, port, START_TIMEOUT):
        bench.stop_server(proc)
        log.close()
        with open(log_path, errors="replace") as f:
            tail = "\n".join(f.read().splitlines()[-10:])
        raise RuntimeError("Haraka did not greet on port %d; the end of %s:\n%s"
                           % (port, log_path, tail))
    return proc, port, log, maildir


def check_delivered(message_bytes, checks):
    """None if ``message_bytes`` (one file from maildir/new) shows what the chain should have
    done, else what is wrong. With ``checks``: Haraka's Authentication-Results must say
    spf=pass for the sender's domain and dkim=pass for the signing domain, and its
    Received-SPF must say Pass (a check that did nothing, or whose DNS failed, leaves none,
    or none/temperror). Without: the message must carry no such verdict."""
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(message_bytes)
    results = [" ".join(v.split()) for v in head.get_all("Authentication-Results") or []]
    received_spf = [" ".join(v.split()) for v in head.get_all("Received-SPF") or []]
    if not checks:
        if results or received_spf:
            return "the plain chain added %s" % "; ".join(results + received_spf)
        return None
    if not results:
        return "no Authentication-Results field"
    verdicts = [part.strip() for part in ";".join(results).split(";")]
    wanted = {"spf": "spf=pass smtp.mailfrom=" + auth_bench.DOMAIN,
              "dkim": "dkim=pass header.i=@%s header.d=%s header.s=%s"
                      % (auth_bench.DOMAIN, auth_bench.DOMAIN, auth_bench.SELECTOR)}
    problems = ["%s: want %r, have %s" % (name, want, [v for v in verdicts if v.startswith(name + "=")])
                for name, want in wanted.items() if want not in verdicts]
    mailfrom = [v for v in received_spf if "identity=mailfrom;" in v]
    if not any(v.startswith("Pass ") for v in mailfrom):
        problems.append("Received-SPF (mailfrom): want Pass, have %s" % mailfrom)
    return "; ".join(problems) or None


def main():
    """Load Haraka briefly without and with its checks (auth_bench.check_peer)."""
    return auth_bench.check_peer("haraka", sys.modules[__name__])


if __name__ == "__main__":
    sys.exit(main())
