#!/usr/bin/env python3
"""SMTP load generator for comparing qpsmtpd-tx with Perl qpsmtpd.

Stdlib only (asyncio raw streams).  N concurrent clients each open a
connection, say EHLO and send ``--per-connection`` messages, then QUIT and
reconnect, until ``--messages`` have been attempted or ``--duration`` seconds
have passed (whichever comes first).  When the server advertises PIPELINING
(RFC 2920) the MAIL/RCPT/DATA group goes out in one write; the message body
and its final dot go out in a second write.

Every reply code is checked: a message counts as accepted only when MAIL and
RCPT got 2xx, DATA got 354 and the final dot got 2xx.  Anything else
(4xx/5xx, unexpected code, lost connection, timeout) is an error, counted by
stage and code.

Latency of a message is the time from writing MAIL to reading the reply to
the final dot.

``--latency`` runs one client sending messages one after another over a
single connection to an otherwise idle server: on servers that write each
reply separately this exposes the Nagle / delayed-ACK stall (~40 ms per
pipelined group on Linux).

``--server-pid`` samples the memory of that process and all its descendants
from /proc (so a forking server is charged for its children): peak summed
RSS and peak summed PSS (PSS splits shared copy-on-write pages fairly), and
counts their CPU (also of the server process alone, without its children, such
as qpsmtpd-tx's Maildir delivery child) and the voluntary context switches of
all their threads.
"""

import argparse
import asyncio
import functools
import json
import math
import os
import ssl
import sys
import threading
import time
from email.utils import formatdate

CRLF = b"\r\n"

# --------------------------------------------------------------------------
# message generation

_WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
    "tempor incididunt ut labore et dolore magna aliqua ut enim ad minim "
    "veniam quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea "
    "commodo consequat duis aute irure dolor in reprehenderit in voluptate"
).split()

#: width of the zero-padded sequence number in Message-ID (keeps size exact)
SEQ_WIDTH = 10


def _body_lines():
    """Yield an endless series of ~74-char body lines; some begin with '.'.

    Every 7th line begins with '.', every 29th is a lone '.', so that
    dot-stuffing (RFC 5321 4.5.2) is exercised in both directions.
    """
    i = 0
    w = 0
    while True:
        i += 1
        if i % 29 == 0:
            yield "."
            continue
        line = ".dot-led line " if i % 7 == 0 else ""
        while len(line) < 70:
            line += _WORDS[w % len(_WORDS)] + " "
            w += 1
        yield line.rstrip()


def build_message_parts(size, sender, rcpt):
    """Return (head, tail) so that ``head + b"%010d" % seq + tail`` is one message.

    The message (before dot-stuffing) is exactly ``size`` bytes with CRLF line
    endings: a few realistic headers, a blank line, then body lines of ~76
    bytes.  Only the Message-ID differs between messages.
    """
    head = (
        "From: Load Generator <{s}>\r\n"
        "To: <{r}>\r\n"
        "Subject: smtpload benchmark message\r\n"
        "Date: {d}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "X-Mailer: smtpload\r\n"
        "Message-ID: <".format(s=sender, r=rcpt, d=formatdate(localtime=True))
    ).encode("ascii")
    # fixed width, so that the body is the same whatever the process id
    mid_tail = ".{:07d}@smtpload.example>\r\n\r\n".format(os.getpid()).encode("ascii")
    room = size - len(head) - SEQ_WIDTH - len(mid_tail)
    if room < 8:
        raise ValueError("--size %d is too small for the headers" % size)
    body = bytearray()
    for line in _body_lines():
        line = line.encode("ascii") + CRLF
        if len(body) + len(line) > room:
            break
        body += line
    rest = room - len(body)
    if rest:  # pad to the exact size: one more line, or lengthen the last one
        if rest >= 3:
            body += b"x" * (rest - 2) + CRLF
        else:
            body[-2:] = b"x" * rest + CRLF
    return head, mid_tail + bytes(body)


def dot_stuff(data, line_start=True):
    """Dot-stuff CRLF text for the DATA phase (does not add the terminator).

    ``line_start``: ``data`` begins at the start of a line.
    """
    if line_start and data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")


