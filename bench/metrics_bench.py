#!/usr/bin/env python3
"""The cost of ``--metrics``: server CPU per message with and without it, interleaved.

Each round starts qpsmtpd-tx twice on run.py's short chain and config (one fresh server per
run), once with ``--metrics tcp:PORT:interface=127.0.0.1`` and once without, in alternating
order (off, on, then on, off, ...), and runs smtpload.py's load against it (50 clients × 40
messages per connection unless told otherwise). Every reply is checked, the Maildir must hold
exactly the accepted messages, and with ``--metrics`` the scraped message counter must equal
them too. Reported: server CPU milliseconds per accepted message (CPU seconds of the server
process tree from /proc ÷ messages) per run, the median per variant, and on/off ratios of
each round (same machine, minutes apart) and of the medians.

    .venv/bin/python bench/metrics_bench.py --rounds 4 --duration 10 [--tx-workers 2]

On a shared, busy machine the socket runs are noisy (other processes take the cores the
server and the load client need). ``--in-process`` measures the metrics' own cost without
sockets, load client or disk: sessions on Twisted's in-memory transport (the test kit's
MemoryClient), the short chain without its queue plugin (the message is then answered 451
"Queuing declined", which counts a message *and* a refusal: more metrics work than a 250),
CPU time (``time.process_time``) per message with metrics off, on (one process) and on in
multiprocess mode (``--workers``), interleaved.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (run.py's config, server start/stop and load helpers)


def scrape_accepted(port):
    """The sum of qpsmtpd_tx_messages_total{outcome="accepted"} at ``port``."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=30) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('qpsmtpd_tx_messages_total{') and 'outcome="accepted"' in line)


def one_run(metrics, a):
    """Start a server (with ``--metrics`` if ``metrics``), load it, stop it: its result dict."""
    root = tempfile.mkdtemp(prefix="qpbench-metrics-")
    conf = run.make_config(root, False, None)
    maildir = os.path.join(root, "maildir")
    port, metrics_port = run.free_port(), run.free_port()
    argv, env, cwd = run.server_command("tx", conf, port, None, a.tx_workers)
    if metrics:
        argv += ["--metrics", "tcp:%d:interface=127.0.0.1" % metrics_port]
    log = open(os.path.join(root, "server.log"), "wb")
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=run.renice(a.nice))
    try:
        if not run.wait_ready(proc, port, 60):
            raise SystemExit("server did not start; see %s/server.log" % root)
        time.sleep(2 if a.tx_workers > 1 else 0.5)       # workers up
        run.wait_quiet(a.quiet, a.quiet_wait)
        r = run.run_load(port, proc.pid, ["--size", str(a.size), "--concurrency",
                                          str(a.concurrency), "--per-connection",
                                          str(a.per_connection), "--duration", str(a.duration),
                                          "--messages", str(a.messages)], a.duration + 180, a.nice)
        if "error" in r or r.get("failed") or r.get("errors"):
            raise SystemExit("load failed: %r" % (r.get("error") or r.get("errors")))
        delivered = run.count_new(maildir)
        if delivered != r["accepted"] or not run.check_body(maildir, a.size):
            raise SystemExit("lost or damaged mail: %d accepted, %d delivered"
                             % (r["accepted"], delivered))
        if metrics:
            counted = scrape_accepted(metrics_port)
            if counted != r["accepted"]:
                raise SystemExit("metrics counted %d messages, %d accepted"
                                 % (counted, r["accepted"]))
        return {"metrics": metrics, "accepted": r["accepted"],
                "msgs_per_s": r["accepted"] / r["elapsed_s"],
                "cpu_ms": run.cpu_ms_per_message(r)}
    finally:
        run.stop_server(proc)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


MESSAGE = b"From: a@b.example\r\nSubject: x\r\n\r\n" + b"0123456789abcdef" * 640 + b"\r\n.\r\n"
GROUP = (b"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n", MESSAGE)


