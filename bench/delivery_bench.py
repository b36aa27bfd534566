#!/usr/bin/env python3
"""The Maildir hand-off alone (issue 15): deliveries through ``qpsmtpd_tx.syncer.SYNCER``'s
``deliver`` with no SMTP around them, for this checkout and ``--tree`` others, interleaved.

Each round starts, per checkout, a fresh Python process that keeps ``--inflight`` deliveries
of ``--size`` bytes going into a new Maildir under ``--dir`` (default: the system temp dir;
``/dev/shm`` takes the disk out) until ``--messages`` are done, and prints deliveries per
second, the CPU per delivery of the process (getrusage) and of its delivery child, if the
checkout has one (/proc; its start-up not included), the voluntary context switches per
delivery of each (the child's summed over its threads) and the deliveries per batch. With
``--inflight 1`` (or a few) the batches are as small as at one message per connection.

    .venv/bin/python bench/delivery_bench.py --tree /tmp/old-checkout [--rounds 3]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: the program a round runs, with the checkout on PYTHONPATH
WORKER = r'''
import os, resource, sys, tempfile, time
from twisted.internet import defer, task
from qpsmtpd_tx.maildir import make_maildir
from qpsmtpd_tx.syncer import Syncer

def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime

def child_cpu(syncer):
    child = getattr(syncer, "_child", None)    # the delivery child, if this checkout has one
    if child is None:
        return 0.0
    with open("/proc/%d/stat" % child.transport.pid, "rb") as f:
        v = f.read().rsplit(b")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")

def child_switches(syncer):
    """Voluntary context switches of the delivery child, all its threads."""
    child = getattr(syncer, "_child", None)
    if child is None:
        return 0
    total, tasks = 0, "/proc/%d/task" % child.transport.pid
    for task_id in os.listdir(tasks):
        try:
            with open("%s/%s/status" % (tasks, task_id)) as f:
                total += sum(int(line.split()[1]) for line in f
                             if line.startswith("voluntary_ctxt_switches"))
        except OSError:
            pass      # a thread that ended meanwhile
    return total

def own_switches():
    return resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw

async def main(reactor, messages, inflight, size, base):
    syncer = Syncer()
    maildir = tempfile.mkdtemp(dir=base)
    make_maildir(maildir, 0o700)
    message = [b"Subject: x\n\n", b"x" * size]
    started, finished, done = [0], [0], defer.Deferred()
    def start():
        if started[0] < messages:
            started[0] += 1
            syncer.deliver(maildir, 0o700, message).addCallback(delivered)
    def delivered(_):
        finished[0] += 1
        if finished[0] == messages:
            done.callback(None)
        start()
    await syncer.deliver(maildir, 0o700, message)      # threads or child started
    own, kids, t0 = cpu(resource.RUSAGE_SELF), child_cpu(syncer), time.time()
    own_cs, kids_cs = own_switches(), child_switches(syncer)
    for _ in range(inflight):
        start()
    await done
    elapsed = time.time() - t0
    own, kids = cpu(resource.RUSAGE_SELF) - own, child_cpu(syncer) - kids
    own_cs, kids_cs = own_switches() - own_cs, child_switches(syncer) - kids_cs
    batches = syncer.batches
    if hasattr(syncer, "close"):
        await syncer.close()
    print("%.0f %.3f %.3f %.2f %.2f %.1f" % (
        messages / elapsed, own / messages * 1e3, kids / messages * 1e3, own_cs / messages,
        kids_cs / messages, messages / max(batches, 1)))

n, inflight, size = (int(v) for v in sys.argv[1:4])
task.react(lambda reactor: defer.ensureDeferred(main(reactor, n, inflight, size, sys.argv[4])))
'''


def one_round(tree, a, base):
    """(deliveries/s, own CPU ms, children's CPU ms, own and children's voluntary context
    switches, deliveries per batch) per delivery for checkout ``tree``."""
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run([sys.executable, "-c", WORKER, str(a.messages), str(a.inflight),
                          str(a.size), base], env=env, cwd=tree, capture_output=True,
                         text=True, timeout=600)
    if out.returncode:
        raise SystemExit("%s failed:\n%s" % (tree, out.stderr))
    return [float(v) for v in out.stdout.split()]


def main():
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", default=[],
                   help="another checkout to compare (repeatable)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--inflight", type=int, default=50)
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where the Maildirs go")
    a = p.parse_args()
    trees = [ROOT] + [os.path.abspath(t) for t in a.tree]
    # Every round's Maildir is kept until the end: ext4 skips the inodes freed in the last
    # 30 s or so when it allocates one, scanning past each of them (find_inode_bit /
    # recently_deleted), so a round run just after another's files were deleted paid several
    # times the CPU per file created.
    base = tempfile.mkdtemp(prefix="delivery-bench-", dir=a.dir)
    try:
        run_rounds(trees, a, base)
    finally:
        shutil.rmtree(base)


def run_rounds(trees, a, base):
    """Run the rounds, each checkout in turn, printing a line per run."""
    print("round  checkout  deliveries/s  own CPU ms  children CPU ms  total ms  own cs  "
          "children cs (per delivery)  deliveries per batch")
    for n in range(a.rounds):
        for tree in trees:
            rate, own, kids, own_cs, kids_cs, per_batch = one_round(tree, a, base)
            print("%5d  %s  %7.0f  %7.3f  %7.3f  %7.3f  %6.2f  %6.2f  %6.1f" % (
                n + 1, tree, rate, own, kids, own + kids, own_cs, kids_cs, per_batch),
                flush=True)


if __name__ == "__main__":
    main()
