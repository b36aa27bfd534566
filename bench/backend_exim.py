#!/usr/bin/env python3
"""Throughput of qpsmtpd-tx with queue/exim-bsmtp, and of Exim's own SMTP server, same load.

Uses the private Exim of the test suite (Debian's ``exim4-daemon-light``, fetched and
unpacked by ``tests/support/exim.py`` into ``/tmp/qpsmtpd-tx-exim-<uid>/``; nothing is
installed) with a throw-away configuration that delivers every message into a Maildir.
Three scenarios, each with a fresh Exim spool and Maildir:

  tx       ``twistd qpsmtpd-tx`` (plugins ``rcpt_ok`` and ``queue/exim-bsmtp``, which runs
           ``exim -bS`` once per message) on a loopback port;
  tx-pool  the same with ``queue/exim-bsmtp … pool N`` (``--pool``, default 8): N long-lived
           ``exim -bs`` processes, each taking many messages;
  exim     ``exim -bdf`` (Exim's own SMTP daemon, the same configuration) on a loopback port:
           the same load sent straight to the MTA, for comparison.

``--rounds R`` runs the scenarios R times, interleaved (tx, tx-pool, exim, tx, …). Besides
msgs/s each row gives the server's CPU per message (``ms/msg``: CPU seconds of the server
process and all its children, Exim's included, from /proc, over the messages accepted),
and each round its ratios against that round's ``exim`` row.

Each gets ``bench/smtpload.py`` (default: 20 clients, 10 KiB messages, 40 per connection);
then the script waits until Exim has delivered everything and checks that the Maildir holds
exactly as many messages as were accepted (``ok``, ``LOST n`` or ``EXTRA n``). With
``--queue-only`` Exim keeps the messages in its spool instead of delivering them (reception
alone; the check counts the spool). Both servers are started and stopped by PID.

Run from the checkout with the project's Python (Twisted is needed for twistd):

    /work/venv/bin/python bench/backend_exim.py                 # 20 s per scenario
    /work/venv/bin/python bench/backend_exim.py --duration 30 --queue-only --json-out r.json
    .venv/bin/python bench/backend_exim.py --rounds 2 --duration 10

Exit status 1 if a message failed, was lost or duplicated, or a server did not start.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import run as bench_run  # noqa: E402  (free_port, wait_ready, stop_server)
from tests.support.exim import exim_install, make_private_exim  # noqa: E402

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def tx_config(directory, exim, pool=0):
    conf = os.path.join(directory, "config")
    os.mkdir(conf)
    files = {
        "me": "bench.example",
        "rcpthosts": "example.com",
        "loglevel": "4",
        "logging": "",
        "spool_dir": os.path.join(directory, "spool"),
        "plugins": "rcpt_ok\n%s\n" % exim.plugin_line("pool %d" % pool if pool else ""),
    }
    for name, text in files.items():
        with open(os.path.join(conf, name), "w") as f:
            f.write(text + ("\n" if text and not text.endswith("\n") else ""))
    return conf


def server(kind, directory, exim, port, pool):
    """(argv, env, cwd) for ``kind`` on ``port``."""
    if kind in ("tx", "tx-pool"):
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        return ([TWISTD, "-n", "--pidfile=", "qpsmtpd-tx", "--config",
                 tx_config(directory, exim, pool if kind == "tx-pool" else 0),
                 "--listen", "tcp:%d:interface=127.0.0.1" % port, "--no-rdns",
                 "--max-from-ip", "0"], env, ROOT)      # all clients come from 127.0.0.1
    return ([exim.command, "-C", exim.config, "-bdf", "-oX", "127.0.0.1.%d" % port,
             "-oP", os.path.join(directory, "exim.pid")], dict(os.environ), directory)


def count_done(exim, queue_only):
    if queue_only:
        return len(exim.queued())
    return len(exim.delivered())


def run(kind, install, a):
    directory = tempfile.mkdtemp(prefix="qpbench-exim-%s-" % kind)
    os.chmod(directory, 0o755)      # Exim runs as nobody: it must reach its spool below
    exim_dir = os.path.join(directory, "exim")
    os.mkdir(exim_dir)
    exim = make_private_exim(install, exim_dir, queue_only=a.queue_only)
    port = bench_run.free_port()
    argv, env, cwd = server(kind, directory, exim, port, a.pool)
    print("== %s: %s" % (kind, " ".join(argv)), flush=True)
    log = open(os.path.join(directory, "server.log"), "wb")
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    row = {"name": kind}
    try:
        if not bench_run.wait_ready(proc, port):
            row["error"] = "did not start (see %s)" % os.path.join(directory, "server.log")
            return row, directory, False
        load = [sys.executable, os.path.join(HERE, "smtpload.py"), "--port", str(port),
                "--concurrency", str(a.concurrency), "--size", str(a.size),
                "--per-connection", str(a.per_connection), "--duration", str(a.duration),
                "--server-pid", str(proc.pid), "--json"]
        if a.messages:
            load += ["--messages", str(a.messages)]
        result = subprocess.run(load, capture_output=True, text=True, timeout=a.duration + 300)
        try:
            row.update(json.loads(result.stdout))
        except ValueError:
            row["error"] = "smtpload failed: %s" % (result.stderr.strip().splitlines() or ["?"])[-1]
            return row, directory, False
    finally:
        bench_run.stop_server(proc)
        log.close()
    # Exim delivers in background processes: wait until its spool is empty.
    deadline = time.monotonic() + 300
    while not a.queue_only and exim.queued() and time.monotonic() < deadline:
        time.sleep(0.2)
    done = count_done(exim, a.queue_only)
    accepted = row.get("accepted", 0)
    cpu_pct = (row.get("server") or {}).get("cpu_pct")
    if cpu_pct is not None and accepted:
        row["cpu_ms_per_msg"] = round(cpu_pct / 100.0 * row["elapsed_s"] / accepted * 1000, 3)
    row["check"] = "ok" if done == accepted else (
        "LOST %d" % (accepted - done) if done < accepted else "EXTRA %d" % (done - accepted))
    ok = row["check"] == "ok" and not row.get("failed") and accepted > 0
    return row, directory, ok


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=20, help="seconds per scenario (20)")
    p.add_argument("--messages", type=int, help="cap on messages per scenario")
    p.add_argument("--concurrency", type=int, default=20, help="concurrent clients (20)")
    p.add_argument("--per-connection", type=int, default=40, help="messages per connection (40)")
    p.add_argument("--size", type=int, default=10240, help="message size (10240)")
    p.add_argument("--queue-only", action="store_true", help="Exim queues instead of delivering")
    p.add_argument("--only", action="append", choices=("tx", "tx-pool", "exim"),
                   help="run only these scenarios (repeatable)")
    p.add_argument("--pool", type=int, default=8, help="exim-bsmtp's pool N in tx-pool (8)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the scenarios this many times, interleaved (1)")
    p.add_argument("--keep", action="store_true", help="keep the temp dirs")
    p.add_argument("--json-out", help="write the rows as JSON to this file")
    a = p.parse_args()
    install = exim_install()
    rows, all_ok = [], True
    for round_ in range(1, a.rounds + 1):
        for kind in ("tx", "tx-pool", "exim"):
            if a.only and kind not in a.only:
                continue
            row, directory, ok = run(kind, install, a)
            row["round"] = round_
            rows.append(row)
            all_ok = all_ok and ok
            if a.keep or not ok:
                print("   kept %s" % directory)
            else:
                shutil.rmtree(directory, True)
    print()
    print("%-5s %-7s %9s %8s %8s %9s %7s %9s %8s %7s  %s" % (
        "round", "server", "msgs/s", "p50 ms", "p99 ms", "srv CPU%", "ms/msg", "gen CPU%",
        "other%", "errors", "check (%s)" % ("spool" if a.queue_only else "maildir")))
    for r in rows:
        if "error" in r:
            print("%-5d %-7s %s" % (r["round"], r["name"], r["error"]))
            continue
        lat = r.get("latency_ms", {})
        print("%-5d %-7s %9.1f %8.1f %8.1f %9.0f %7.3f %9.0f %8.0f %7d  %s" % (
            r["round"], r["name"], r["msgs_per_s"], lat.get("p50") or 0, lat.get("p99") or 0,
            (r.get("server") or {}).get("cpu_pct") or 0, r.get("cpu_ms_per_msg") or 0,
            r.get("client_cpu_pct") or 0, r.get("other_cpu_pct") or 0,
            sum(r.get("errors", {}).values()), r["check"]))
    print("(ms/msg: CPU milliseconds of the server and its children per accepted message)")
    for round_ in range(1, a.rounds + 1):
        by = {r["name"]: r for r in rows if r["round"] == round_ and "error" not in r}
        base = by.get("exim")
        for kind in ("tx", "tx-pool"):
            if base and kind in by and base["msgs_per_s"] and base.get("cpu_ms_per_msg"):
                print("round %d: %s / exim: msgs/s x%.2f, CPU per message x%.2f" % (
                    round_, kind, by[kind]["msgs_per_s"] / base["msgs_per_s"],
                    (by[kind].get("cpu_ms_per_msg") or 0) / base["cpu_ms_per_msg"]))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
