#!/usr/bin/env python3
"""STARTTLS handshakes per second (full and resumed) and memory per idle TLS connection.

Starts one ``twistd qpsmtpd-tx`` as tls_bench.py does (run.py's short chain + ``tls``, a
self-signed P-256 pair from ``qpsmtpd-tx tls-cert``), then:

1. **full handshakes**: ``--clients`` processes each loop connect → EHLO → STARTTLS →
   handshake → EHLO → QUIT for ``--duration`` seconds, never offering a session to resume;
2. **resumed handshakes**: the same, each client offering the session (TLS 1.3 ticket) of
   its previous connection; the share actually resumed is printed;
3. **memory per idle connection**: ``--idle`` connections left open after EHLO in plain text,
   then as many after STARTTLS and EHLO; the server's RSS growth divided by their number.

For 1 and 2: connections/s, and the server's CPU (user + system, from /proc) per connection.
Python's ssl module is the client (blocking sockets, one process per client).

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


def main():
    """Entry point."""
    p = argparse.ArgumentParser(description="STARTTLS handshakes/s and idle TLS memory")
    p.add_argument("--duration", type=float, default=15, help="seconds per handshake run (15)")
    p.add_argument("--clients", type=int, default=4, help="client processes (4)")
    p.add_argument("--idle", type=int, default=400, help="idle connections for memory (400)")
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="qpbench-tlshs-")
    conf = run.make_config(root, False, None)
    port = run.free_port()
    argv, env, cwd = tls_bench.setup_tx(root, conf, port)
    argv[argv.index("--max-from-ip") + 1] = "0"    # --idle connections from one address
    log = open(os.path.join(root, "server.log"), "wb")
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not run.wait_ready(proc, port, 60):
            print("!! qpsmtpd-tx did not start; see %s/server.log" % root)
            return 1
        for resume in (False, True):
            rate, cpu, reused = handshakes(port, proc.pid, a, resume)
            print("%-8s handshakes: %.1f connections/s, server CPU %.2f ms/connection, "
                  "%.0f %% resumed" % ("resumed" if resume else "full", rate, cpu, reused * 100),
                  flush=True)
        for tls in (False, True):
            print("idle %-9s %.1f KiB per connection (%d connections)"
                  % ("TLS:" if tls else "plain:", idle_memory(port, proc.pid, a.idle, tls), a.idle),
                  flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
