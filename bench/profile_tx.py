#!/usr/bin/env python3
"""Where qpsmtpd-tx's CPU goes per message: a cProfile of the server under bench/ load.

Starts ``twistd --profile`` (cProfile, saved stats) on run.py's config (``--chain short`` or
``full``; or bench/bare_twisted.py with ``--server twisted``), sends ``--messages`` messages with smtpload.py (50 clients × 40 messages per
connection, 10 KiB, by default), stops the server with SIGTERM so that it writes its
profile, and prints:

- Python function calls per message (the profiler's count: steady from run to run, unlike
  time on a shared machine) and the profiled CPU per message;
- the top functions by own time and by calls, each with calls per message.

cProfile slows the server several times over, so the times are only shares; the call counts
are exact. ``--tree DIR`` profiles another checkout (for a before/after); ``--save FILE``
keeps the raw profile for pstats (callers, callees).

    .venv/bin/python bench/profile_tx.py [--messages 4000] [--top 30] [--tree DIR]
"""

import argparse
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  (bench/run.py: config, server command, load)


def profile(kind, tree, chain, messages, per_connection, concurrency, size, save=None):
    """Run server ``kind`` ('tx' or 'twisted') under cProfile for ``messages`` messages;
    (pstats.Stats, load result). ``save``: also copy the raw profile to this file."""
    root = tempfile.mkdtemp(prefix="qpprof-")
    try:
        conf = run.make_config(root, False, None, (), chain)
        port = run.free_port()
        argv, env, cwd = run.server_command(kind, conf, port, None, tx_root=tree)
        prof = os.path.join(root, "server.prof")
        if kind == "tx":
            argv[1:1] = ["--profile", prof, "--profiler", "cprofile", "--savestats"]
            argv[argv.index("--max-from-ip") + 1] = "0"
        else:
            argv[1:1] = ["-m", "cProfile", "-o", prof]
        with open(os.path.join(root, "server.log"), "wb") as log:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
            if not run.wait_ready(proc, port, timeout=60):
                raise SystemExit("the server did not start; see %s/server.log" % root)
            result = run.run_load(port, proc.pid, [
                "--messages", str(messages), "--per-connection", str(per_connection),
                "--concurrency", str(concurrency), "--size", str(size)], timeout=600)
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        if "error" in result:
            raise SystemExit(result["error"])
        if save:
            shutil.copy(prof, save)
        return pstats.Stats(prof), result
    finally:
        shutil.rmtree(root, True)


def report(stats, result, top):
    """Print calls and CPU per message, then the top functions."""
    sent = result.get("accepted", 0)
    if not sent:
        raise SystemExit("no message was accepted: %r" % result)
    print("messages accepted: %d" % sent)
    print("Python calls per message: %.0f (primitive %.0f)"
          % (stats.total_calls / sent, stats.prim_calls / sent))
    print("profiled CPU per message: %.3f ms (cProfile inflates this several times)"
          % (stats.total_tt * 1000 / sent))
    rows = []
    for (filename, line, name), (cc, nc, tt, ct, callers) in stats.stats.items():
        short = filename.replace(os.path.dirname(HERE) + "/", "")
        for marker in ("site-packages/", "lib/python3"):
            if marker in short:
                short = short.split(marker, 1)[1]
        rows.append(("%s:%d(%s)" % (short, line, name), nc / sent, tt * 1e6 / sent, ct * 1e6 / sent))
    for title, key in (("own time", 2), ("calls", 1)):
        print("\ntop %d by %s: calls/msg  own µs/msg  cumulative µs/msg  function" % (top, title))
        for row in sorted(rows, key=lambda r: -r[key])[:top]:
            print("%9.1f %10.1f %12.1f  %s" % (row[1], row[2], row[3], row[0]))


def main():
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=4000)
    p.add_argument("--per-connection", type=int, default=40)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--chain", choices=sorted(run.CHAINS), default="short")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--tree", default=run.ROOT, help="the checkout to profile (this one)")
    p.add_argument("--server", choices=("tx", "twisted"), default="tx",
                   help="qpsmtpd-tx, or bench/bare_twisted.py for the floor (tx)")
    p.add_argument("--save", metavar="FILE", help="keep the raw profile (for pstats) in FILE")
    a = p.parse_args()
    stats, result = profile(a.server, os.path.abspath(a.tree), a.chain, a.messages, a.per_connection,
                            a.concurrency, a.size, a.save)
    report(stats, result, a.top)


if __name__ == "__main__":
    main()
