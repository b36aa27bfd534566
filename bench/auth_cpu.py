#!/usr/bin/env python3
"""CPU of the email-authentication plugins per message, in one process, without sockets or
a load generator: a server on a temporary config (qpsmtpd_tx.testing's real server, config
reader and plugins) is fed auth_bench's signed 10 KiB message through an in-memory client,
many messages per connection, with a warm DNS cache (keys, SPF and DMARC records on the
suite's private NSD). The queue is the tests' ``scripted queue OK`` (no disk), so what is
measured is the SMTP core and the chain.

Reported: CPU microseconds per message (``time.process_time``) of the chain without the
checks (plain), and what ``sender_permitted_from`` (spf), ``dkim`` and ``dmarc`` add to it, per
round and the least of the rounds (the least is the least disturbed by other processes). Less noisy than auth_bench.py on a shared machine (no client, no threads, no wall
clock), so it suits A/B comparisons: ``--tree`` runs another checkout's qpsmtpd_tx (e.g. a
``git worktree`` of an older commit) with this script; alternate the trees.

``--instructions`` counts instead of timing: each chain runs under valgrind's callgrind
twice (100 and 600 messages, in new processes) and the difference, per message, is printed:
the same from run to run whatever else the machine does (all runs sign with one key, use one
hash seed, the one private NSD this process starts and fills before them, and modules
compiled once into a cache before them), so a change of a few thousand instructions per
message shows (valgrind must be installed).

    python3 bench/auth_cpu.py [--messages 3000] [--rounds 3] [--tree DIR] [--instructions]
                              [--key-dir DIR]
"""

import argparse
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class _Case:
    """What make_server needs of a test case."""

    def __init__(self):
        self.cleanups = []
        self.root = tempfile.mkdtemp(prefix="qpauthcpu-")

    def mktemp(self):
        return tempfile.mkdtemp(dir=self.root)

    def addCleanup(self, function, *args):
        self.cleanups.append((function, args))

    def patch(self, obj, name, value):
        setattr(obj, name, value)

    def close(self):
        for function, args in reversed(self.cleanups):
            function(*args)
        shutil.rmtree(self.root, True)


def _message(size, key_dir=None):
    """``(DKIM-Signature field, message head, tail, key record)``; signed with a new key,
    or with the one kept in ``key_dir`` (made there by the first call that names it)."""
    import auth_bench
    import smtpload
    work = key_dir or tempfile.mkdtemp(prefix="qpauthcpu-key-")
    try:
        kept = os.path.join(work, "record")
        if key_dir and os.path.exists(kept):
            prepend = os.path.join(work, "prepend")
            with open(kept) as f:
                record = f.read()
        else:
            prepend, record = auth_bench.signed_prepend(work, size)
            with open(kept, "w") as f:
                f.write(record)
        with open(prepend, "rb") as f:
            field = f.read()
    finally:
        if not key_dir:
            shutil.rmtree(work, True)
    head, tail = smtpload.build_message_parts(size, auth_bench.SENDER, "user@example.com")
    return field, head, tail, record


def run(plugins, dns, parts, messages):
    """CPU µs per message of ``messages`` messages through ``plugins``."""
    from twisted.internet import reactor
    from qpsmtpd_tx.testing import MemoryClient, make_server
    import auth_bench
    import smtpload
    field, head, tail, _ = parts
    case = _Case()
    try:
        server = make_server(case, ["rcpt_ok"] + plugins + ["scripted queue OK"],
                             {"dns_servers": dns.address, "rcpthosts": "example.com"},
                             plugin_dirs=[os.path.join(ROOT, "tests", "fixture_plugins")])
        client = MemoryClient(server, remote_ip="127.0.0.1")
        client.command("EHLO smtpload.example")

        def one(seq):
            reply = client.command("MAIL FROM:<%s>" % auth_bench.SENDER)
            while not reply:                     # a cold cache: the DNS answers later
                reactor.iterate(0.005)
                reply = client.take()
            client.command("RCPT TO:<user@example.com>")
            client.command("DATA")
            reply = client.send(smtpload.dot_stuff(field + head + b"%010d" % seq + tail)
                                + b".\r\n")
            while not reply:
                reactor.iterate(0.005)
                reply = client.take()
            if not reply.startswith("250"):
                raise RuntimeError("message refused: %r" % reply)

        for seq in range(5):                     # warm the DNS cache
            one(seq)
        start = time.process_time()
        for seq in range(messages):
            one(seq + 5)
        return (time.process_time() - start) / messages * 1e6
    finally:
        case.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--tree", default=ROOT, help="the checkout whose qpsmtpd_tx runs")
    p.add_argument("--chains", default="plain,spf,dkim,dkim+dmarc,spf+dkim+dmarc",
                   help="which chains to run (names as reported)")
    p.add_argument("--key-dir", help="sign with the key kept in this directory (made there "
                   "if it is not yet): --instructions' runs share one")
    p.add_argument("--instructions", action="store_true",
                   help="count instructions per message with callgrind instead of timing")
    p.add_argument("--dns-address", help=argparse.SUPPRESS)   # --instructions' runs: see there
    a = p.parse_args()
    if a.instructions:
        return count_instructions(a)
    sys.path[:0] = [os.path.abspath(a.tree), HERE, ROOT]
    import qpsmtpd_tx                   # first: auth_bench puts this checkout on the path
    parts = _message(a.size, a.key_dir)
    dns = _Published(a.dns_address) if a.dns_address else _publish(parts[3])
    names = {"spf": "sender_permitted_from", "dkim": "dkim", "dmarc": "dmarc"}
    chains = [(chain, [] if chain == "plain" else [names[n] for n in chain.split("+")])
              for chain in a.chains.split(",")]
    print("qpsmtpd_tx from %s" % os.path.dirname(os.path.dirname(qpsmtpd_tx.__file__)))
    best = {}
    for round_ in range(a.rounds):
        costs = {name: run(plugins, dns, parts, a.messages) for name, plugins in chains}
        for name, cost in costs.items():
            best[name] = min(best.get(name, cost), cost)
        print("round %d: %s" % (round_ + 1, _line(costs)))
    print("least of %d rounds: %s" % (a.rounds, _line(best)))


