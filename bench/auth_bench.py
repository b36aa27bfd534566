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

``--peers`` adds, in each round, Perl qpsmtpd (bench/auth_perl.py) and Haraka
(bench/auth_haraka.py), each with its plain chain and with its own SPF, DKIM (and DMARC)
checks, and bare Twisted (no checks: the floor of any Twisted server), under the same load and
the same private DNS; printed beside qpsmtpd-tx's rows: each peer's checks / its plain, and
qpsmtpd-tx's three checks against each peer's checks (msgs/s, and server CPU per message).
Every run checks one delivered message for the passes its chain must have recorded (a check
that silently failed open, e.g. on a DNS it cannot reach, would otherwise look fast). Exit
status 1 if any run had an error, a failed or lost message, or such a check not passing.

    python3 bench/auth_bench.py [--duration 15] [--concurrency 50] [--per-connection 40]
                                [--rounds 1] [--workers 1] [--tmpdir DIR] [--floor] [--peers]
"""

import argparse
import importlib
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
from tests.support.dns_zones import DEFAULT_TTL  # noqa: E402

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


def publish_zones(dns, record, ttl=DEFAULT_TTL):
    """Publish on the private NSD ``dns`` what the signed messages are checked against: the
    DKIM key TXT ``record``, a ``p=reject`` DMARC policy and an SPF record passing the clients
    (127.0.0.0/8) for the signing domain, and the load generator's HELO name; records of
    ``ttl`` seconds."""
    dns.set_zone(DOMAIN, [("%s._domainkey" % SELECTOR, "TXT", record),
                          ("_dmarc", "TXT", "v=DMARC1; p=reject"),
                          ("@", "TXT", "v=spf1 ip4:127.0.0.0/8 -all")], ttl)
    # the load generator's HELO name, with an SPF record of its own as a real MTA's has
    # (without it the HELO identity is REFUSED by the private NSD: a temperror each time)
    dns.set_zone("smtpload.example", [("@", "A", "127.0.0.1"),
                                      ("@", "TXT", "v=spf1 ip4:127.0.0.0/8 -all")], ttl)


def run_one(name, plugins, dns, prepend, a):
    """Start qpsmtpd-tx with ``plugins`` before the queue, load it; smtpload's result."""
    def start(root):
        conf = bench.make_config(root, False, None, chain="short")
        maildir = os.path.join(root, "maildir")
        files = {"plugins": "\n".join(["rcpt_ok"] + plugins + ["queue/maildir " + maildir]),
                 "dns_servers": dns.address}
        if any(p.startswith("dkim_floor") for p in plugins):
            files["plugin_dirs"] = "%s\n%s" % (FLOOR_PLUGINS, os.path.join(ROOT, "plugins"))
        bench.write_config_files(conf, files)
        return bench.start_tx(conf, a.concurrency + 20, a.workers) + (maildir,)

    result, root = _measure(name, a, prepend, start, lambda m: tx_check_delivered(m, plugins))
    if "error" not in result:
        with open(os.path.join(root, "server.log"), "rb") as f:
            text = f.read().decode("utf-8", "replace")
        if not result["delivered"]:
            print("-- %s delivered nothing; the end of its log:\n%s" % (name, text[-3000:]))
        result["refusals"] = text.count("signature invalid") + text.count("failed DMARC")
    return result


def _measure(name, a, prepend, start, check):
    """``start(root)`` a server in a new directory (returning (process, port, log file,
    Maildir); RuntimeError or OSError if it cannot), load it, stop it: (smtpload's result
    with ``delivered``, ``refusals`` (its failed messages) and ``problem``, what ``check``
    (bytes -> None or a problem) says of one delivered message; the directory)."""
    root = tempfile.mkdtemp(prefix="qpauthbench-%s-" % name.replace("+", "-"), dir=a.tmpdir)
    try:
        try:
            proc, port, log, maildir = start(root)
        except (RuntimeError, OSError) as e:     # reported in its row; the others still run
            return {"error": "did not start: %s" % e}, root
        try:
            result = _load(port, proc, prepend, a)
        finally:
            bench.stop_server(proc)
            log.close()
        result["delivered"] = bench.count_new(maildir)
        result["refusals"] = result.get("failed", 0)
        result["problem"] = _delivered_problem(maildir, check)
        return result, root
    finally:
        bench.TO_REMOVE.append(root)     # at the end: see run.bench_server


