#!/usr/bin/env python3
"""Instructions per message of a server under smtpload's load, counted by valgrind's callgrind:
the same from run to run whatever else the machine runs (CPU time on a shared 2-core machine
varies by 10 % and more), so A/B comparisons of small changes can be read off one run each.

Starts the server under ``valgrind --tool=callgrind`` with counting off, warms it up with 30
messages, counts ``--messages`` messages (10 clients, ``--per-connection`` messages each,
10 KiB) and prints the user-space instructions per message (the kernel's work is not
counted). The chain is run.py's short one; ``queue/maildir`` is replaced by the tests'
``scripted queue OK`` unless ``--maildir`` (so the count is the SMTP path alone, without the
delivery threads). ``--server twisted`` counts bench/bare_twisted.py instead, ``--tree DIR``
another checkout. Slow (valgrind): a few hundred messages are enough.

    .venv/bin/python bench/instructions.py [--per-connection 1] [--messages 400] [--tree DIR]
"""

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  (bench/run.py: config, server command, load)


def count(kind, tree, messages, per_connection, maildir):
    """(instructions per message, messages accepted) of server ``kind`` on ``tree``."""
    root = tempfile.mkdtemp(prefix="qpinstr-")
    proc = None
    try:
        conf = run.make_config(root, False, None, (), "short")
        if not maildir:
            with open(os.path.join(conf, "plugins")) as f:
                plugins = [line for line in f.read().splitlines() if not line.startswith("queue/")]
            run.write_config_files(conf, {
                "plugins": "\n".join(plugins + ["scripted queue OK"]),
                "plugin_dirs": "%s/tests/fixture_plugins\n%s/plugins" % (tree, tree)})
        port = run.free_port()
        argv, env, cwd = run.server_command(kind, conf, port, None, tx_root=tree)
        out = os.path.join(root, "callgrind.out")
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                "--callgrind-out-file=%s.%%p" % out] + argv
        with open(os.path.join(root, "server.log"), "wb") as log:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        if not run.wait_ready(proc, port, timeout=300):
            raise SystemExit("the server did not start; see %s/server.log" % root)
        load = ["--per-connection", str(per_connection), "--concurrency", "10"]
        run.run_load(port, proc.pid, ["--messages", "30"] + load, timeout=600)
        control = ["callgrind_control", str(proc.pid)]
        subprocess.run(control[:1] + ["-i", "on"] + control[1:], capture_output=True, check=True)
        result = run.run_load(port, proc.pid, ["--messages", str(messages)] + load, timeout=900)
        subprocess.run(control[:1] + ["-d"] + control[1:], capture_output=True, check=True)
        subprocess.run(control[:1] + ["-i", "off"] + control[1:], capture_output=True)
        if "error" in result or result.get("failed"):
            raise SystemExit("the load failed: %r" % (result,))
        total = sum(dump_total(path) for path in glob.glob(out + ".*"))
        return total / result["accepted"], result["accepted"]
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, True)


def dump_total(path):
    """The instructions a callgrind dump counted (its ``totals:``/``summary:`` line)."""
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    return 0


def main():
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=400)
    p.add_argument("--per-connection", type=int, default=1)
    p.add_argument("--maildir", action="store_true", help="keep queue/maildir in the chain")
    p.add_argument("--tree", default=run.ROOT, help="the checkout to count (this one)")
    p.add_argument("--server", choices=("tx", "twisted"), default="tx")
    a = p.parse_args()
    per_message, sent = count(a.server, os.path.abspath(a.tree), a.messages, a.per_connection,
                              a.maildir)
    print("%s (%s), %d per connection: %d messages, %.3f M instructions per message"
          % (a.server, a.tree, a.per_connection, sent, per_message / 1e6))


if __name__ == "__main__":
    main()
