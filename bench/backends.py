#!/usr/bin/env python3
"""Throughput through the Postfix back ends: qpsmtpd-tx's overhead on top of the MTA.

Starts a private Postfix (``tests/support/postfix.py``: own config, queue and log under a
temp dir, smtpd on a free 127.0.0.1 port) and runs ``smtpload.py`` (concurrency 20, 10 KiB
messages, 40 per connection by default) against, in turn:

  ``postfix direct``    Postfix's smtpd itself: the MTA alone, the reference figure;
  ``tx+postfix-queue``  ``twistd qpsmtpd-tx`` with ``queue/postfix-queue`` (the message goes
                        into Postfix's cleanup over its unix socket);
  ``tx+smtp-forward``   ``twistd qpsmtpd-tx`` with ``queue/smtp-forward`` to that smtpd
                        (a connection per message);
  ``tx+smtp-forward pool`` the same with ``pool N`` (``--pool``, default 20): connections to
                        the smtpd kept and reused.

``--rounds R`` runs the rows R times, interleaved (direct, postfix-queue, smtp-forward,
pool, direct, …), so that a noisy machine hurts every row alike; each round prints its
ratios against that round's direct row: msgs/s, and CPU per message (the front's CPU plus
Postfix's, against Postfix's alone; from /proc, so the load of other processes does not
blur it as much as msgs/s).

qpsmtpd-tx runs run.py's short plugin chain (count_unrecognized_commands, relay,
badmailfrom, badrcptto, rcpt_ok) before the queue plugin. Postfix hands every message to
its ``discard`` delivery agent (``--delivery discard``, the default), so that delivery
costs the same small amount in all three rows; ``--delivery pipe`` delivers through the
test suite's pipe transport into files instead (costlier: a shell per delivery) and checks
the newest body byte for byte. In both cases, after each run the Postfix queue must drain
and Postfix must have delivered exactly as many messages as the load generator saw accepted
(counted in Postfix's log, ``status=sent``): nothing lost, nothing twice.

Run as root (Postfix's master needs it), from the checkout, with the venv's Python:

    /work/venv/bin/python bench/backends.py                    # 15 s per row
    /work/venv/bin/python bench/backends.py --duration 20 --json-out /tmp/backends.json
    .venv/bin/python bench/backends.py --rounds 2 --only direct --only smtp-forward \
        --only smtp-forward-pool

Exit status 0 if every row ran without errors and without lost or extra mail, else 1.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import run  # noqa: E402  (server start/stop, load runner, quiet-machine wait)
import smtpload  # noqa: E402
from tests.support.postfix import PostfixUnavailable, PrivatePostfix  # noqa: E402

FRONT_CHAIN = """\
count_unrecognized_commands 4
relay
badmailfrom
badrcptto
rcpt_ok
{queue}
"""


def make_front_config(root, queue_line):
    conf = os.path.join(root, "config")
    os.makedirs(os.path.join(root, "spool"), mode=0o700)
    os.makedirs(conf, mode=0o700)
    run.write_config_files(conf, run.base_config(root, FRONT_CHAIN.format(queue=queue_line)))
    return conf


def sent_count(postfix):
    """Deliveries Postfix has logged so far."""
    return len(re.findall(r" status=sent ", postfix.maillog()))


def wait_drained(postfix, timeout=120):
    """Wait until Postfix's queue is empty and its log stops growing; True if it did."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        count = sent_count(postfix)
        if not postfix.queued() and count == last:
            return True
        last = count
        time.sleep(0.5)
    return False


def check_pipe_body(postfix, size):
    """With --delivery pipe: the newest delivered message ends with exactly the body sent."""
    deliveries = postfix.deliveries()
    if not deliveries:
        return False
    want = smtpload.expected_body(size, "sender@example.net", "user@example.com").replace(b"\r\n", b"\n")
    return deliveries[-1].message.split(b"\n\n", 1)[-1] == want


