#!/usr/bin/env python3
"""DNS benchmark: qpsmtpd-tx against Perl qpsmtpd-forkserver with the DNS plugins, side by side.

Both servers run the same config (``dnsbl`` with 3 zones, ``rhsbl``, ``fcrdns``,
``resolvable_fromhost``, ``rcpt_ok``, ``queue/maildir``) and read the same private DNS server
the way an operator's do: through ``/etc/resolv.conf`` (a private mount namespace makes it
name the suite's NSD, via its relay, which adds the DNS delay). Every client connects from its
own loopback address (127.1.0.0/17: each has a PTR and a matching A record) and sends from its
own sender domain, so no lookup is answered from a cache and every connection costs Perl its
full round of lookups too. One message per connection.

Scenarios, for each number of clients (``--clients``, default 50 and 500):
  * the DNS server answers at once, and after ``--delay`` (200 ms) per query;
  * (qpsmtpd-tx only) "silent": the DNS never answers for a quarter of the clients (every
    lookup about them, their PTR and DNS list names): each of them costs at most its
    ``dns_budget`` (set to ``--budget``), and the other clients are timed beside them.

Reported per run: msgs/s, the time a client waits from connecting to its message accepted
(p50, p99, max), server CPU per message, and the ratios: tx/perl, and how close throughput
comes to the latency bound (clients ÷ mean per-message latency). Targets (issue 11): with the
delay, at 500 clients ≥ 80 % of that bound and ≥ 5× Perl; a silent DNS costs a connection at
most its budget and the others nothing. Needs root (port 53, mount namespaces) and nsd.
"""

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import run as bench  # noqa: E402  (server commands, readiness, load runs)
from tests.support.dns import private_dns  # noqa: E402
from tests.support.resolv_conf import with_resolv_conf, write_resolv_conf  # noqa: E402

DOMAIN = "dnsbench.test"
CLIENT_NET = "127.1.0.0/17"
SILENT_NET = "127.1.0.0/19"        # a quarter of CLIENT_NET
OTHER_NET = "127.1.32.0/19"
LISTS = ["bl1", "bl2", "bl3"]
PLUGINS = """\
dnsbl
rhsbl
fcrdns
resolvable_fromhost
rcpt_ok
queue/maildir {maildir}
"""


def client_name(ip):
    """The host name the benchmark's DNS gives client address ``ip``."""
    return "h-" + str(ip).replace(".", "-") + ".clients." + DOMAIN


def set_zones(dns):
    """Serve the benchmark's zones: clients (PTR + A), 3 DNS lists, an RHS list, senders."""
    hosts = list(ipaddress.ip_network(CLIENT_NET).hosts())
    dns.set_zone("clients." + DOMAIN, [(client_name(ip) + ".", "A", str(ip)) for ip in hosts])
    dns.set_zone("1.127.in-addr.arpa", [
        (".".join(reversed(str(ip).split(".")[2:])), "PTR", client_name(ip) + ".")
        for ip in hosts])
    for name in LISTS:
        dns.set_zone("%s.%s" % (name, DOMAIN), [("2.0.0.127", "A", "127.0.0.2"),
                                              ("2.0.0.127", "TXT", "listed for the test")])
    dns.set_zone("rhsbl." + DOMAIN, [("bad.example", "A", "127.0.0.2")])
    dns.set_zone("senders." + DOMAIN, [("*", "MX", "10 mx.senders.%s." % DOMAIN),
                                       ("mx", "A", "198.51.100.25")])


def shape(dns, delay, silent):
    """Delay every answer by ``delay`` seconds; with ``silent``, never answer about SILENT_NET."""
    dns.clear_shaping()
    if delay:
        dns.set_delay(DOMAIN, delay)
        dns.set_delay("1.127.in-addr.arpa", delay)
    if silent:
        net = ipaddress.ip_network(SILENT_NET)
        for third in range(net.network_address.packed[2], net.broadcast_address.packed[2] + 1):
            reverse = "%d.1.127" % third
            dns.set_silent(reverse + ".in-addr.arpa")
            for name in LISTS:
                dns.set_silent("%s.%s.%s" % (reverse, name, DOMAIN))


