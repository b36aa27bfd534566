#!/usr/bin/env python3
"""Milter benchmark: the per-message cost of virus scanning through ``milter`` with
clamav-milter, against the ``virus/clamdscan`` plugin talking to the same clamd.

Three qpsmtpd-tx runs, the same chain (``rcpt_ok``, the scanner, ``queue/maildir``) and the
same clean messages: ``plain`` (no scanner), ``clamdscan`` (``virus/clamdscan`` on clamd's
unix socket) and ``milter`` (``milter clamav unix:…`` in front of clamav-milter, which asks
the same clamd). clamd and clamav-milter are the tests' private ones (tests/support/clamd.py
and tests/support/milters.py: one signature, no network).

Two measurements per run:
  - latency: one client, messages one after another (smtpload ``--latency
    --no-pipelining``): the mean time from MAIL to the reply to the final dot. The scanner's
    overhead is its mean minus plain's; the reported figure is ``milter overhead /
    clamdscan overhead``. Without pipelining, because with it the milter's MAIL and RCPT
    replies come in separate reactor turns, so the server writes them separately and, with
    Nagle on (the server does not set TCP_NODELAY), the second waits for the client's
    delayed ACK: ~40 ms per message that are the SMTP socket's, not the milter's.
  - load: ``--concurrency`` clients for ``--duration`` seconds: msgs/s and the server's CPU
    per message (clamd and clamav-milter's CPU is not counted).

    python3 bench/milter_bench.py [--messages 300] [--duration 10] [--concurrency 20]
"""

import argparse
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import run as bench  # noqa: E402  (configs, server commands, readiness, load runs)
from tests.support.clamd import start_clamd  # noqa: E402
from tests.support.milters import start_clamav_milter  # noqa: E402


def run_one(name, scanner, a):
    """Start qpsmtpd-tx with ``scanner`` (a plugins line or None); (latency, load) results."""
    root = tempfile.mkdtemp(prefix="qpmilterbench-%s-" % name)
    try:
        conf = bench.make_config(root, False, None, chain="short")
        maildir = os.path.join(root, "maildir")
        bench.write_config_files(conf, {"plugins": "\n".join(
            ["rcpt_ok"] + ([scanner] if scanner else []) + ["queue/maildir " + maildir])})
        proc, port, log = bench.start_tx(conf, a.concurrency + 20)
        try:
            latency = bench.run_load(port, proc.pid, [
                "--latency", "--no-pipelining", "--messages", str(a.messages), "--size",
                str(a.size)],
                a.messages + 120)
            load = bench.run_load(port, proc.pid, [
                "--concurrency", str(a.concurrency), "--per-connection", "20",
                "--duration", str(a.duration), "--size", str(a.size)], a.duration + 120)
        finally:
            bench.stop_server(proc)
            log.close()
        delivered = bench.count_new(maildir)
        expected = latency.get("accepted", 0) + load.get("accepted", 0)
        if delivered != expected:
            with open(os.path.join(root, "server.log"), "rb") as f:
                print("-- %s: %d accepted, %d delivered; the end of its log:\n%s" % (
                    name, expected, delivered, f.read().decode("utf-8", "replace")[-3000:]))
        return latency, load
    finally:
        shutil.rmtree(root, True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=300, help="messages in the latency run")
    p.add_argument("--duration", type=float, default=10, help="seconds of the load run")
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--size", type=int, default=10240)
    a = p.parse_args()
    clamd = start_clamd()
    milter = None
    try:
        milter = start_clamav_milter(clamd)
        rows = [("plain", run_one("plain", None, a)),
                ("clamdscan", run_one("clamdscan", "virus/clamdscan clamd_socket %s"
                                      % clamd.socket, a)),
                ("milter", run_one("milter", "milter clamav unix:%s" % milter.socket, a))]
    finally:
        if milter is not None:
            milter.stop()
        clamd.stop()
    means = {}
    for name, (latency, load) in rows:
        if "error" in latency or "error" in load:
            print("%-10s error: %s" % (name, latency.get("error") or load.get("error")))
            continue
        means[name] = latency["latency_ms"]["mean"]
        print("%-10s latency mean %6.2f ms p50 %6.2f ms | load %7.1f msgs/s, server CPU %s "
              "ms/msg" % (name, means[name], latency["latency_ms"]["p50"], load["msgs_per_s"],
                          bench.fmt(bench.cpu_ms_per_message(load), "%.2f")))
    if len(means) == 3:
        clamdscan = means["clamdscan"] - means["plain"]
        through_milter = means["milter"] - means["plain"]
        print("overhead per message: clamdscan %.2f ms, milter %.2f ms; milter / clamdscan = %.2f"
              % (clamdscan, through_milter, through_milter / clamdscan if clamdscan > 0 else 0))


if __name__ == "__main__":
    main()