def bench_row(name, postfix, a, front_queue_line=None):
    """One row: start the front if any, run the load, check Postfix's deliveries."""
    proc, root, port, pid = None, None, postfix.port, postfix.master_pid
    if front_queue_line:
        root = tempfile.mkdtemp(prefix="qpbench-backend-")
        conf = make_front_config(root, front_queue_line)
        port = run.free_port()
        argv, env, cwd = run.server_command("tx", conf, port, None, a.tx_workers)
        log = open(os.path.join(root, "server.log"), "wb")
        print("== %s: %s" % (name, " ".join(argv)), flush=True)
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=run.renice(a.nice))
        pid = proc.pid
        if not run.wait_ready(proc, port):
            run.stop_server(proc)
            log.close()
            print("!! %s did not start; its log: %s/server.log" % (name, root))
            return {"server_kind": name, "scenario": "load", "error": "front did not start"}, False
    else:
        print("== %s: Postfix smtpd on 127.0.0.1:%d" % (name, port), flush=True)
    ok = True
    try:
        busy = run.wait_quiet(a.quiet, a.quiet_wait)
        before = sent_count(postfix)
        mta_cpu = smtpload.tree_cpu(postfix.master_pid)
        print("   load (machine %.0f%% busy before) ..." % busy, flush=True)
        r = run.run_load(port, pid, ["--size", str(a.size), "--concurrency", str(a.concurrency),
                                     "--per-connection", str(a.per_connection),
                                     "--duration", str(a.duration), "--messages", str(a.messages)],
                         a.duration + 180, a.nice)
        mta_cpu = smtpload.tree_cpu(postfix.master_pid) - mta_cpu
        r["server_kind"], r["scenario"] = name, "%d clients" % a.concurrency
        if r.get("accepted"):
            r["mta_cpu_ms_per_msg"] = round(1000 * mta_cpu / r["accepted"], 3)
            tx_ms = run.cpu_ms_per_message(r) if front_queue_line else None
            if tx_ms is not None:
                r["tx_cpu_ms_per_msg"] = round(tx_ms, 3)
        if r.get("elapsed_s"):
            # Postfix's CPU (master, its daemons, reaped ones); in the tx rows it is not
            # "other" work, so it is taken out of that figure
            r["mta_cpu_pct"] = round(100 * mta_cpu / r["elapsed_s"], 1)
            if front_queue_line and r.get("other_cpu_pct") is not None:
                r["other_cpu_pct"] = round(max(0.0, r["other_cpu_pct"] - r["mta_cpu_pct"]), 1)
        r["busy_before_pct"] = round(busy, 1)
        drained = wait_drained(postfix)
        r["delivered"] = sent_count(postfix) - before
        if "error" in r:
            ok = False
        else:
            if not drained:
                ok = False
                print("!!!! %s: Postfix's queue did not drain: %s" % (name, postfix.queued()[:5]))
            if r["delivered"] != r["accepted"]:
                ok = False
                print("!!!! %s: %d accepted but Postfix delivered %d !!!!"
                      % (name, r["accepted"], r["delivered"]))
            if r.get("failed") or r.get("errors"):
                ok = False
            if a.delivery == "pipe":
                r["body_ok"] = check_pipe_body(postfix, a.size)
                ok = ok and r["body_ok"]
    finally:
        if proc is not None:
            run.stop_server(proc)
            log.close()
            if ok and not a.keep:
                shutil.rmtree(root, ignore_errors=True)
            else:
                print("   front files kept in %s" % root)
    return r, ok