def expected_body(size, sender, rcpt):
    """The message body (after the header/body blank line) as the server must store it."""
    head, tail = build_message_parts(size, sender, rcpt)
    return tail.split(b"\r\n\r\n", 1)[1]


# --------------------------------------------------------------------------
# server memory sampling


def _children_map():
    """Map ppid -> [pid] from /proc."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the comm field may contain spaces: ppid is the 2nd field after ')'
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _kib(path, key):
    """The number after ``key`` in a /proc file ('Key:   N kB': KiB), or 0."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid):
    """``pid`` and all its descendants (a list, ``pid`` first)."""
    kids = _children_map()
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(kids.get(p, ()))
    return seen


def tree_cpu(pid, descendants=True):
    """CPU seconds used so far by ``pid``, its live descendants and its reaped children (only
    by ``pid`` itself if not ``descendants``)."""
    ticks = 0
    for p in _descendants(pid) if descendants else [pid]:
        try:
            with open("/proc/%d/stat" % p, "rb") as f:
                v = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        ticks += int(v[11]) + int(v[12])  # utime stime
        if p == pid and descendants:
            ticks += int(v[13]) + int(v[14])  # cutime cstime (reaped children)
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_switches(pid):
    """Voluntary context switches so far of every thread of ``pid`` and its live descendants
    (a thread or process that ended meanwhile is not counted)."""
    total = 0
    for p in _descendants(pid):
        try:
            tasks = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for task in tasks:
            total += _kib("/proc/%d/task/%s/status" % (p, task), b"voluntary_ctxt_switches:")
    return total


def machine_cpu():
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(v) - v[3] - v[4]) / hz, sum(v) / hz


def tree_memory(pid):
    """Return (rss_kib, pss_kib, nprocs) summed over ``pid`` and its descendants."""
    seen = _descendants(pid)
    rss = pss = 0
    for p in seen:
        rss += _kib("/proc/%d/status" % p, b"VmRSS:")
        pss += _kib("/proc/%d/smaps_rollup" % p, b"Pss:")
    return rss, pss, len(seen)


class MemorySampler(threading.Thread):
    """Background thread recording peak tree RSS/PSS of a server process."""

    def __init__(self, pid, interval=0.25):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.idle = tree_memory(pid)
        self.peak_rss, self.peak_pss, self.peak_procs = self.idle
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(self.interval):
            self.sample()

    def sample(self):
        """Take one sample and update the peaks."""
        rss, pss, n = tree_memory(self.pid)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_procs = max(self.peak_procs, n)

    def stop(self):
        """Stop sampling (after one last sample)."""
        self._halt.set()
        self.join(2)
        self.sample()


# --------------------------------------------------------------------------
# the load


class SMTPError(Exception):
    """A reply that was not the one expected; ``key`` names stage and code."""

    def __init__(self, key, fatal=False):
        super().__init__(key)
        self.key, self.fatal = key, fatal