class _Published:
    """The private NSD another process started and published the zones on: its address."""

    def __init__(self, address):
        self.address = address


def _publish(record):
    """Start the suite's private NSD and publish what the checks look up (DKIM key TXT
    ``record``); returns it (``.address``)."""
    import auth_bench
    from tests.support.dns import private_dns
    dns = private_dns()
    # a day's TTL: a run under callgrind lasts minutes, and records expiring in it made
    # the counts depend on the machine's speed (lookups went cold, the loop waited)
    auth_bench.publish_zones(dns, record, ttl=86400)
    return dns


def count_instructions(a, few=100, many=600):
    """Print each chain's user-space instructions per message: callgrind's total for
    ``many`` messages less its total for ``few``, over the difference (start-up and key
    loading cancel out)."""
    print("qpsmtpd_tx from %s" % os.path.abspath(a.tree))
    counts = {}
    # One key for every run, and a fixed hash seed: a key made per process (its primes
    # searched at random) and dict and set layouts varying with the seed moved a chain's
    # count by several thousand instructions per message between runs of the same code.
    key_dir = a.key_dir or tempfile.mkdtemp(prefix="qpauthcpu-key-")
    if not a.key_dir:
        atexit.register(shutil.rmtree, key_dir, True)
    a.key_dir = key_dir
    # The DNS server is started and its zones published here, once, outside callgrind: in
    # each counted process, its start and the polling until each zone was served took as many
    # instructions as the wall clock made them take.
    sys.path[:0] = [HERE, ROOT]
    a.dns_address = _publish(_message(a.size, key_dir)[3]).address
    a.pycache = tempfile.mkdtemp(prefix="qpauthcpu-pycache-")
    atexit.register(shutil.rmtree, a.pycache, True)
    for chain in a.chains.split(","):
        _compile_modules(a, chain)
        totals = [_callgrind_total(a, chain, n) for n in (few, many)]
        counts[chain] = (totals[1] - totals[0]) / (many - few)
        print("%s: %.0f k instructions per message" % (chain, counts[chain] / 1e3), flush=True)
    print("instructions: " + ", ".join(
        "%s %.0f k" % (name, n / 1e3) if name == "plain" else
        "%s +%.0f k" % (name, (n - counts.get("plain", 0)) / 1e3) for name, n in counts.items()))


def _child_env(a):
    """The counted processes' environment: one hash seed, and compiled modules kept in a
    cache of this run's (``a.pycache``, not the checkout).

    With ``PYTHONDONTWRITEBYTECODE`` set (as in some shells and CI), every counted process
    compiled the whole checkout from source: ~675 M instructions each, 40 % of a run's time."""
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPYCACHEPREFIX=a.pycache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _child_argv(a, chain, messages):
    return [sys.executable, os.path.abspath(__file__), "--chains", chain, "--messages",
            str(messages), "--rounds", "1", "--size", str(a.size), "--tree", a.tree,
            "--key-dir", a.key_dir, "--dns-address", a.dns_address]


def _compile_modules(a, chain):
    """Run ``chain`` once for a few messages outside callgrind: every module it imports is
    compiled into the run's cache before the counted runs."""
    done = subprocess.run(_child_argv(a, chain, 5), capture_output=True, text=True,
                          env=_child_env(a))
    if done.returncode:
        raise SystemExit("run failed:\n" + done.stdout + done.stderr)


def _callgrind_total(a, chain, messages):
    root = tempfile.mkdtemp(prefix="qpauthcpu-cg-")
    try:
        out = os.path.join(root, "callgrind.out")
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + _child_argv(
            a, chain, messages)
        done = subprocess.run(argv, capture_output=True, text=True, env=_child_env(a))
        if done.returncode:
            raise SystemExit("callgrind run failed:\n" + done.stdout + done.stderr)
        sys.path.insert(0, HERE)
        import instructions
        return instructions.dump_total(out)
    finally:
        shutil.rmtree(root, True)


def _line(costs):
    """``plain N µs, chain +M, …`` (CPU µs per message; the chains less plain)."""
    plain = costs.get("plain", 0)
    return ", ".join("%s %.0f µs" % (name, cost) if name == "plain" else
                     "%s +%.0f" % (name, cost - plain) for name, cost in costs.items())


if __name__ == "__main__":
    main()
