#!/usr/bin/env python3
"""Memory of a server whose client pipelines cheap commands and never reads the replies.

Starts ``twistd qpsmtpd-tx`` (the venv's, with this checkout first on PYTHONPATH) on a free
loopback port with the shipped-style network-free plugin chain, connects one client that
sends ``--megabytes`` MB of ``HELP`` lines (or ``--command``) for at most ``--seconds`` and
reads nothing, samples the server's RSS every 0.5 s, then closes the client and reports the
RSS at start, the peak, and the RSS 2 s after the client left. Issue 8 measured 49 MiB →
697 MiB (staying) before the session stopped reading from such clients.

    .venv/bin/python bench/unread_replies.py --megabytes 28 --seconds 20
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import run as bench_run  # noqa: E402  (free_port, wait_ready, stop_server)
import smtpload  # noqa: E402  (tree_memory)

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def start_server(directory, port):
    """A twistd qpsmtpd-tx on ``port`` with a config under ``directory``; the Popen."""
    conf = os.path.join(directory, "config")
    os.mkdir(conf)
    files = {"me": "bench.example", "rcpthosts": "example.com", "loglevel": "4",
             "spool_dir": os.path.join(directory, "spool"),
             "plugins": "relay\nrcpt_ok\nqueue/maildir %s\n" % os.path.join(directory, "maildir")}
    for name, text in files.items():
        with open(os.path.join(conf, name), "w") as f:
            f.write(text + "\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "qpsmtpd-tx", "--config", conf, "--no-rdns",
         "--listen", "tcp:%d:interface=127.0.0.1" % port],
        cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rss_mib(pid):
    """The server's resident set size in MiB."""
    return smtpload.tree_memory(pid)[0] / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=float, default=28.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--command", default="HELP")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="unread-replies-") as directory:
        port = bench_run.free_port()
        proc = start_server(directory, port)
        try:
            if not bench_run.wait_ready(proc, port):
                sys.exit("server did not start")
            before = peak = rss_mib(proc.pid)
            client = socket.create_connection(("127.0.0.1", port))
            client.setblocking(False)
            line = (a.command + "\r\n").encode()
            chunk = line * (65536 // len(line))
            total, sent, end = int(a.megabytes * 1e6), 0, time.monotonic() + a.seconds
            next_sample = 0.0
            while time.monotonic() < end:
                if sent < total:
                    try:
                        sent += client.send(chunk)
                    except BlockingIOError:
                        time.sleep(0.01)
                else:
                    time.sleep(0.1)
                if time.monotonic() >= next_sample:
                    peak = max(peak, rss_mib(proc.pid))
                    next_sample = time.monotonic() + 0.5
            client.close()
            time.sleep(2)
            after = rss_mib(proc.pid)
        finally:
            bench_run.stop_server(proc)
    print("sent %.1f MB of %s in %.0f s without reading; server RSS: %.0f MiB before, "
          "%.0f MiB peak, %.0f MiB 2 s after the client left" % (
              sent / 1e6, a.command, a.seconds, before, peak, after))


if __name__ == "__main__":
    main()