def make_root(kind, user, budget):
    """A temp dir with config/, maildir/, spool/ for ``kind``; returns (root, config dir)."""
    root = tempfile.mkdtemp(prefix="qpdnsbench-%s-" % kind)
    maildir = os.path.join(root, "maildir")
    conf = bench.make_config(root, kind == "perl", None, chain="short")
    files = {
        "plugins": PLUGINS.format(maildir=maildir),
        "dnsbl_zones": "\n".join("%s.%s" % (name, DOMAIN) for name in LISTS),
        "rhsbl_zones": "rhsbl.%s" % DOMAIN,
        "rcpthosts": "example.com",
    }
    if kind == "perl":
        files["plugin_dirs"] = bench.PERL_PLUGIN_DIR
    else:
        files["dns_budget"] = str(budget)
    bench.write_config_files(conf, files)
    if user:
        import pwd
        pw = pwd.getpwnam(user)
        for dirpath, _, filenames in os.walk(root):
            for path in [dirpath] + [os.path.join(dirpath, n) for n in filenames]:
                os.chown(path, pw.pw_uid, pw.pw_gid)
    return root, conf


def start_server(kind, conf, port, clients, resolv_conf, user):
    """Start ``kind`` in a mount namespace whose /etc/resolv.conf is ``resolv_conf``."""
    argv, env, cwd = bench.server_command(kind, conf, port, user)
    if kind == "perl":
        limit = str(clients + 20)
        argv = [a if a != "60" else limit for a in argv]            # -c and -m
    else:
        argv[argv.index("--max-from-ip") + 1] = str(clients + 20)
    log = open(os.path.join(os.path.dirname(conf), "server.log"), "wb")
    proc = subprocess.Popen(with_resolv_conf(resolv_conf, argv), env=env, cwd=cwd, stdout=log,
                            stderr=subprocess.STDOUT)
    return proc, log


def load(port, pid, clients, duration, source_net, size, extra=()):
    """One smtpload run (1 message per connection); its JSON result."""
    args = ["--concurrency", str(clients), "--per-connection", "1", "--duration", str(duration),
            "--size", str(size), "--source-net", source_net, "--sender-domains", "100000",
            "--from", "sender@senders." + DOMAIN, "--timeout", "120"] + list(extra)
    return bench.run_load(port, pid, args, duration + 240)


def parallel_loads(port, pid, runs, duration, size):
    """Several smtpload runs at once (``runs``: [(clients, source_net)]); their results."""
    procs = []
    for clients, net in runs:
        argv = [sys.executable, os.path.join(HERE, "smtpload.py"), "--port", str(port),
                "--server-pid", str(pid), "--json", "--concurrency", str(clients),
                "--per-connection", "1", "--duration", str(duration), "--size", str(size),
                "--source-net", net, "--sender-domains", "100000",
                "--from", "sender@senders." + DOMAIN, "--timeout", "120"]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=duration + 240)
        try:
            results.append(json.loads(out))
        except ValueError:
            results.append({"error": (err.strip().splitlines() or ["no output"])[-1]})
    return results


def summary(r):
    """The figures of one smtpload result the report needs."""
    if "error" in r:
        return {"error": r["error"]}
    first = r.get("first_message_ms", {})
    cpu_pct = r.get("server", {}).get("cpu_pct")
    cpu_ms = (cpu_pct / 100.0 * r["elapsed_s"] * 1000 / r["accepted"]
              if cpu_pct is not None and r.get("accepted") else None)
    return {"msgs_per_s": r["msgs_per_s"], "accepted": r["accepted"], "failed": r["failed"],
            "errors": r.get("errors", {}), "wait_p50_ms": first.get("p50"),
            "wait_p99_ms": first.get("p99"), "wait_mean_ms": first.get("mean"),
            "wait_max_ms": first.get("max"), "cpu_ms_per_msg": cpu_ms,
            "concurrency": r["concurrency"], "server_cpu_pct": cpu_pct,
            "client_cpu_pct": r.get("client_cpu_pct"), "machine_busy_pct": r.get("machine_busy_pct")}


def bound_ratio(s):
    """Throughput ÷ (clients ÷ mean wait): 1.0 when only latency limits it."""
    if not s.get("wait_mean_ms"):
        return None
    return s["msgs_per_s"] / (s["concurrency"] / (s["wait_mean_ms"] / 1000.0))