def in_process_cpu(variant, connections, per_connection):
    """CPU seconds per message of ``connections`` × ``per_connection`` messages through
    in-memory sessions; ``variant``: off, on, or multiprocess."""
    sys.path.insert(0, run.ROOT)        # this checkout's qpsmtpd_tx, installed or not
    from qpsmtpd_tx import prometheus
    from qpsmtpd_tx.config import Config
    from qpsmtpd_tx.metrics import NO_METRICS
    from qpsmtpd_tx.paths import program_dir
    from qpsmtpd_tx.server import SMTPServer
    from qpsmtpd_tx.testing import MemoryClient
    root = tempfile.mkdtemp(prefix="qpbench-metrics-")
    try:
        conf = run.make_config(root, False, None, skip=("queue/maildir",))
        server = SMTPServer(Config(config_dir=conf, program_dir=program_dir()))
        if variant == "on":
            server.use_metrics(prometheus.single_process()[0])
        elif variant == "multiprocess":
            server.use_metrics(prometheus.in_multiprocess_dir(os.path.join(root, "spool")))
        else:
            server.use_metrics(NO_METRICS)
        started = time.process_time()
        for _ in range(connections):
            client = MemoryClient(server, remote_ip="127.0.0.1")
            client.command("EHLO client.example")
            for _ in range(per_connection):
                client.send(GROUP[0])
                if not client.send(GROUP[1]).startswith("451"):
                    raise SystemExit("unexpected answer to the message")
            client.command("QUIT")
            client.protocol.connectionLost(None)
        return (time.process_time() - started) / (connections * per_connection)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def in_process(a):
    """The ``--in-process`` rounds and their medians."""
    variants = ["off", "on", "multiprocess"]
    results = {v: [] for v in variants}
    for n in range(a.rounds):
        order = variants if n % 2 == 0 else variants[::-1]
        for variant in order:
            results[variant].append(in_process_cpu(variant, a.in_process_connections,
                                                   a.per_connection))
        print("round %d  " % (n + 1) + "  ".join(
            "%s %.1f us" % (v, results[v][-1] * 1e6) for v in variants), flush=True)
    off = statistics.median(results["off"])
    for v in variants[1:]:
        on = statistics.median(results[v])
        print("median CPU per message: off %.1f us, %s %.1f us: +%.1f us, on/off %.3f" % (
            off * 1e6, v, on * 1e6, (on - off) * 1e6, on / off))
    return 0


def main():
    """Run the rounds and print the table; exit status 1 on any failed check."""
    p = argparse.ArgumentParser(description="server CPU per message with and without --metrics")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--messages", type=int, default=50000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--per-connection", type=int, default=40)
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--tx-workers", type=int, default=1)
    p.add_argument("--quiet", type=float, default=60,
                   help="wait until the machine is under this %% busy before each run (60)")
    p.add_argument("--quiet-wait", type=float, default=30)
    p.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0)
    p.add_argument("--in-process", action="store_true",
                   help="measure the metrics' own CPU per message without sockets (see above)")
    p.add_argument("--in-process-connections", type=int, default=100)
    a = p.parse_args()
    if a.in_process:
        return in_process(a)
    results = {False: [], True: []}
    for n in range(a.rounds):
        order = (False, True) if n % 2 == 0 else (True, False)
        for metrics in order:
            r = one_run(metrics, a)
            results[metrics].append(r)
            print("round %d  metrics %-3s  %6d msgs  %7.1f msgs/s  %.3f ms CPU/msg" % (
                n + 1, "on" if metrics else "off", r["accepted"], r["msgs_per_s"], r["cpu_ms"]),
                flush=True)
        print("round %d  on/off CPU per message %.3f" % (
            n + 1, results[True][-1]["cpu_ms"] / results[False][-1]["cpu_ms"]), flush=True)
    off = statistics.median(r["cpu_ms"] for r in results[False])
    on = statistics.median(r["cpu_ms"] for r in results[True])
    print("median CPU per message: off %.3f ms, on %.3f ms, on/off %.3f (%d rounds, %d worker%s)"
          % (off, on, on / off, a.rounds, a.tx_workers, "s" if a.tx_workers > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
