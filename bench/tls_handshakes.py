#!/usr/bin/env python3
"""STARTTLS handshakes per second (full and resumed) and memory per idle TLS connection.

Starts one ``twistd qpsmtpd-tx`` as tls_bench.py does (run.py's short chain + ``tls``, a
self-signed P-256 pair from ``qpsmtpd-tx tls-cert``), then:

1. **full handshakes**: ``--clients`` processes each loop connect → EHLO → STARTTLS →
   handshake → EHLO → QUIT for ``--duration`` seconds, never offering a session to resume;
2. **resumed handshakes**: the same, each client offering the session (TLS 1.3 ticket) of
   its previous connection; the share actually resumed is printed;
3. **memory per idle connection** (measured first, on the fresh server): ``--idle``
   connections left open after EHLO in plain text, then as many after STARTTLS and EHLO; the
   server's RSS growth divided by their number.

For 1 and 2: connections/s, and the server's CPU (user + system, from /proc) per connection.
Python's ssl module is the client (blocking sockets, one process per client).

Then the same against Haraka (tls_bench.py's set-up: run.py's instance, one process, its ``tls``
plugin in front, an ``openssl``-made P-256 pair), unless ``--no-haraka``, and the tx/haraka
ratios of the same run. Haraka is skipped with a message when it cannot be set up or started.

    python3 bench/tls_handshakes.py --duration 15
"""

import argparse
import multiprocessing
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402
import smtpload  # noqa: E402
import tls_bench  # noqa: E402


def client_context():
    """A TLS client context that accepts the self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def read_reply(sock):
    """Read one (possibly multi-line) SMTP reply; its code."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and len(lines[-2]) > 3 and lines[-2][3:4] == b" ":
            return int(lines[-2][:3])


def expect(sock, code):
    got = read_reply(sock)
    if got != code:
        raise RuntimeError("expected %d, got %d" % (code, got))


def starttls(port, context, session=None):
    """Connect, EHLO, STARTTLS, handshake, EHLO; the TLS socket (still open)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    expect(sock, 220)
    sock.sendall(b"EHLO bench.example\r\n")
    expect(sock, 250)
    sock.sendall(b"STARTTLS\r\n")
    expect(sock, 220)
    tls = context.wrap_socket(sock, server_hostname="bench.example", session=session)
    tls.sendall(b"EHLO bench.example\r\n")
    expect(tls, 250)
    return tls


def handshake_loop(port, seconds, resume, results):
    """One client: STARTTLS connections until ``seconds`` have passed; (count, resumed)."""
    context = client_context()
    end = time.monotonic() + seconds
    count = resumed = 0
    session = None
    while time.monotonic() < end:
        tls = starttls(port, context, session if resume else None)
        count += 1
        resumed += tls.session_reused
        tls.sendall(b"QUIT\r\n")
        expect(tls, 221)
        session = tls.session
        tls.close()
    results.put((count, resumed))


def cpu_seconds(pid):
    """User + system CPU seconds of process ``pid``."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def handshakes(port, pid, a, resume):
    """Run the clients; (connections/s, server CPU ms per connection, share resumed)."""
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=handshake_loop, args=(port, a.duration, resume, results))
             for _ in range(a.clients)]
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    for p in procs:
        p.start()
    counts = [results.get(timeout=a.duration + 120) for _ in procs]
    elapsed, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    for p in procs:
        p.join()
    total = sum(c for c, _ in counts)
    return total / elapsed, cpu * 1000 / max(total, 1), sum(r for _, r in counts) / max(total, 1)


def idle_memory(port, pid, n, tls):
    """KiB of server RSS per connection for ``n`` idle connections after EHLO (on TLS: after
    STARTTLS and a second EHLO)."""
    time.sleep(1)
    before = smtpload.tree_memory(pid)[0]
    context = client_context()
    socks = []
    for _ in range(n):
        if tls:
            socks.append(starttls(port, context))
        else:
            sock = socket.create_connection(("127.0.0.1", port))
            expect(sock, 220)
            sock.sendall(b"EHLO bench.example\r\n")
            expect(sock, 250)
            socks.append(sock)
    time.sleep(1)
    after = smtpload.tree_memory(pid)[0]
    for sock in socks:
        sock.close()
    return (after - before) / n


def bench_server(name, setup, a):
    """Start server ``name`` (tls_bench's ``setup``), measure it, stop it; a dict of figures,
    or None when it could not be set up or started (said why)."""
    root = tempfile.mkdtemp(prefix="qpbench-tlshs-%s-" % name)
    conf = run.make_config(root, False, None)
    port = run.free_port()
    try:
        argv, env, cwd = setup(root, conf, port)
    except RuntimeError as e:
        print("-- skipping %s: %s" % (name, e))
        return None
    if "--max-from-ip" in argv:
        argv[argv.index("--max-from-ip") + 1] = "0"    # --idle connections from one address
    log = open(os.path.join(root, "server.log"), "wb")
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    figures = {}
    try:
        if not run.wait_ready(proc, port, 60):
            print("!! %s did not start; see %s/server.log" % (name, root))
            return None
        # memory first, on a fresh server: after thousands of connections a server's heap
        # has room for the idle ones without growing (Haraka's RSS then grows by nothing)
        for tls in (False, True):
            kind = "idle TLS" if tls else "idle plain"
            figures[kind] = idle_memory(port, proc.pid, a.idle, tls)
            print("%-7s %-11s %.1f KiB per connection (%d connections)"
                  % (name, kind + ":", figures[kind], a.idle), flush=True)
        for resume in (False, True):
            kind = "resumed" if resume else "full"
            figures[kind] = rate, cpu, reused = handshakes(port, proc.pid, a, resume)
            print("%-7s %-8s handshakes: %.1f connections/s, server CPU %.2f ms/connection, "
                  "%.0f %% resumed" % (name, kind, rate, cpu, reused * 100), flush=True)
    finally:
        run.stop_server(proc)
        log.close()
    shutil.rmtree(root, ignore_errors=True)
    return figures


def main():
    """Entry point."""
    p = argparse.ArgumentParser(description="STARTTLS handshakes/s and idle TLS memory")
    p.add_argument("--duration", type=float, default=15, help="seconds per handshake run (15)")
    p.add_argument("--clients", type=int, default=4, help="client processes (4)")
    p.add_argument("--idle", type=int, default=400, help="idle connections for memory (400)")
    p.add_argument("--no-haraka", action="store_true", help="qpsmtpd-tx only")
    a = p.parse_args()
    results = {}
    for name, setup, _ in tls_bench.SERVERS:
        if name == "haraka" and a.no_haraka:
            continue
        results[name] = bench_server(name, setup, a)
    tx, haraka = results.get("tx"), results.get("haraka")
    if tx is None:
        return 1
    if haraka is not None:
        for kind in ("full", "resumed"):
            print("tx/haraka %-8s handshakes: x%.2f connections/s, x%.2f server CPU per "
                  "connection" % (kind, tx[kind][0] / haraka[kind][0], tx[kind][1] / haraka[kind][1]))
        for kind in ("idle plain", "idle TLS"):
            print("tx/haraka %-11s %s KiB per connection" % (
                kind + ":", "x%.2f" % (tx[kind] / haraka[kind]) if haraka[kind] > 0 else "n/a"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