def run_kind(kind, a, dns, resolv_conf):
    """All scenarios against ``kind``; a list of (scenario, summary) pairs."""
    rows = []
    user = a.perl_user if kind == "perl" and os.geteuid() == 0 else None
    scenarios = [(clients, delay, False) for clients in a.clients for delay in a.delays]
    if kind == "tx" and not a.no_silent:
        scenarios.append((a.clients[0], a.delays[0], True))
    for clients, delay, silent in scenarios:
        # a fresh server per scenario: nothing cached from the one before
        root, conf = make_root(kind, user, a.budget)
        port = bench.free_port()
        proc, log = start_server(kind, conf, port, clients, resolv_conf, user)
        name = "%d clients, DNS %s%s" % (clients, "+%d ms" % (delay * 1000) if delay else "at once",
                                         ", silent for 1/4" if silent else "")
        try:
            if not bench.wait_ready(proc, port, 60):
                rows.append((name, {"error": "%s did not start (log in %s)" % (kind, root)}))
                continue
            shape(dns, delay, silent)
            maildir = os.path.join(root, "maildir")
            before = bench.count_new(maildir)
            print("== %s: %s ..." % (kind, name), flush=True)
            if silent:
                quarter = max(1, clients // 4)
                silent_r, other_r = parallel_loads(port, proc.pid, [(quarter, SILENT_NET),
                                                                    (clients - quarter, OTHER_NET)],
                                                   a.duration, a.size)
                rows.append((name + ": silent clients", summary(silent_r)))
                rows.append((name + ": other clients", summary(other_r)))
                accepted = sum(r.get("accepted", 0) for r in (silent_r, other_r))
            else:
                r = load(port, proc.pid, clients, a.duration, CLIENT_NET, a.size)
                rows.append((name, summary(r)))
                accepted = r.get("accepted", 0)
            time.sleep(1)
            delivered = bench.count_new(maildir) - before
            if delivered != accepted:
                print("!!!! %s %s: %d accepted, %d delivered !!!!" % (kind, name, accepted, delivered))
                rows[-1][1]["lost"] = accepted - delivered
        finally:
            dns.clear_shaping()
            bench.stop_server(proc)
            log.close()
            if not a.keep:
                shutil.rmtree(root, ignore_errors=True)
    return rows


def report(results, a):
    """Print the table and the ratios."""
    fmt = lambda v, f="%.1f": "-" if v is None else f % v
    print("\n%-6s %-44s %9s %9s %9s %9s %8s %7s" % ("server", "scenario", "msgs/s", "wait p50",
                                                   "wait p99", "wait max", "CPU ms", "bound"))
    for kind, rows in results.items():
        for name, s in rows:
            if "error" in s:
                print("%-6s %-44s %s" % (kind, name, s["error"]))
                continue
            print("%-6s %-44s %9.1f %9s %9s %9s %8s %7s" % (
                kind, name, s["msgs_per_s"], fmt(s["wait_p50_ms"]), fmt(s["wait_p99_ms"]),
                fmt(s["wait_max_ms"]), fmt(s["cpu_ms_per_msg"], "%.2f"),
                fmt(bound_ratio(s), "%.2f")))
            print("       CPU %% of one core: server %s, load generator %s, whole machine %s"
                  % (s.get("server_cpu_pct"), s.get("client_cpu_pct"), s.get("machine_busy_pct")))
            if s.get("failed") or s.get("errors"):
                print("       failed %d, errors %s" % (s["failed"], s["errors"]))
    tx, perl = dict(results.get("tx", [])), dict(results.get("perl", []))
    print("\nratios (same run): tx/perl msgs/s; 'bound' = msgs/s ÷ (clients ÷ mean wait)")
    for name in tx:
        if name in perl and "error" not in tx[name] and "error" not in perl[name] \
                and perl[name]["msgs_per_s"]:
            print("  %-44s tx/perl %.2f×" % (name, tx[name]["msgs_per_s"] / perl[name]["msgs_per_s"]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, nargs="+", default=[50, 500])
    p.add_argument("--delays", type=float, nargs="+", default=[0.0, 0.2],
                   help="seconds the DNS waits before each answer (0 and 0.2)")
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--budget", type=int, default=3,
                   help="qpsmtpd-tx's dns_budget in this benchmark (3 s)")
    p.add_argument("--only", choices=("tx", "perl"))
    p.add_argument("--no-silent", action="store_true", help="skip the silent-DNS scenario")
    p.add_argument("--perl-user", default="qpsmtpd")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json-out")
    a = p.parse_args()
    dns = private_dns()
    print("-- zones on the private NSD %s (relay %s)" % (dns.address, dns.shaped_address), flush=True)
    set_zones(dns)
    tmp = tempfile.mkdtemp(prefix="qpdnsbench-")
    resolv_conf = write_resolv_conf(os.path.join(tmp, "resolv.conf"), [dns.shaped_address])
    results = {}
    for kind in ("tx", "perl"):
        if a.only in (None, kind):
            results[kind] = run_kind(kind, a, dns, resolv_conf)
    report(results, a)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({k: [[n, s] for n, s in v] for k, v in results.items()}, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
