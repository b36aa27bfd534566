#!/usr/bin/env python3
"""Email authentication benchmark: qpsmtpd-tx with ``dkim``, ``dmarc`` and
``sender_permitted_from`` beside the same chain without them, one run each, the same load
(issue 12's scenario).

Every message carries a valid DKIM-Signature (rsa-sha256, 2048-bit key, relaxed/relaxed,
over From, To and Subject: smtpload's messages differ only in Message-ID and Date, so one
signature fits all; ``--prepend``), its key and a ``p=reject`` DMARC record on the suite's private NSD
(the server reads it through its ``dns_servers`` config item); the From domain is the signing
domain, so every message passes DKIM and DMARC (checked: the Maildir must hold every message
and the log no refusal). The resolver's cache is warm after the first messages, as the target
says. The sender domain's SPF record passes the clients (127.0.0.0/8).

Reported: msgs/s of each (plain, dkim alone, dkim + dmarc, spf + dkim + dmarc), the ratios,
server CPU per message (its process tree, and the server process alone), and how busy the
server process, its children and the load client were (100 = one core): which one limits. Target: the checks cost at most 30 % of plaintext throughput
(ratio >= 0.70). Needs nsd (tests/support/dns.py) and the venv.

``--rounds K`` runs the chains K times in turn (the disk and the machine drift over
minutes) and adds each chain's median ratio; ``--workers N`` runs every chain with
qpsmtpd-tx ``--workers N``. ``--floor`` adds a fifth chain, ``dkim-floor``: dkim replaced by
bench/tx-plugins/dkim_floor.py, which does only what no verifier can avoid (the body's and
the header's SHA-256, one RSA check, one Authentication-Results entry): the best ratio a
verifier on this server could reach; and a sixth, ``spf+dkim-floor+dmarc``: the three checks
with that stand-in for dkim (dmarc then passes on SPF alone, the From domain being the
sender's), the best ratio of the three checks with any DKIM verifier, compiled or not.

    python3 bench/auth_bench.py [--duration 15] [--concurrency 50] [--per-connection 40]
                                [--rounds 1] [--workers 1] [--tmpdir DIR] [--floor]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import run as bench  # noqa: E402  (configs, server commands, readiness, load runs)
import smtpload  # noqa: E402
from tests.support.dns import private_dns  # noqa: E402

DOMAIN = "authbench.qptx.test"
SELECTOR = "bench"
SENDER = "sender@" + DOMAIN
#: the benchmark's own stand-in plugins (``--floor``)
FLOOR_PLUGINS = os.path.join(HERE, "tx-plugins")


def signed_prepend(root, size):
    """Make a key, sign smtpload's message once; returns (prepend file, key TXT record)."""
    import dkim
    key = os.path.join(root, "bench.key")
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", key, "2048"], check=True,
                   capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    import base64
    record = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    head, tail = smtpload.build_message_parts(size, SENDER, "user@example.com")
    message = head + b"0000000000" + tail
    with open(key, "rb") as f:
        field = dkim.sign(message, SELECTOR.encode(), DOMAIN.encode(), f.read(),
                          canonicalize=(b"relaxed", b"relaxed"),
                          include_headers=[b"from", b"to", b"subject"])
    path = os.path.join(root, "prepend")
    with open(path, "wb") as f:
        f.write(field)
    # for --floor's stand-in: the public key, and a signature made with the key
    subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-out", key + ".pub"],
                   check=True, capture_output=True)
    b_value = re.search(rb"\bb=([A-Za-z0-9+/=\s]+)", field.split(b"bh=")[1]).group(1)
    with open(os.path.join(root, "signature"), "wb") as f:
        f.write(b"".join(b_value.split()))
    return path, record


def publish_zones(dns, record):
    """Publish on the private NSD ``dns`` what the signed messages are checked against: the
    DKIM key TXT ``record``, a ``p=reject`` DMARC policy and an SPF record passing the clients
    (127.0.0.0/8) for the signing domain, and the load generator's HELO name."""
    dns.set_zone(DOMAIN, [("%s._domainkey" % SELECTOR, "TXT", record),
                          ("_dmarc", "TXT", "v=DMARC1; p=reject"),
                          ("@", "TXT", "v=spf1 ip4:127.0.0.0/8 -all")])
    # the load generator's HELO name, with an SPF record of its own as a real MTA's has
    # (without it the HELO identity is REFUSED by the private NSD: a temperror each time)
    dns.set_zone("smtpload.example", [("@", "A", "127.0.0.1"),
                                      ("@", "TXT", "v=spf1 ip4:127.0.0.0/8 -all")])