class Stats:
    """Shared counters and the message budget."""

    def __init__(self, messages, duration):
        self.left = messages  # None: unbounded
        self.deadline = time.monotonic() + duration if duration else None
        self.accepted = 0
        self.failed = 0
        self.errors = {}
        self.latencies = []
        self.cmd_phase = []  # MAIL written -> 354 read
        self.setup = []  # connect() called -> EHLO/HELO answered
        self.quit = []  # QUIT written -> 221 read
        self.first_message = []  # connect() called -> first message of the connection accepted

    def claim(self):
        """Reserve one more message to send; False when the budget is spent."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return False
        if self.left is not None:
            if self.left <= 0:
                return False
            self.left -= 1
        return True

    def error(self, key, message_failed=True):
        """Count one error event (and one failed message unless told otherwise)."""
        self.errors[key] = self.errors.get(key, 0) + 1
        if message_failed:
            self.failed += 1


@functools.lru_cache(maxsize=1)
def _client_tls_context():
    """A TLS client context that does not check the server's certificate (a benchmark's own)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Connection:
    """One SMTP client connection over asyncio streams."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.pipelining = False
        self.last_io = time.monotonic()

    async def reply(self, stage):
        """Read one (possibly multi-line) reply; return (code, lines)."""
        lines = []
        while True:
            line = await self.reader.readline()
            self.last_io = time.monotonic()
            if not line.endswith(b"\n"):
                raise SMTPError("%s: connection closed" % stage, fatal=True)
            lines.append(line)
            if line[3:4] != b"-":
                break
        try:
            code = int(line[:3])
        except ValueError:
            raise SMTPError("%s: garbled reply %r" % (stage, line[:40]), fatal=True)
        return code, lines

    async def expect(self, stage, want):
        """Read a reply and raise SMTPError unless its code is in ``want``."""
        code, lines = await self.reply(stage)
        if code not in want:
            raise SMTPError("%s %d" % (stage, code), fatal=code == 421)
        return lines

    def write(self, *chunks):
        """Queue bytes for sending (one write syscall when possible, one TLS record under
        STARTTLS: asyncio's TLS transport makes a record of each writelines() item)."""
        self.writer.write(b"".join(chunks))

    def abort(self):
        """Drop the connection at once."""
        self.writer.transport.abort()


class Load:
    """The load generator: workers, a watchdog and the final report."""

    #: the reply each command of the transaction must get
    WANT = {"MAIL": (250,), "RCPT": (250, 251), "DATA": (354,)}

    def __init__(self, args):
        self.a = args
        self.stats = Stats(args.messages, args.duration)
        head, tail = build_message_parts(args.size, args.mail_from, args.rcpt)
        if args.prepend:
            with open(args.prepend, "rb") as f:
                head = f.read() + head
        self.head, self.tail = dot_stuff(head), dot_stuff(tail, line_start=False) + b".\r\n"
        self.group = [
            b"MAIL FROM:<%s>\r\n" % args.mail_from.encode(),
            b"RCPT TO:<%s>\r\n" % args.rcpt.encode(),
            b"DATA\r\n",
        ]
        self.seq = 0
        self.conns = set()
        self.sources = _source_addresses(args.source_net) if args.source_net else None
        if args.sender_domains:
            local, _, domain = args.mail_from.partition("@")
            self.senders = [b"MAIL FROM:<%s@s%d.%s>\r\n" % (local.encode(), n, domain.encode())
                            for n in range(args.sender_domains)]
        else:
            self.senders = None

    async def connect(self):
        """Open a connection, read the greeting, say EHLO (HELO as fallback)."""
        t0 = time.perf_counter()
        local = (next(self.sources), 0) if self.sources is not None else None
        r, w = await asyncio.open_connection(self.a.host, self.a.port, limit=1 << 16,
                                             local_addr=local)
        c = Connection(r, w)
        self.conns.add(c)
        try:
            await c.expect("greeting", (220,))
            c.write(b"EHLO smtpload.example\r\n")
            code, lines = await c.reply("EHLO")
            if code == 250 and self.a.starttls:
                c.write(b"STARTTLS\r\n")
                await c.expect("STARTTLS", (220,))
                await w.start_tls(_client_tls_context())
                c.write(b"EHLO smtpload.example\r\n")
                code, lines = await c.reply("EHLO after STARTTLS")
            if code == 250:
                c.pipelining = (not self.a.no_pipelining) and any(
                    l[4:].strip().upper() == b"PIPELINING" for l in lines)
            else:
                c.write(b"HELO smtpload.example\r\n")
                await c.expect("HELO", (250,))
        except BaseException:
            self.close(c)
            raise
        self.stats.setup.append(time.perf_counter() - t0)
        return c

    def close(self, c):
        """Close ``c`` and forget it."""
        c.writer.close()
        self.conns.discard(c)

    async def recover(self, c, codes):
        """After a failed MAIL/RCPT/DATA group: end an accepted DATA, then RSET.

        Errors here are counted as events, not as further failed messages.
        Returns False when the connection can no longer be used.
        """
        try:
            if codes.get("DATA") == 354:
                # DATA was accepted although MAIL or RCPT failed: end it empty
                c.write(b".\r\n")
                await c.reply("END")
            c.write(b"RSET\r\n")
            await c.expect("RSET", (250,))
            return True
        except SMTPError as e:
            self.stats.error(e.key, message_failed=False)
            return not e.fatal
        except OSError as e:
            self.stats.error("I/O: %s" % type(e).__name__, message_failed=False)
            return False

    async def send_message(self, c):
        """Send one message on ``c``; record success or the error.

        Returns False when the connection can no longer be used.
        """
        st = self.stats
        self.seq += 1
        t0 = time.perf_counter()
        group = self.group
        if self.senders is not None:
            group = [self.senders[self.seq % len(self.senders)]] + group[1:]
        try:
            codes = {}  # stage -> reply code, for the commands answered so far
            if c.pipelining:
                c.write(*group)
                for stage in ("MAIL", "RCPT", "DATA"):
                    codes[stage] = (await c.reply(stage))[0]
            else:
                for cmd, stage in zip(group, ("MAIL", "RCPT", "DATA")):
                    c.write(cmd)
                    codes[stage] = (await c.reply(stage))[0]
                    if codes[stage] not in self.WANT[stage]:
                        break
            bad = [(s, k) for s, k in codes.items() if k not in self.WANT[s]]
            if bad:
                st.error("%s %d" % bad[0])
                if 421 in codes.values():
                    return False
                return await self.recover(c, codes)
            t354 = time.perf_counter()
            c.write(self.head, b"%010d" % self.seq, self.tail)
            code, _ = await c.reply("END")
            if code // 100 != 2:
                st.error("END %d" % code)
                return code != 421
            t1 = time.perf_counter()
            st.accepted += 1
            st.latencies.append(t1 - t0)
            st.cmd_phase.append(t354 - t0)
            return True
        except SMTPError as e:
            st.error(e.key)
            return not e.fatal
        except (OSError, asyncio.IncompleteReadError) as e:
            st.error("I/O: %s" % type(e).__name__)
            return False

    async def worker(self):
        """Repeatedly: connect, send up to --per-connection messages, QUIT."""
        st = self.stats
        while st.claim():
            c = None
            t_connect = time.perf_counter()
            try:
                c = await self.connect()
            except SMTPError as e:
                st.error(e.key)
            except OSError as e:
                st.error("connect: %s" % type(e).__name__)
            if c is None:
                await asyncio.sleep(0.05)  # do not spin on a refusing server
                continue
            sent = 0
            while True:  # a message is claimed here
                accepted = st.accepted
                alive = await self.send_message(c)
                if sent == 0 and st.accepted > accepted:
                    st.first_message.append(time.perf_counter() - t_connect)
                sent += 1
                if not alive or sent >= self.a.per_connection or not st.claim():
                    break
            try:
                if alive:
                    t0 = time.perf_counter()
                    c.write(b"QUIT\r\n")
                    await c.expect("QUIT", (221,))
                    st.quit.append(time.perf_counter() - t0)
            except SMTPError as e:
                st.error(e.key, message_failed=False)
            except OSError as e:
                st.error("QUIT I/O: %s" % type(e).__name__, message_failed=False)
            finally:
                self.close(c)

    async def watchdog(self):
        """Abort connections silent for longer than --timeout."""
        while True:
            await asyncio.sleep(1)
            now = time.monotonic()
            for c in list(self.conns):
                if now - c.last_io > self.a.timeout:
                    self.conns.discard(c)
                    self.stats.error("timeout", message_failed=False)
                    c.abort()

    async def run(self):
        """Run all workers to completion; return elapsed seconds."""
        dog = asyncio.ensure_future(self.watchdog())
        t0 = time.perf_counter()
        await asyncio.gather(*(self.worker() for _ in range(self.a.concurrency)))
        elapsed = time.perf_counter() - t0
        dog.cancel()
        return elapsed


def _source_addresses(network):
    """Endless round robin over the host addresses of ``network`` (e.g. ``127.1.0.0/16``):
    each connection comes from the next one, so that per-client DNS lookups (DNS lists,
    reverse DNS) differ as they do on a real server."""
    import ipaddress
    import itertools
    hosts = [str(ip) for ip in ipaddress.ip_network(network).hosts()]
    return itertools.cycle(hosts)


def percentile(sorted_values, q):
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not sorted_values:
        return None
    k = math.ceil(q / 100.0 * len(sorted_values)) - 1
    return sorted_values[max(0, min(len(sorted_values) - 1, k))]


def summarize(load, elapsed, sampler):
    """Build the result dict (times in ms, memory in KiB)."""
    st = load.stats
    lat, setup, quit = sorted(st.latencies), sorted(st.setup), sorted(st.quit)
    first = sorted(st.first_message)
    ms = lambda v: None if v is None else round(v * 1000, 3)
    pct = lambda cpu: round(100 * cpu / elapsed, 1) if elapsed and cpu is not None else None
    res = {
        "host": load.a.host, "port": load.a.port,
        "concurrency": load.a.concurrency, "size": load.a.size,
        "per_connection": load.a.per_connection,
        "pipelining": not load.a.no_pipelining,
        "accepted": st.accepted, "failed": st.failed,
        "errors": dict(sorted(st.errors.items())),
        "elapsed_s": round(elapsed, 3),
        "msgs_per_s": round(st.accepted / elapsed, 2) if elapsed else 0,
        "latency_ms": {
            "p50": ms(percentile(lat, 50)), "p99": ms(percentile(lat, 99)),
            "mean": ms(sum(lat) / len(lat)) if lat else None,
            "min": ms(lat[0]) if lat else None, "max": ms(lat[-1]) if lat else None,
        },
        "client_cpu_pct": pct(load.client_cpu),
        "machine_busy_pct": pct(load.machine_busy),  # all processes, 100 = one core
        "cmd_phase_ms_mean": ms(sum(st.cmd_phase) / len(st.cmd_phase)) if st.cmd_phase else None,
        "connections": len(st.setup),
        "setup_ms": {"p50": ms(percentile(setup, 50)), "p99": ms(percentile(setup, 99))},
        "quit_ms": {"p50": ms(percentile(quit, 50)), "p99": ms(percentile(quit, 99))},
        # from connecting to the first message accepted: what a client waits at 1/conn
        "first_message_ms": {"p50": ms(percentile(first, 50)), "p99": ms(percentile(first, 99)),
                             "mean": ms(sum(first) / len(first)) if first else None,
                             "max": ms(first[-1]) if first else None},
    }
    if sampler:
        res["server"] = {
            "pid": sampler.pid,
            "idle_rss_kib": sampler.idle[0], "idle_pss_kib": sampler.idle[1],
            "peak_rss_kib": sampler.peak_rss, "peak_pss_kib": sampler.peak_pss,
            "peak_procs": sampler.peak_procs,
            "cpu_pct": pct(load.server_cpu),  # 100 = one core
            "own_cpu_pct": pct(load.server_own_cpu),  # the server process alone
            "voluntary_switches_per_msg": (round(load.server_switches / st.accepted, 2)
                                           if st.accepted else None),
        }
        other = load.machine_busy - load.client_cpu - load.server_cpu
        res["other_cpu_pct"] = pct(max(0.0, other))
    return res


def format_report(r):
    """Human-readable report of a result dict."""
    lat = r["latency_ms"]
    fmt = lambda v: "-" if v is None else "%.1f" % v
    out = [
        "server      %s:%s" % (r["host"], r["port"]),
        "load        %d clients, %d B messages, %d per connection, pipelining %s"
        % (r["concurrency"], r["size"], r["per_connection"], "on" if r["pipelining"] else "off"),
        "messages    %d accepted, %d failed" % (r["accepted"], r["failed"]),
        "errors      %s" % (", ".join("%s: %d" % kv for kv in r["errors"].items()) or "none"),
        "elapsed     %.2f s" % r["elapsed_s"],
        "rate        %.1f msgs/s" % r["msgs_per_s"],
        "cpu         load generator %s%%, whole machine %s%% (100%% = one core)"
        % (r["client_cpu_pct"], r["machine_busy_pct"]),
        "latency     p50 %s ms, p99 %s ms, mean %s ms (min %s, max %s); MAIL->354 mean %s ms"
        % (fmt(lat["p50"]), fmt(lat["p99"]), fmt(lat["mean"]), fmt(lat["min"]),
           fmt(lat["max"]), fmt(r["cmd_phase_ms_mean"])),
        "connections %d; connect to EHLO reply p50 %s ms, p99 %s ms; QUIT to 221 p50 %s ms"
        % (r["connections"], fmt(r["setup_ms"]["p50"]), fmt(r["setup_ms"]["p99"]),
           fmt(r["quit_ms"]["p50"])),
    ]
    s = r.get("server")
    if s:
        out.append("server mem  peak RSS %.1f MiB, peak PSS %.1f MiB (%d procs max); idle RSS %.1f MiB"
                   % (s["peak_rss_kib"] / 1024, s["peak_pss_kib"] / 1024,
                      s["peak_procs"], s["idle_rss_kib"] / 1024))
        out.append("server cpu  %s%% (100%% = one core; %s%% the server process alone); other "
                   "processes %s%%; %s voluntary context switches per message"
                   % (s["cpu_pct"], s["own_cpu_pct"], r["other_cpu_pct"],
                      s["voluntary_switches_per_msg"]))
    if r["failed"] or r["errors"]:
        out.append("WARNING: %d messages failed; see errors above" % r["failed"])
    return "\n".join(out)


def parse_args(argv=None):
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2525)
    p.add_argument("--concurrency", type=int, default=50, help="concurrent clients (50)")
    p.add_argument("--size", type=int, default=10240, help="message size in bytes incl. headers (10240)")
    p.add_argument("--per-connection", type=int, default=40, help="messages per connection (40)")
    p.add_argument("--messages", type=int, help="total messages to attempt")
    p.add_argument("--duration", type=float, help="stop starting messages after this many seconds")
    p.add_argument("--rcpt", default="user@example.com")
    p.add_argument("--from", dest="mail_from", default="sender@example.net")
    p.add_argument("--source-net", metavar="CIDR",
                   help="connect from the addresses of this loopback network in turn "
                        "(e.g. 127.1.0.0/16), so that each client has its own DNS lookups")
    p.add_argument("--sender-domains", type=int, default=0, metavar="N",
                   help="vary the sender's domain over N subdomains of --from's "
                        "(s0.example.net …), so that sender DNS checks differ per message")
    p.add_argument("--no-pipelining", action="store_true", help="wait for each reply even if PIPELINING is offered")
    p.add_argument("--prepend", metavar="FILE",
                   help="header fields (CRLF) put on top of every message, beyond --size "
                        "(e.g. a DKIM-Signature: see auth_bench.py)")
    p.add_argument("--starttls", action="store_true",
                   help="STARTTLS after EHLO on every connection (the certificate is not checked)")
    p.add_argument("--server-pid", type=int, help="report peak RSS/PSS of this process and its descendants")
    p.add_argument("--timeout", type=float, default=60, help="abort a connection silent this long (60 s)")
    p.add_argument("--latency", action="store_true",
                   help="one client, one connection, messages one after another (default 50 messages)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    if a.latency:
        a.concurrency = 1
        if a.messages is None and a.duration is None:
            a.messages = 50
        a.per_connection = a.messages or 10 ** 9
    if a.messages is None and a.duration is None:
        p.error("give --messages and/or --duration")
    return a


def main(argv=None):
    """Entry point; exit status 1 if any message failed, 2 if none was accepted."""
    a = parse_args(argv)
    sampler = None
    if a.server_pid:
        if not os.path.exists("/proc/%d" % a.server_pid):
            sys.exit("no such process: %d" % a.server_pid)
        sampler = MemorySampler(a.server_pid)
        sampler.start()
    load = Load(a)
    cpu0, m0 = time.process_time(), machine_cpu()
    s0 = tree_cpu(a.server_pid) if a.server_pid else 0
    w0 = tree_switches(a.server_pid) if a.server_pid else 0
    o0 = tree_cpu(a.server_pid, descendants=False) if a.server_pid else 0
    elapsed = asyncio.run(load.run())
    load.client_cpu = time.process_time() - cpu0
    load.machine_busy = machine_cpu()[0] - m0[0]
    load.server_cpu = tree_cpu(a.server_pid) - s0 if a.server_pid else None
    load.server_switches = tree_switches(a.server_pid) - w0 if a.server_pid else None
    load.server_own_cpu = tree_cpu(a.server_pid, descendants=False) - o0 if a.server_pid else None
    if sampler:
        sampler.stop()
    res = summarize(load, elapsed, sampler)
    print(json.dumps(res, indent=2) if a.json else format_report(res))
    if not res["accepted"]:
        return 2
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
