#!/usr/bin/env python3
"""What counting ``--max-from-ip`` across servers in Redis (``max_from_ip_redis``) costs.

Two ``twistd qpsmtpd-tx`` (short chain: rcpt_ok, queue/maildir with its fsyncs;
``--max-from-ip 1000``, so nothing is refused), one counting its own connections only, the
other in a private redis-server (tests/support/redis.py) as well. bench/smtpload.py loads
them in turn, ``--rounds`` times (local, redis, local, …); the script prints, per server,
msgs/s and the CPU milliseconds per connection of the server and of redis-server (utime +
stime from /proc, before and after each run), and checks the Maildir count against the
accepted messages. At 1 msg/conn a connection is a message.

    .venv/bin/python bench/max_from_ip_bench.py [--rounds 3] [--concurrency 50] [--per-connection 1]
"""

import argparse
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
from proxy_bench import TWISTD, load_run, print_table, start  # noqa: E402
from tests.support.processes import free_port, stop_process  # noqa: E402
from tests.support.redis import start_redis  # noqa: E402


def write_config(root, name, extra):
    """A config dir ``root/name`` delivering into ``root/name-maildir``; (config, maildir)."""
    config, maildir = os.path.join(root, name), os.path.join(root, name + "-maildir")
    os.makedirs(config)
    files = {"plugins": "rcpt_ok\nqueue/maildir %s\n" % maildir, "me": "mx.example.org",
             "rcpthosts": "example.com", "spool_dir": os.path.join(root, name + "-spool")}
    files.update(extra)
    for item, text in files.items():
        with open(os.path.join(config, item), "w") as f:
            f.write(text + "\n")
    return config, maildir


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--per-connection", type=int, default=1)
    p.add_argument("--messages", type=int, default=2000)
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="qptx-maxip-bench-")
    redis = start_redis()
    servers = []
    ok = True
    try:
        for name, extra, helper in (("local", {}, None),
                                    ("redis", {"max_from_ip_redis": redis.url}, redis.process)):
            config, maildir = write_config(root, name, extra)
            port = free_port()
            process = start([TWISTD, "-n", "--pidfile=", "qpsmtpd-tx", "--config", config,
                             "--no-rdns", "--max-from-ip", "1000", "--limit-connections", "0",
                             "--listen", "tcp:%d:interface=127.0.0.1" % port], root, name, port)
            servers.append((name, port, process, maildir, helper))
        results = {name: [] for name, _, _, _, _ in servers}
        for _ in range(a.rounds):
            for name, port, process, maildir, helper in servers:
                r, cpu, hcpu, got = load_run(port, a, process, helper, maildir)
                if got != r["accepted"] or r["failed"]:
                    ok = False
                    print("!! %s: %d accepted, %d failed, %d delivered"
                          % (name, r["accepted"], r["failed"], got))
                connections = r["accepted"] / a.per_connection
                results[name].append((r["msgs_per_s"], 1000 * cpu / connections,
                                      1000 * hcpu / connections))
    finally:
        for _, _, process, _, _ in servers:
            stop_process(process)
        redis.stop()
    print_table(a, results, ("count", "msgs/s", "server ms CPU/conn", "redis ms CPU/conn"))
    shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