def run_one(name, plugins, dns, prepend, a):
    """Start qpsmtpd-tx with ``plugins`` before the queue, load it; smtpload's result."""
    root = tempfile.mkdtemp(prefix="qpauthbench-%s-" % name, dir=a.tmpdir)
    try:
        conf = bench.make_config(root, False, None, chain="short")
        maildir = os.path.join(root, "maildir")
        files = {"plugins": "\n".join(["rcpt_ok"] + plugins + ["queue/maildir " + maildir]),
                 "dns_servers": dns.address}
        if any(p.startswith("dkim_floor") for p in plugins):
            files["plugin_dirs"] = "%s\n%s" % (FLOOR_PLUGINS, os.path.join(ROOT, "plugins"))
        bench.write_config_files(conf, files)
        proc, port, log = bench.start_tx(conf, a.concurrency + 20, a.workers)
        try:
            result = bench.run_load(port, proc.pid, [
                "--concurrency", str(a.concurrency), "--per-connection", str(a.per_connection),
                "--duration", str(a.duration), "--size", str(a.size), "--from", SENDER,
                "--prepend", prepend], a.duration + 120)
        finally:
            bench.stop_server(proc)
            log.close()
        delivered = bench.count_new(maildir)
        with open(os.path.join(root, "server.log"), "rb") as f:
            text = f.read().decode("utf-8", "replace")
        if not delivered:
            print("-- %s delivered nothing; the end of its log:\n%s" % (name, text[-3000:]))
        result["delivered"] = delivered
        result["refusals"] = text.count("signature invalid") + text.count("failed DMARC")
        return result
    finally:
        bench.TO_REMOVE.append(root)     # at the end: see run.bench_server


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--per-connection", type=int, default=40)
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--workers", type=int, default=1,
                   help="qpsmtpd-tx --workers N for every chain (1)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the chains this many times in turn; the ratios of each "
                        "round and their median are reported (1)")
    p.add_argument("--tmpdir", default=None,
                   help="where the config and the Maildir go (default: the system temp dir); "
                        "/dev/shm takes the disk's speed, which drifts, out of the comparison")
    p.add_argument("--floor", action="store_true",
                   help="also run the chain with bench/tx-plugins/dkim_floor.py in dkim's place: "
                        "only the hashing and RSA check no verifier can avoid")
    a = p.parse_args()
    dns = private_dns()
    work = tempfile.mkdtemp(prefix="qpauthbench-")
    try:
        prepend, record = signed_prepend(work, a.size)
        publish_zones(dns, record)
        chains = list(CHAINS)
        if a.floor:
            floor = "dkim_floor %s %s" % (os.path.join(work, "bench.key.pub"),
                                          os.path.join(work, "signature"))
            chains += [("dkim-floor", [floor]),
                       ("spf+dkim-floor+dmarc", ["sender_permitted_from", floor, "dmarc"])]
        rounds = [[(name, run_one(name.replace("+", "-"), plugins, dns, prepend, a))
                   for name, plugins in chains] for _ in range(a.rounds)]
    finally:
        shutil.rmtree(work, True)
        bench.remove_finished()
    ratios = {}
    for number, rows in enumerate(rounds, 1):
        if a.rounds > 1:
            print("-- round %d of %d" % (number, a.rounds))
        for name, ratio in report(rows):
            ratios.setdefault(name, []).append(ratio)
    if a.rounds > 1:
        for name, values in ratios.items():
            print("%s / plain, median of %d rounds: %.2f (each: %s)"
                  % (name, len(values), statistics.median(values),
                     ", ".join("%.2f" % v for v in values)))


CHAINS = [("plain", []), ("dkim", ["dkim"]), ("dkim+dmarc", ["dkim", "dmarc"]),
          ("spf+dkim+dmarc", ["sender_permitted_from", "dkim", "dmarc"])]


def _children_pct(server):
    """CPU % of the server's child processes (delivery child, …), or None."""
    if server.get("cpu_pct") is None or server.get("own_cpu_pct") is None:
        return None
    return server["cpu_pct"] - server["own_cpu_pct"]


def report(rows):
    """Print one round's rows and ratios; returns [(chain name, ratio to plain)]."""
    ratios = []
    for name, r in rows:
        if "error" in r:
            print("%-15s error: %s" % (name, r["error"]))
            continue
        server = r.get("server", {})
        print("%-15s %8.1f msgs/s  %5d accepted  %5d delivered  %d refused  CPU %s ms/msg "
              "(server process %s)  busy %%: server %s, its children %s, load client %s"
              % (name, r.get("msgs_per_s", 0), r.get("accepted", 0), r["delivered"], r["refusals"],
                 bench.fmt(bench.cpu_ms_per_message(r), "%.2f"),
                 bench.fmt(bench.cpu_ms_per_message(r, "own_cpu_pct"), "%.2f"),
                 bench.fmt(server.get("own_cpu_pct"), "%.0f"),
                 bench.fmt(_children_pct(server), "%.0f"),
                 bench.fmt(r.get("client_cpu_pct"), "%.0f")))
    plain = rows[0][1]
    for name, r in rows[2:]:
        if "error" not in plain and "error" not in r and plain.get("msgs_per_s"):
            ratio = r.get("msgs_per_s", 0) / plain["msgs_per_s"]
            ratios.append((name, ratio))
            print("%s / plain: %.2f (target >= 0.70)" % (name, ratio))
    return ratios


if __name__ == "__main__":
    main()
