#!/usr/bin/env python3
"""What a HAProxy hop and the PROXY header cost: one qpsmtpd-tx, three paths, interleaved.

One ``twistd qpsmtpd-tx`` (short chain: hosts_allow, rcpt_ok, queue/maildir with its fsyncs)
listens on a plain ``--listen`` port and on a ``--listen-proxy`` port; Debian's haproxy (TCP
mode) forwards one frontend to the plain port and another with ``send-proxy-v2`` to the proxy
port. bench/smtpload.py then loads the three paths in turn, ``--rounds`` times (direct, via
haproxy, via haproxy + PROXY v2, direct, …) and the script prints, per path, msgs/s and the
CPU milliseconds per accepted message of the server and of haproxy (utime + stime from /proc,
before and after each run), and the Maildir count is checked against the accepted messages.

    .venv/bin/python bench/proxy_bench.py [--rounds 2] [--concurrency 50] [--per-connection 1]
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
sys.path.insert(0, ROOT)
from tests.support.haproxy import HAPROXY, config_text  # noqa: E402
from tests.support.processes import free_port, stop_process, wait_for_port  # noqa: E402

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of process ``pid`` so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start(argv, directory, name, port):
    out = open(os.path.join(directory, name + ".out"), "wb")
    process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=directory,
                               env=dict(os.environ, PYTHONPATH=ROOT))
    wait_for_port(port, process, timeout=30)
    return process


def maildir_count(maildir):
    """Messages in ``maildir``/new."""
    new = os.path.join(maildir, "new")
    return len(os.listdir(new)) if os.path.isdir(new) else 0


def load_run(port, a, server, helper, maildir):
    """One smtpload.py run on ``port`` with ``a``'s concurrency, per-connection and messages:
    ``(its JSON result, server CPU seconds, helper CPU seconds, messages delivered into
    maildir meanwhile)``; ``helper`` is another process whose CPU counts (or None)."""
    before = maildir_count(maildir)
    cpu0 = cpu_seconds(server.pid)
    hcpu0 = cpu_seconds(helper.pid) if helper else 0.0
    run = subprocess.run(
        [sys.executable, os.path.join(HERE, "smtpload.py"), "--port", str(port),
         "--concurrency", str(a.concurrency), "--per-connection",
         str(a.per_connection), "--messages", str(a.messages), "--json"],
        capture_output=True, text=True, check=True)
    r = json.loads(run.stdout)
    cpu = cpu_seconds(server.pid) - cpu0
    hcpu = (cpu_seconds(helper.pid) - hcpu0) if helper else 0.0
    time.sleep(0.5)   # the last deliveries' fsyncs
    return r, cpu, hcpu, maildir_count(maildir) - before


def print_table(a, results, heading):
    """Print ``a``'s load, then the averages of ``results`` (``{name: [(msgs/s, server ms,
    helper ms), …]}``, rows in its order; the first row is the base of the ratios) under the
    four column names of ``heading``."""
    print("%d clients x %d msgs/conn, %d messages a run, %d rounds (interleaved)"
          % (a.concurrency, a.per_connection, a.messages, a.rounds))
    print("%-12s %10s %22s %22s" % heading)
    base = None
    for name, rows in results.items():
        rate, cpu, hcpu = (sum(col) / len(rows) for col in zip(*rows))
        base = base or cpu
        print("%-12s %10.0f %14.3f (%.2fx) %22.3f" % (name, rate, cpu, cpu / base, hcpu))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--per-connection", type=int, default=1)
    p.add_argument("--messages", type=int, default=2000)
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="qptx-proxy-bench-")
    config, maildir = os.path.join(root, "config"), os.path.join(root, "maildir")
    os.makedirs(config)
    for name, text in {"plugins": "hosts_allow\nrcpt_ok\nqueue/maildir %s\n" % maildir,
                       "me": "mx.example.org", "rcpthosts": "example.com",
                       "spool_dir": os.path.join(root, "spool")}.items():
        with open(os.path.join(config, name), "w") as f:
            f.write(text + "\n")
    direct, proxied, via_plain, via_v2 = (free_port() for _ in range(4))
    server = start([TWISTD, "-n", "--pidfile=", "qpsmtpd-tx", "--config", config, "--no-rdns",
                    "--max-from-ip", "0", "--limit-connections", "0",
                    "--listen", "tcp:%d:interface=127.0.0.1" % direct,
                    "--listen-proxy", "tcp:%d:interface=127.0.0.1" % proxied], root, "twistd", direct)
    wait_for_port(proxied, server)
    haproxies = []
    for front, back, send_proxy in ((via_plain, direct, ""), (via_v2, proxied, "send-proxy-v2")):
        path = os.path.join(root, "haproxy-%d.cfg" % front)
        with open(path, "w") as f:
            f.write(config_text(front, [("127.0.0.1", back)], send_proxy, False, 0)
                    .replace("maxconn 1000", "maxconn 4000"))
        haproxies.append(start([HAPROXY, "-db", "-f", path], root, "haproxy-%d" % front, front))
    paths = [("direct", direct, None), ("haproxy", via_plain, haproxies[0]),
             ("haproxy+v2", via_v2, haproxies[1])]
    results = {name: [] for name, _, _ in paths}
    ok = True
    try:
        for _ in range(a.rounds):
            for name, port, haproxy in paths:
                r, cpu, hcpu, delivered = load_run(port, a, server, haproxy, maildir)
                if delivered != r["accepted"] or r["failed"]:
                    ok = False
                    print("!! %s: %d accepted, %d failed, %d delivered"
                          % (name, r["accepted"], r["failed"], delivered))
                results[name].append((r["msgs_per_s"], 1000 * cpu / r["accepted"],
                                      1000 * hcpu / r["accepted"]))
    finally:
        for process in haproxies + [server]:
            stop_process(process)
    print_table(a, results, ("path", "msgs/s", "server ms CPU/msg", "haproxy ms CPU/msg"))
    shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
