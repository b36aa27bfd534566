#!/usr/bin/env python3
"""Can the tests' DNS relay (tests/support/dns_shaper.py) keep up with a benchmark?

    python bench/dns_relay_load.py [--delay SECONDS] [--seconds N] RATE [RATE ...]

As root (the private NSD listens on port 53): starts the suite's private NSD and relay
(tests/support/dns.py), sets a zone with a delay of ``--delay`` seconds (default 0.2) on the
relay, then for each RATE sends that many A queries a second over UDP for ``--seconds``
(default 5) from one socket, and reports how many were answered, their mean latency and the
relay's CPU over the run.

Measured (2 shared cores, 200 ms delay, 5 s each): 1,000, 3,000, 6,000 and 10,000 queries/s
all answered, mean latency 201-206 ms, the relay at 11 %, 14 %, 24 % and 34-47 % of a core
(two runs); at 20,000/s 82 % were answered (this one-process client and the kernel buffers
are the limit as much as the relay).
"""

import argparse
import os
import select
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tests.support.dns import private_dns  # noqa: E402
from tests.support.dns_query import question  # noqa: E402


def cpu_seconds(pid):
    """User + system CPU seconds of process ``pid``."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(address, name, rate, seconds, relay_pid):
    """Send ``rate`` queries a second for ``seconds``; print what came back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setblocking(False)
    body = question(name, "A", 0)[1][2:]
    total = int(rate * seconds)
    sent = answered = 0
    latency = 0.0
    sent_at = {}
    start, cpu_start = time.monotonic(), cpu_seconds(relay_pid)
    while True:
        now = time.monotonic()
        while sent < min(total, int((now - start) * rate)):
            sock.sendto(struct.pack("!H", sent & 0xFFFF) + body, (address, 53))
            sent_at[sent & 0xFFFF] = time.monotonic()
            sent += 1
        if select.select([sock], [], [], 0.001)[0]:
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                answered += 1
                latency += time.monotonic() - sent_at.get(struct.unpack("!H", data[:2])[0], now)
        if sent >= total and (answered >= total or now - start > seconds + 2):
            break
    elapsed = time.monotonic() - start
    sock.close()
    print("%6d queries/s: sent %d, answered %d (%.1f %%), mean latency %.0f ms, relay CPU %.0f %%"
          % (rate, sent, answered, 100.0 * answered / sent, 1000 * latency / max(answered, 1),
             100 * (cpu_seconds(relay_pid) - cpu_start) / elapsed))


def main():
    """Parse the command line, start the private DNS, run each rate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rates", nargs="+", type=int, metavar="RATE")
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    dns = private_dns()
    zone = dns.set_zone(dns.unique_zone("load"), [("www", "A", "192.0.2.1")])
    dns.set_delay(zone, args.delay)
    for rate in args.rates:
        run(dns.shaped_address, "www." + zone, rate, args.seconds, dns.relay_process.pid)
    print("relay:", dns.shaper_stats())


if __name__ == "__main__":
    main()
