#!/usr/bin/env python3
"""recipient_policy benchmark (issue 14): one message to 10 recipients in 3 settings groups,
50 clients, spamassassin with the suite's private spamd; ``split`` beside ``strictest`` (one
scan, everyone gets the strictest threshold) and ``group`` (452 4.5.3 for the recipients
whose settings differ: three transactions per message), one server start each, one run.

The recipients ``r0``…``r9@example.com`` get their thresholds from the ``aliases`` file:
r0-r3 5, r4-r6 10, r7-r9 20. The message is ham (spamd scores it about 0), so every
policy delivers it to all ten: what differs is the work. The load generator here (asyncio,
standard library) sends MAIL, the ten RCPTs and DATA, and, as an RFC 5321 client does,
sends the recipients answered ``452`` again in a new transaction on the same connection
until all ten are delivered; a message counts once, when its last recipient is. spamd is
reached through a counting proxy in this process: scans per message are measured, not
assumed. ``split`` must cost no more than one scan per distinct setting of the scanner
(spamassassin: one scan per message, whatever the thresholds).

    python3 bench/split_bench.py [--duration 15] [--concurrency 50] [--per-connection 20]
"""

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import run as bench  # noqa: E402  (configs, server commands, readiness)
from tests.support.spamd import shared_spamd  # noqa: E402

RECIPIENTS = ["r%d@example.com" % i for i in range(10)]
ALIASES = "".join("r%d@example.com  spamassassin_reject_threshold=%d\n"
                  % (i, 5 if i < 4 else 10 if i < 7 else 20) for i in range(10))
MESSAGE = (b"From: sender@client.example\r\nTo: undisclosed-recipients:;\r\n"
           b"Subject: minutes of the meeting\r\n\r\n"
           + b"The minutes of Tuesday's meeting are below; nothing to decide.\r\n" * 60)


class CountingProxy:
    """Forwards TCP connections to ``port``; ``count`` is how many were made (spamd scans)."""

    def __init__(self, port):
        self.target = port
        self.count = 0

    async def start(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def handle(self, reader, writer):
        self.count += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(src, dst):
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
            finally:
                if dst.can_write_eof():
                    dst.write_eof()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer),
                             return_exceptions=True)
        writer.close()
        up_writer.close()


async def reply(reader):
    """The code of one (multi-line) SMTP reply."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def deliver(reader, writer, stats):
    """One message to the ten recipients, retrying 452 recipients as a client would."""
    pending = list(RECIPIENTS)
    while pending:
        writer.write(b"MAIL FROM:<sender@client.example>\r\n"
                     + b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in pending) + b"DATA\r\n")
        if await reply(reader) != 250:
            raise RuntimeError("MAIL refused")
        codes = [await reply(reader) for _ in pending]
        taken = [r for r, c in zip(pending, codes) if c == 250]
        if await reply(reader) != 354:
            raise RuntimeError("DATA refused")     # RFC 2920: no recipient, 554
        writer.write(MESSAGE + b".\r\n")
        if await reply(reader) != 250:
            raise RuntimeError("message refused")
        stats["transactions"] += 1
        pending = [r for r, c in zip(pending, codes) if c == 452]
        if not taken and pending:
            raise RuntimeError("no recipient taken")
    stats["messages"] += 1


async def client(port, deadline, per_connection, stats):
    while time.monotonic() < deadline:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await reply(reader)
            writer.write(b"EHLO client.example\r\n")
            await reply(reader)
            for _ in range(per_connection):
                if time.monotonic() >= deadline:
                    break
                await deliver(reader, writer, stats)
            writer.write(b"QUIT\r\n")
            await reply(reader)
        except (RuntimeError, ConnectionError) as e:
            stats["errors"] += 1
            stats["last_error"] = str(e)
        finally:
            writer.close()


async def load(port, proxy, a):
    stats = {"messages": 0, "transactions": 0, "errors": 0}
    scans_before = proxy.count
    started = time.monotonic()
    await asyncio.gather(*[client(port, started + a.duration, a.per_connection, stats)
                           for _ in range(a.concurrency)])
    stats["seconds"] = time.monotonic() - started
    stats["scans"] = proxy.count - scans_before
    return stats


def start_server(root, policy, spamd_port, a):
    conf = bench.make_config(root, False, None, chain="short")
    maildir = os.path.join(root, "maildir")
    bench.write_config_files(conf, {
        "plugins": "\n".join(["aliases aliases", "rcpt_ok",
                              "spamassassin spamd_socket 127.0.0.1:%d" % spamd_port,
                              "queue/maildir %s" % maildir]),
        "aliases": ALIASES, "recipient_policy": policy})
    proc, port, log = bench.start_tx(conf, a.concurrency + 20)
    return proc, port, log, maildir


async def main_async(a):
    spamd = shared_spamd()
    proxy = CountingProxy(spamd.port)
    proxy_port = await proxy.start()
    rows = []
    for policy in ("split", "strictest", "group"):
        root = tempfile.mkdtemp(prefix="qpsplitbench-%s-" % policy)
        try:
            proc, port, log, maildir = await asyncio.to_thread(
                start_server, root, policy, proxy_port, a)
            try:
                stats = await load(port, proxy, a)
            finally:
                await asyncio.to_thread(bench.stop_server, proc)
                log.close()
            stats["files"] = bench.count_new(maildir)
            rows.append((policy, stats))
        finally:
            shutil.rmtree(root, True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--per-connection", type=int, default=20)
    a = p.parse_args()
    rows = asyncio.run(main_async(a))
    for policy, s in rows:
        msgs = s["messages"]
        print("%-9s %7.1f msgs/s  %6d messages  %6d transactions (%.2f/msg)  %6d spamd scans "
              "(%.2f/msg)  %6d Maildir files  %d errors%s" % (
                  policy, msgs / s["seconds"], msgs, s["transactions"],
                  s["transactions"] / max(msgs, 1), s["scans"], s["scans"] / max(msgs, 1),
                  s["files"], s["errors"],
                  " (%s)" % s["last_error"] if s["errors"] else ""))
    by = dict(rows)
    if by["strictest"]["messages"] and by["group"]["messages"]:
        rate = {k: v["messages"] / v["seconds"] for k, v in by.items()}
        print("split/strictest %.2f   split/group %.2f   split scans/msg %.2f (target <= 1: "
              "spamassassin scores once per message)" % (
                  rate["split"] / rate["strictest"], rate["split"] / rate["group"],
                  by["split"]["scans"] / max(by["split"]["messages"], 1)))


if __name__ == "__main__":
    main()