#: the A-R result each of qpsmtpd-tx's checks must have given a benchmark message
TX_PASSES = {"sender_permitted_from": "spf=pass", "dkim": "dkim=pass", "dmarc": "dmarc=pass"}


def tx_check_delivered(message, plugins):
    """None if ``message`` (a delivered file's bytes) shows every check of ``plugins`` passed
    in qpsmtpd-tx's Authentication-Results field, else what is missing."""
    head = message.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("ascii", "replace")
    fields = re.findall(r"(?im)^Authentication-Results:.*(?:\n[ \t].*)*", head)
    missing = [TX_PASSES[p] for p in plugins if p in TX_PASSES
               and not any(TX_PASSES[p] in f for f in fields)]
    return "no %s in %r" % (", ".join(missing), fields) if missing else None


def _delivered_problem(maildir, check):
    """``check`` (bytes -> None or a problem) on one message of ``maildir``/new, or why none."""
    new = os.path.join(maildir, "new")
    names = sorted(os.listdir(new)) if os.path.isdir(new) else []
    if not names:
        return "nothing delivered"
    with open(os.path.join(new, names[len(names) // 2]), "rb") as f:
        return check(f.read())


#: the peers with checks of their own: (kind, module in bench/)
PEERS = (("perl", "auth_perl"), ("haraka", "auth_haraka"))


def run_peer(kind, module, checks, dns, prepend, a):
    """Start peer ``kind`` (``module``'s start(): its plain chain, or with its own checks),
    load it as qpsmtpd-tx is loaded; smtpload's result, with delivered, refusals, problem."""
    return _measure(kind, a, prepend, lambda root: module.start(root, dns.address, checks),
                    lambda message: module.check_delivered(message, checks))[0]


def run_twisted(prepend, a):
    """bench/bare_twisted.py (twisted.mail's ESMTP, no plugins, the same Maildir delivery)
    under the same load: the floor of any Twisted server."""
    def start(root):
        conf = bench.make_config(root, False, None, chain="short")
        port = bench.free_port()
        argv, env, cwd = bench.server_command("twisted", conf, port, None)
        log = open(os.path.join(root, "server.log"), "wb")
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        if not bench.wait_ready(proc, port):
            bench.stop_server(proc)
            log.close()
            raise RuntimeError("bare Twisted did not answer on port %d" % port)
        return proc, port, log, os.path.join(root, "maildir")

    return _measure("twisted", a, prepend, start, lambda message: None)[0]


def _load(port, proc, prepend, a):
    return bench.run_load(port, proc.pid, [
        "--concurrency", str(a.concurrency), "--per-connection", str(a.per_connection),
        "--duration", str(a.duration), "--size", str(a.size), "--from", SENDER,
        "--prepend", prepend], a.duration + 120)


def peer_modules():
    """[(kind, module)] of the peers that can run here; why the others cannot is printed."""
    found = []
    for kind, name in PEERS:
        module = importlib.import_module(name)
        ok, why = module.available()
        if ok:
            found.append((kind, module))
        else:
            print("-- %s skipped: %s" % (kind, why))
    return found


def check_peer(kind, module):
    """A peer module's own check (its ``main``): a short 10-client load of its plain chain
    and of its chain with checks, each row printed with what its delivered message shows;
    returns the exit status (1 if anything failed, was lost or did not pass)."""
    ok, why = module.available()
    if not ok:
        print("-- %s cannot run here: %s" % (kind, why))
        return 1
    a = argparse.Namespace(concurrency=10, per_connection=40, duration=5, size=10240,
                           tmpdir=None)
    dns = private_dns()
    work = tempfile.mkdtemp(prefix="qpauthpeer-")
    try:
        prepend, record = signed_prepend(work, a.size)
        publish_zones(dns, record)
        rows = [("%s %s" % (kind, "checks" if checks else "plain"),
                 run_peer(kind, module, checks, dns, prepend, a)) for checks in (False, True)]
    finally:
        shutil.rmtree(work, True)
        bench.remove_finished()
    report(rows)
    return 0 if all(_sound(r) for _, r in rows) else 1


def _sound(result):
    """Whether a row's run went as it must: no error, nothing failed or lost, and its
    delivered message shows the passes its chain records."""
    return ("error" not in result and not result.get("problem") and not result.get("failed")
            and result["delivered"] == result.get("accepted"))


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
    p.add_argument("--peers", action="store_true",
                   help="also run Perl qpsmtpd and Haraka, each plain and with its own SPF, "
                        "DKIM (and DMARC) checks, and bare Twisted plain, under the same load")
    a = p.parse_args()
    peers = peer_modules() if a.peers else []
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
        rounds = []
        for _ in range(a.rounds):
            rows = [(name, run_one(name, plugins, dns, prepend, a))
                    for name, plugins in chains]
            for kind, module in peers:
                rows += [("%s %s" % (kind, "checks" if checks else "plain"),
                          run_peer(kind, module, checks, dns, prepend, a))
                         for checks in (False, True)]
            if peers:
                rows.append(("twisted plain", run_twisted(prepend, a)))
            rounds.append(rows)
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
            print("%s, median of %d rounds: %.2f (each: %s)"
                  % (name, len(values), statistics.median(values),
                     ", ".join("%.2f" % v for v in values)))
    unsound = [name for rows in rounds for name, r in rows if not _sound(r)]
    if unsound:
        print("!! not sound (an error, a failed or lost message, or a check that did not "
              "pass): %s" % ", ".join(unsound))
        return 1
    return 0


CHAINS = [("plain", []), ("dkim", ["dkim"]), ("dkim+dmarc", ["dkim", "dmarc"]),
          ("spf+dkim+dmarc", ["sender_permitted_from", "dkim", "dmarc"])]


def _children_pct(server):
    """CPU % of the server's child processes (delivery child, …), or None."""
    if server.get("cpu_pct") is None or server.get("own_cpu_pct") is None:
        return None
    return server["cpu_pct"] - server["own_cpu_pct"]


def report(rows):
    """Print one round's rows and ratios; returns [(ratio name, value)]."""
    ratios = []
    by = {}
    for name, r in rows:
        if "error" in r:
            print("%-20s error: %s" % (name, r["error"]))
            continue
        by[name] = r
        server = r.get("server", {})
        print("%-20s %8.1f msgs/s  %5d accepted  %5d delivered  %d refused  CPU %s ms/msg "
              "(server process %s)  busy %%: server %s, its children %s, load client %s%s"
              % (name, r.get("msgs_per_s", 0), r.get("accepted", 0), r["delivered"], r["refusals"],
                 bench.fmt(bench.cpu_ms_per_message(r), "%.2f"),
                 bench.fmt(bench.cpu_ms_per_message(r, "own_cpu_pct"), "%.2f"),
                 bench.fmt(server.get("own_cpu_pct"), "%.0f"),
                 bench.fmt(_children_pct(server), "%.0f"),
                 bench.fmt(r.get("client_cpu_pct"), "%.0f"),
                 "  !! %s" % r["problem"] if r.get("problem") else ""))

    def ratio(label, top, bottom, target=""):
        if top in by and bottom in by and by[bottom].get("msgs_per_s"):
            value = by[top].get("msgs_per_s", 0) / by[bottom]["msgs_per_s"]
            cpu_top, cpu_bottom = (bench.cpu_ms_per_message(by[k]) for k in (top, bottom))
            cpu = " (server CPU per message x%.2f)" % (cpu_top / cpu_bottom) if (
                cpu_top and cpu_bottom) else ""
            ratios.append((label, value))
            print("%s: %.2f%s%s" % (label, value, cpu, target))

    tx_chains = [name for name, _ in rows if name in dict(CHAINS) or "floor" in name]
    for name in tx_chains[2:]:
        ratio("%s / plain" % name, name, "plain", " (target >= 0.70)")
    for kind, _ in PEERS:
        ratio("%s checks / %s plain" % (kind, kind), "%s checks" % kind, "%s plain" % kind)
    for kind, _ in PEERS:
        ratio("tx spf+dkim+dmarc / %s checks" % kind, "spf+dkim+dmarc", "%s checks" % kind)
    for kind in [k for k, _ in PEERS] + ["twisted"]:
        ratio("tx plain / %s plain" % kind, "plain", "%s plain" % kind)
    return ratios

if __name__ == "__main__":
    sys.exit(main())
