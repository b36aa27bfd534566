#!/usr/bin/env python3
"""STARTTLS against plaintext on the same qpsmtpd-tx server, in one run.

Starts one ``twistd qpsmtpd-tx`` with run.py's short chain plus the ``tls`` plugin (a
self-signed pair written by ``qpsmtpd-tx tls-cert``), then runs the same scenarios with
plaintext clients and with clients that say STARTTLS after EHLO (smtpload.py --starttls):
40 and 1 messages per connection, 50 clients, 10 KiB. Prints run.py's table and the
``tx-tls/tx`` ratios (msgs/s, p50, server CPU per message), and the integrity checks of run.py
(every reply checked, delivered == accepted, the body compared).

Then the same for Haraka (run.py's instance: one process, ``rcpt_to.in_host_list`` +
bench/haraka-plugins/queue/maildir) with its ``tls`` plugin in front, reading
config/tls_key.pem and config/tls_cert.pem (a self-signed P-256 pair made with ``openssl``):
``haraka`` and ``haraka-tls`` rows, and the ratios ``haraka-tls/haraka`` and
``tx-tls/haraka-tls``. Haraka is skipped with a message when it cannot be installed
(run.py runs bench/install_haraka.sh), ``openssl`` is missing or Haraka does not start.

    python3 bench/tls_bench.py --duration 15
    python3 bench/tls_bench.py --no-haraka      # qpsmtpd-tx only
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (the side-by-side runner's helpers)


def run_scenarios(name, proc, port, maildir, a):
    """The scenarios against the started server ``proc`` on ``port``: 40 and 1 messages per
    connection, each with plaintext clients (kind ``name``) and STARTTLS clients (``name``-tls).
    Returns (rows, ok): ok is False on any error, lost mail or a wrong body."""
    rows, ok = [], True
    common = ["--size", str(a.size), "--concurrency", str(a.concurrency),
              "--duration", str(a.duration)]
    for per_connection in (40, 1):
        for kind, extra in ((name, []), (name + "-tls", ["--starttls"])):
            print("   %s %d/conn ..." % (kind, per_connection), flush=True)
            before = run.count_new(maildir)
            r = run.run_load(port, proc.pid, common + ["--per-connection", str(per_connection)]
                             + extra, a.duration + 180)
            r["server_kind"], r["scenario"] = kind, "%d/conn" % per_connection
            r["delivered"] = run.count_new(maildir) - before
            ok = ok and "error" not in r and r["delivered"] == r.get("accepted")
            ok = ok and not r.get("failed") and not sum(r.get("errors", {}).values())
            rows.append(r)
            time.sleep(1)
    body_ok = run.check_body(maildir, a.size)
    for r in rows:
        r["body_ok"] = body_ok
    return rows, ok and body_ok


def setup_tx(root, conf, port):
    """qpsmtpd-tx: ``tls`` in front of run.py's chain, a pair from ``qpsmtpd-tx tls-cert``;
    returns (argv, env, cwd). Raises RuntimeError (the reason) when it is not available."""
    avail, why = run.tx_available()
    if not avail:
        raise RuntimeError(why)
    with open(os.path.join(conf, "plugins")) as f:
        chain = f.read()
    with open(os.path.join(conf, "plugins"), "w") as f:
        f.write("tls\n" + chain)
    qpsmtpd_tx = os.path.join(os.path.dirname(run.TWISTD), "qpsmtpd-tx")
    subprocess.run([qpsmtpd_tx, "tls-cert", "--config", conf, "--hostname", "bench.example"],
                   check=True, cwd=run.ROOT, stdout=subprocess.DEVNULL)
    # run.py's --max-from-ip 60 holds for 50 STARTTLS clients at one message per connection
    # since a connection stops counting once QUIT is answered (before its TLS shutdown ends).
    return run.server_command("tx", conf, port, None)


def setup_haraka(root, conf, port):
    """Haraka: run.py's instance dir with ``tls`` in front of its chain and a self-signed P-256
    pair (``openssl req``) as config/tls_key.pem and config/tls_cert.pem; returns
    (argv, env, cwd). Raises RuntimeError (the reason) when it cannot be set up."""
    avail, why = run.haraka_available()
    if not avail:
        raise RuntimeError(why)
    if not shutil.which("openssl"):
        raise RuntimeError("no openssl command to make its key and certificate")
    run.haraka_instance(root, port, False)
    hconf = os.path.join(root, "haraka", "config")
    with open(os.path.join(hconf, "plugins"), "w") as f:
        f.write("tls\n" + run.HARAKA_PLUGIN_CHAIN + "\n")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
                        "-subj", "/CN=bench.example",
                        "-keyout", os.path.join(hconf, "tls_key.pem"),
                        "-out", os.path.join(hconf, "tls_cert.pem")],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("openssl req failed: %s" % (p.stderr.strip().splitlines() or ["?"])[-1])
    return run.server_command("haraka", conf, port, None)


#: the servers: name, set-up function, True when it may be skipped (a peer)
SERVERS = (("tx", setup_tx, False), ("haraka", setup_haraka, True))


def bench_server(name, setup, peer, a):
    """Set up, start and bench one server; stop it. Returns (rows, ok); a peer that cannot be
    set up or started is skipped with a message (no rows, ok)."""
    root = tempfile.mkdtemp(prefix="qpbench-tls-%s-" % name)
    conf = run.make_config(root, False, None)
    maildir = os.path.join(root, "maildir")
    port = run.free_port()
    try:
        argv, env, cwd = setup(root, conf, port)
    except RuntimeError as e:
        print("-- skipping %s: %s" % (name, e))
        shutil.rmtree(root, ignore_errors=True)
        return [], peer
    print("== %s: %s" % (name, " ".join(argv)), flush=True)
    log = open(os.path.join(root, "server.log"), "wb")
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    rows, ok = [], True
    try:
        if not run.wait_ready(proc, port, 60):  # Haraka takes ~5 s to load its TLD lists
            print("!! %s did not start; see %s/server.log%s"
                  % (name, root, " (skipped)" if peer else ""))
            return [], peer
        rows, ok = run_scenarios(name, proc, port, maildir, a)
    finally:
        run.stop_server(proc)
        log.close()
    if a.keep or not ok or not rows:
        print("   files kept in %s" % root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return rows, ok


def main():
    """Entry point."""
    p = argparse.ArgumentParser(description="STARTTLS vs plaintext on qpsmtpd-tx and Haraka, one run")
    p.add_argument("--duration", type=float, default=15, help="seconds per scenario (15)")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--no-haraka", action="store_true", help="qpsmtpd-tx only")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    a = p.parse_args()

    rows, ok = [], True
    for name, setup, peer in SERVERS:
        if name == "haraka" and a.no_haraka:
            continue
        r, k = bench_server(name, setup, peer, a)
        rows += r
        ok = ok and k
    if rows:
        run.print_table(rows)
    by = {(r["server_kind"], r["scenario"]): r for r in rows if "error" not in r}
    ran = {k for k, _ in by}
    for kind, base in (("tx-tls", "tx"), ("haraka-tls", "haraka"), ("tx-tls", "haraka-tls")):
        if kind in ran and base in ran:
            run.print_ratios(by, kind, base)
        elif not (a.no_haraka and "haraka" in kind + base):
            print("%s/%s: no ratios, %s did not run (skipped or failed: see above)"
                  % (kind, base, base if base not in ran else kind))
    if not ok:
        print("PROBLEMS: errors, lost mail, a wrong body or a server that did not start "
              "(see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
