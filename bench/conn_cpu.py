#!/usr/bin/env python3
"""CPU of a whole SMTP connection in one process, without sockets or a load generator.

A server on run.py's short chain (``count_unrecognized_commands``, ``relay``, ``badmailfrom``,
``badrcptto``, ``rcpt_ok``; the queue is the tests' ``scripted queue OK``, so no disk and no
delivery threads) with reverse DNS on (the suite's private NSD, a warm cache) and
``--max-from-ip 60`` as in run.py, is fed smtpload's 10 KiB message through an in-memory
client (the real protocol, session and plugins; Twisted's TCP transport is not in it). Each
connection is what smtpload does at 1 message per connection: connect, EHLO, a pipelined
MAIL/RCPT/DATA, the body, QUIT, the close.

Reported, CPU microseconds (``time.process_time``): per connection with one message, per
message at ``--per-connection`` messages (40), and their difference, the connection's own
cost; per round and the least of the rounds. Python calls per connection come from a
cProfile pass (exact, whatever the machine's load). ``--tree DIR`` runs another checkout's
qpsmtpd_tx (a ``git worktree`` of an older commit) for an A/B; alternate the trees.

    python3 bench/conn_cpu.py [--connections 3000] [--rounds 3] [--tree DIR]
"""

import argparse
import cProfile
import os
import pstats
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: run.py's short chain with a queue that answers at once
CHAIN = ["count_unrecognized_commands 4", "relay", "badmailfrom", "badrcptto", "rcpt_ok",
         "scripted queue OK"]


def make_bench_server(case, dns):
    """The server: CHAIN, run.py's config files, reverse DNS through ``dns``."""
    from qpsmtpd_tx.testing import make_server
    files = {"me": "bench.example", "rcpthosts": "example.com",
             "badmailfrom": "spammer@bad.example\n@spamdomain.example",
             "badrcptto": "blocked@example.com", "loglevel": "4",
             "dns_servers": dns.address}
    return make_server(case, CHAIN, files, reverse_dns=True, max_conn_ip=60,
                       plugin_dirs=[os.path.join(ROOT, "tests", "fixture_plugins")])


class Dialogue:
    """smtpload's client, in memory: ``connection(messages)`` runs one whole connection."""

    def __init__(self, server, size):
        import smtpload
        self.server = server
        head, tail = smtpload.build_message_parts(size, "bench@example.net", "user@example.com")
        self.body = smtpload.dot_stuff(head + b"0000000001" + tail) + b".\r\n"
        self.envelope = b"MAIL FROM:<bench@example.net>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n"

    def connection(self, messages):
        """Connect, EHLO, ``messages`` messages, QUIT, close; raises if a reply is wrong."""
        from twisted.internet import reactor
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure
        from qpsmtpd_tx.testing import MemoryClient
        client = MemoryClient(self.server, remote_ip="127.0.0.1")
        while not client.greeting:                 # a cold DNS cache: the PTR answer comes later
            reactor.iterate(0.005)
            client.greeting = client.take()
        _expect(client.greeting, [220])
        _expect(client.command("EHLO smtpload.example"), [250])
        for _ in range(messages):
            _expect(client.send(self.envelope), [250, 250, 354])
            _expect(client.send(self.body), [250])
        _expect(client.command("QUIT"), [221])
        client.protocol.connectionLost(Failure(ConnectionDone()))


def _expect(reply, codes):
    from qpsmtpd_tx.testing import codes_of
    if codes_of(reply) != codes:
        raise RuntimeError("expected %s, got %r" % (codes, reply))


def cpu_per_connection(dialogue, connections, messages):
    """CPU µs per connection of ``connections`` connections of ``messages`` messages."""
    for _ in range(20):
        dialogue.connection(messages)            # warm: DNS cache, plugin config caches
    start = time.process_time()
    for _ in range(connections):
        dialogue.connection(messages)
    return (time.process_time() - start) / connections * 1e6


def calls_per_connection(dialogue, connections, top):
    """Python calls per connection (cProfile) and the ``top`` functions by calls."""
    dialogue.connection(1)                       # warm the DNS cache
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(connections):
        dialogue.connection(1)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = sorted(((nc / connections, "%s:%d(%s)" % (os.path.basename(f), line, name))
                   for (f, line, name), (cc, nc, tt, ct, callers) in stats.stats.items()),
                  reverse=True)
    if os.environ.get("CONN_CPU_PROFILE"):
        stats.dump_stats(os.environ["CONN_CPU_PROFILE"])
    return stats.total_calls / connections, rows[:top]


def main():
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=3000)
    p.add_argument("--per-connection", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--top", type=int, default=0, help="list the top functions by calls")
    p.add_argument("--tree", default=ROOT, help="the checkout whose qpsmtpd_tx runs")
    a = p.parse_args()
    sys.path[:0] = [os.path.abspath(a.tree), HERE, ROOT]
    import qpsmtpd_tx
    from auth_cpu import _Case
    from tests.support.dns import private_dns
    print("qpsmtpd_tx from %s" % os.path.dirname(os.path.dirname(qpsmtpd_tx.__file__)))
    case = _Case()
    try:
        dialogue = Dialogue(make_bench_server(case, private_dns()), a.size)
        calls, top = calls_per_connection(dialogue, 200, a.top)
        print("Python calls per connection (1 message): %.0f" % calls)
        for count, name in top:
            print("%8.1f  %s" % (count, name))
        best = None
        many = a.per_connection
        for round_ in range(a.rounds):
            one = cpu_per_connection(dialogue, a.connections, 1)
            per_message = cpu_per_connection(dialogue, max(a.connections // many, 20), many) / many
            costs = (one, per_message, one - per_message)
            best = costs[:2] if best is None else (min(best[0], one), min(best[1], per_message))
            print("round %d: %s" % (round_ + 1, _line(costs, many)))
        print("least of %d rounds: %s" % (a.rounds, _line(best + (best[0] - best[1],), many)))
    finally:
        case.close()


def _line(costs, many):
    return ("1 message per connection %.0f µs, per message at %d per connection %.0f µs, "
            "the connection itself %.0f µs" % (costs[0], many, costs[1], costs[2]))


if __name__ == "__main__":
    main()