def print_table(rows):
    hdr = ("round", "back end", "msgs/s", "p50 ms", "p99 ms", "tx CPU%", "MTA CPU%", "gen CPU%",
           "other%", "tx ms/msg", "MTA ms/msg", "errors", "accepted", "delivered")
    lines = [hdr]
    for r in rows:
        if "error" in r:
            lines.append((str(r.get("round", "")), r["server_kind"], r["error"]) + ("",) * (len(hdr) - 3))
            continue
        s, lat = r.get("server", {}), r["latency_ms"]
        tx_cpu = None if r["server_kind"] == "postfix direct" else s.get("cpu_pct")
        lines.append((str(r.get("round", "")), r["server_kind"], run.fmt(r["msgs_per_s"]),
                      run.fmt(lat["p50"]), run.fmt(lat["p99"]), run.fmt(tx_cpu, "%.0f"),
                      run.fmt(r.get("mta_cpu_pct"), "%.0f"),
                      run.fmt(r.get("client_cpu_pct"), "%.0f"),
                      run.fmt(r.get("other_cpu_pct"), "%.0f"),
                      run.fmt(r.get("tx_cpu_ms_per_msg"), "%.3f"),
                      run.fmt(r.get("mta_cpu_ms_per_msg"), "%.3f"), str(sum(r["errors"].values())),
                      str(r["accepted"]), str(r["delivered"])))
    run.print_columns(lines)
    print("(CPU%: 100 = one core. tx: the twistd process; MTA: Postfix's master and all its\n"
          " daemons; gen: the load generator; other: the rest of the machine; ms/msg: CPU\n"
          " milliseconds per accepted message)")
    for round_ in sorted({r.get("round", 1) for r in rows}):
        by = {r["server_kind"]: r for r in rows if "error" not in r and r.get("round", 1) == round_}
        direct = by.get("postfix direct")
        for name in ("tx+postfix-queue", "tx+smtp-forward", "tx+smtp-forward pool"):
            if not (direct and name in by and direct["msgs_per_s"]):
                continue
            row, cpu = by[name], None
            if row.get("tx_cpu_ms_per_msg") is not None and direct.get("mta_cpu_ms_per_msg"):
                cpu = ((row["tx_cpu_ms_per_msg"] + row["mta_cpu_ms_per_msg"])
                       / direct["mta_cpu_ms_per_msg"])
            print("round %d: %s / postfix direct: msgs/s x%.2f, CPU per message (tx + MTA) x%s"
                  % (round_, name, row["msgs_per_s"] / direct["msgs_per_s"], run.fmt(cpu, "%.2f")))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=15, help="seconds per row (15)")
    p.add_argument("--messages", type=int, default=50000, help="at most this many per row (50000)")
    p.add_argument("--concurrency", type=int, default=20, help="concurrent clients (20)")
    p.add_argument("--per-connection", type=int, default=40, help="messages per connection (40)")
    p.add_argument("--size", type=int, default=10240, help="message size (10240)")
    p.add_argument("--delivery", choices=("discard", "pipe"), default="discard",
                   help="Postfix's delivery: discard agent (default) or the test pipe into files")
    p.add_argument("--only", action="append",
                   choices=("direct", "postfix-queue", "smtp-forward", "smtp-forward-pool"),
                   help="run only these rows (repeatable)")
    p.add_argument("--pool", type=int, default=20,
                   help="smtp-forward's pool N in the pool row (20)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the rows this many times, interleaved (1)")
    p.add_argument("--quiet", type=float, default=10,
                   help="wait for the machine to be under this %% busy before each row (10)")
    p.add_argument("--quiet-wait", type=float, default=120)
    p.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0)
    p.add_argument("--tx-workers", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    p.add_argument("--json-out", help="also write the results to this JSON file")
    a = p.parse_args()

    avail, why = run.tx_available()
    settings = {"smtpd_client_connection_count_limit": "0"}
    if a.delivery == "discard":
        settings.update(default_transport="discard", local_transport="discard",
                        relay_transport="discard")
    try:
        postfix = PrivatePostfix(settings=settings)
    except PostfixUnavailable as e:
        print("cannot run: %s" % e)
        return 1
    rows, ok = [], True
    try:
        postfix.start()
        print("Postfix in %s (smtpd 127.0.0.1:%d, cleanup %s)"
              % (postfix.dir, postfix.port, postfix.cleanup_socket), flush=True)
        plan = [("direct", "postfix direct", None),
                ("postfix-queue", "tx+postfix-queue", "queue/postfix-queue %s" % postfix.cleanup_socket),
                ("smtp-forward", "tx+smtp-forward", "queue/smtp-forward 127.0.0.1 %d" % postfix.port),
                ("smtp-forward-pool", "tx+smtp-forward pool",
                 "queue/smtp-forward 127.0.0.1 %d pool %d" % (postfix.port, a.pool))]
        for round_ in range(1, a.rounds + 1):
            for key, name, line in plan:
                if a.only and key not in a.only:
                    continue
                if line and not avail:
                    print("-- skipping %s: %s" % (name, why))
                    continue
                r, k = bench_row(name, postfix, a, line)
                r["round"] = round_
                rows.append(r)
                ok = ok and k
                time.sleep(1)
    finally:
        postfix.stop()
        if ok and not a.keep:
            postfix.cleanup()
        else:
            print("Postfix files kept in %s" % postfix.dir)
    return run.finish(rows, ok, a.json_out, print_table, "see the messages above")


if __name__ == "__main__":
    sys.exit(main())
