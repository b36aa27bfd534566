#!/usr/bin/env python3
"""Greylisting's cost per message: qpsmtpd-tx with ``greylisting`` on the file store
(SQLite) and on Redis, beside the same chain without it, one run each, the same load.

Greylisting runs with ``reject 0`` (records and logs, never defers) so that every message is
accepted while paying the whole check: one read-modify-write of its triplet per MAIL. The
clients come from the addresses of 127.1.0.0/16 in turn (smtpload ``--source-net``), so the
triplets are many and new ones are written all along. Redis is a private redis-server
(tests/support/redis.py). Reported: msgs/s, server CPU per message (ms), and the ratios to
the plain chain.

    python3 bench/greylisting_bench.py [--duration 10] [--concurrency 50] [--per-connection 40]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import run as bench  # noqa: E402  (configs, server commands, readiness, load runs)
from tests.support.redis import start_redis  # noqa: E402


def run_one(name, plugins, a):
    """Start qpsmtpd-tx with ``plugins`` before rcpt_ok and the queue, load it; the result."""
    root = tempfile.mkdtemp(prefix="qpgreybench-%s-" % name)
    try:
        conf = bench.make_config(root, False, None, chain="short")
        maildir = os.path.join(root, "maildir")
        db_dir = os.path.join(root, "db")
        os.makedirs(db_dir)
        bench.write_config_files(conf, {"plugins": "\n".join(
            [line.format(db_dir=db_dir) for line in plugins] + ["rcpt_ok", "queue/maildir " + maildir])})
        port = bench.free_port()
        argv, env, cwd = bench.server_command("tx", conf, port, None)
        log = open(os.path.join(root, "server.log"), "wb")
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            if not bench.wait_ready(proc, port):
                return {"error": "server did not start"}
            result = bench.run_load(port, proc.pid, [
                "--concurrency", str(a.concurrency), "--per-connection", str(a.per_connection),
                "--duration", str(a.duration), "--size", str(a.size),
                "--source-net", "127.1.0.0/16"], a.duration + 120)
        finally:
            bench.stop_server(proc)
            log.close()
        with open(os.path.join(root, "server.log"), "rb") as f:
            text = f.read().decode("utf-8", "replace")
        result["delivered"] = bench.count_new(maildir)
        result["store errors"] = text.count("database failed")
        return result
    finally:
        shutil.rmtree(root, True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--per-connection", type=int, default=40)
    p.add_argument("--size", type=int, default=10240)
    a = p.parse_args()
    redis = start_redis()
    try:
        rows = [("plain", run_one("plain", [], a)),
                ("file store", run_one("file", ["greylisting reject 0 db_dir {db_dir}"], a)),
                ("redis", run_one("redis", ["greylisting reject 0 redis_url " + redis.url], a))]
    finally:
        redis.stop()
    plain = rows[0][1]
    for name, r in rows:
        if "error" in r:
            print("%-11s error: %s" % (name, r["error"]))
            continue
        ratio = ""
        if "error" not in plain and plain.get("msgs_per_s"):
            ratio = "  %.2f of plain" % (r.get("msgs_per_s", 0) / plain["msgs_per_s"])
        print("%-11s %8.1f msgs/s  %6d delivered  %d store errors  CPU %s ms/msg%s"
              % (name, r.get("msgs_per_s", 0), r["delivered"], r["store errors"],
                 bench.fmt(bench.cpu_ms_per_message(r), "%.2f"), ratio))


if __name__ == "__main__":
    main()
