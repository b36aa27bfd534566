#!/usr/bin/env python3
"""STARTTLS against plaintext on the same qpsmtpd-tx server, in one run.

Starts one ``twistd qpsmtpd-tx`` with run.py's short chain plus the ``tls`` plugin (a
self-signed pair written by ``qpsmtpd-tx tls-cert``), then runs the same scenarios with
plaintext clients and with clients that say STARTTLS after EHLO (smtpload.py --starttls):
40 and 1 messages per connection, 50 clients, 10 KiB. Prints run.py's table and the
``tx-tls/tx`` ratios (msgs/s, p50, server CPU per message), and the integrity checks of run.py
(every reply checked, delivered == accepted, the body compared).

    python3 bench/tls_bench.py --duration 15
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


def main():
    """Entry point."""
    p = argparse.ArgumentParser(description="qpsmtpd-tx over STARTTLS vs plaintext, one run")
    p.add_argument("--duration", type=float, default=15, help="seconds per scenario (15)")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = p.parse_args()

    root = tempfile.mkdtemp(prefix="qpbench-tls-")
    conf = run.make_config(root, False, None)
    with open(os.path.join(conf, "plugins")) as f:
        chain = f.read()
    with open(os.path.join(conf, "plugins"), "w") as f:
        f.write("tls\n" + chain)
    qpsmtpd_tx = os.path.join(os.path.dirname(run.TWISTD), "qpsmtpd-tx")
    subprocess.run([qpsmtpd_tx, "tls-cert", "--config", conf, "--hostname", "bench.example"],
                   check=True, cwd=run.ROOT, stdout=subprocess.DEVNULL)
    maildir = os.path.join(root, "maildir")
    port = run.free_port()
    argv, env, cwd = run.server_command("tx", conf, port, None)
    # No per-IP limit: 50 STARTTLS clients from 127.0.0.1 at one message per connection went
    # over run.py's 60, as connections stay counted until their TLS shutdown has finished.
    argv[argv.index("--max-from-ip") + 1] = "0"
    log = open(os.path.join(root, "server.log"), "wb")
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    rows, ok = [], True
    try:
        if not run.wait_ready(proc, port):
            print("!! qpsmtpd-tx did not start; see %s/server.log" % root)
            return 1
        common = ["--size", str(a.size), "--concurrency", str(a.concurrency),
                  "--duration", str(a.duration)]
        for per_connection in (40, 1):
            for kind, extra in (("tx", []), ("tx-tls", ["--starttls"])):
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
        ok = ok and body_ok
        for r in rows:
            r["body_ok"] = body_ok
    finally:
        run.stop_server(proc)
        log.close()
    run.print_table(rows)
    run.print_ratios({(r["server_kind"], r["scenario"]): r for r in rows if "error" not in r},
                     "tx-tls", "tx")
    if a.keep or not ok:
        print("files kept in %s" % root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    if not ok:
        print("PROBLEMS: errors, lost mail or a wrong body (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
