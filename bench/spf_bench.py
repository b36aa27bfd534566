#!/usr/bin/env python3
"""SPF benchmark: what ``sender_permitted_from`` costs qpsmtpd-tx, with a warm DNS cache.

One qpsmtpd-tx (twistd) runs run.py's short chain, then the same chain with
``sender_permitted_from reject 3`` before ``rcpt_ok``; the DNS is the suite's private NSD
(given with the ``dns_servers`` config file), serving the sender domain's record
``v=spf1 include:_spf.<zone> mx -all`` (the include names 127.0.0.0/8: every message
passes after two TXT lookups; the ``mx`` is never reached) and the EHLO name
``smtpload.example`` (an address, no record: the HELO check gives none). Every message has
the same sender, so after the first one every lookup is answered from the resolver's cache:
the cost measured is the check itself (pyspf's runs, the plugin, the Received-SPF field).

Reported: msgs/s, server CPU per message, p50/p99 latency, and SPF's cost in throughput
(issue 12's target: SPF + DKIM + DMARC together cost at most 30 %). Needs root (NSD on
port 53) and nsd. Options: ``--clients`` (50), ``--per-connection`` (40), ``--size`` (10240),
``--duration`` (15 s per run), ``--repeat`` (3 runs of each, alternating; medians).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
import run as bench  # noqa: E402  (config, server commands, readiness, load runs)
from tests.support.dns import private_dns  # noqa: E402

ZONE = "spfbench.test"
SENDER = "sender@" + ZONE
SPF_LINE = "sender_permitted_from reject 3"


def set_zones(dns):
    """The sender domain's SPF records and the load generator's EHLO name."""
    dns.set_zone(ZONE, [("@", "TXT", "v=spf1 include:_spf.%s mx -all" % ZONE),
                        ("_spf", "TXT", "v=spf1 ip4:198.51.100.0/24 ip4:127.0.0.0/8 -all"),
                        ("@", "MX", (10, "mx." + ZONE)), ("mx", "A", "198.51.100.25")])
    dns.set_zone("smtpload.example", [("@", "A", "127.0.0.1")])


def run_once(a, dns, spf):
    """One server, one load run; smtpload's summary."""
    root = tempfile.mkdtemp(prefix="qpspfbench-")
    conf = bench.make_config(root, False, None)
    plugins = open(os.path.join(conf, "plugins")).read()
    if spf:
        plugins = plugins.replace("rcpt_ok\n", SPF_LINE + "\nrcpt_ok\n")
    bench.write_config_files(conf, {"plugins": plugins, "dns_servers": dns.address})
    port = bench.free_port()
    argv, env, cwd = bench.server_command("tx", conf, port, None)
    log = open(os.path.join(root, "server.log"), "wb")
    proc = bench.subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=log)
    try:
        if not bench.wait_ready(proc, port, 60):
            return {"error": "did not start, see %s" % root}
        args = ["--concurrency", str(a.clients), "--per-connection", str(a.per_connection),
                "--size", str(a.size), "--duration", str(a.duration), "--from", SENDER]
        result = bench.run_load(port, proc.pid, args, a.duration + 240)
        time.sleep(1)
        delivered = bench.count_new(os.path.join(root, "maildir"))
        result["lost"] = result.get("accepted", 0) - delivered
        new = os.path.join(root, "maildir", "new")
        sample = sorted(os.listdir(new))[:100]
        result["sample"] = len(sample)
        result["spf_pass"] = sum(_has_spf_pass(os.path.join(new, name)) for name in sample)
        return result
    finally:
        bench.stop_server(proc)
        log.close()
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


def _has_spf_pass(path):
    with open(path, "rb") as f:
        head = b"\n" + f.read(8192).split(b"\n\n", 1)[0]
    return b"\nReceived-SPF: pass " in head


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--per-connection", type=int, default=40)
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--repeat", type=int, default=3, help="runs of each (alternating)")
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()
    if not os.access(bench.TWISTD, os.X_OK):
        bench.TWISTD = os.path.join(sys.prefix, "bin", "twistd")
    dns = private_dns()
    set_zones(dns)
    runs = {"without SPF": [], "with SPF": []}
    for i in range(a.repeat):
        # alternate the order: a machine that gets busier or quieter favours neither
        order = (("without SPF", False), ("with SPF", True))
        for name, spf in (order if i % 2 == 0 else order[::-1]):
            r = run_once(a, dns, spf)
            if "error" in r:
                print("%s: %s" % (name, r["error"]))
                return 1
            runs[name].append(r)
    print("%-12s %9s %12s %9s %9s %6s   (median of %d runs)"
          % ("", "msgs/s", "CPU ms/msg", "p50 ms", "p99 ms", "lost", a.repeat))
    medians = {}
    for name, rs in runs.items():
        medians[name] = median([r["msgs_per_s"] for r in rs])
        cpu = median([r["server"]["cpu_pct"] * 10 / r["msgs_per_s"] for r in rs])
        print("%-12s %9.1f %12.2f %9.1f %9.1f %6d" % (
            name, medians[name], cpu, median([r["latency_ms"]["p50"] for r in rs]),
            median([r["latency_ms"]["p99"] for r in rs]), sum(r["lost"] for r in rs)))
        print("%-12s msgs/s of each run: %s" % ("", ", ".join("%.0f" % r["msgs_per_s"]
                                                             for r in rs)))
    with_spf = runs["with SPF"]
    print("SPF costs %.1f %% of the throughput (medians); Received-SPF: pass on %d of %d "
          "messages looked at (%d without SPF)"
          % ((1 - medians["with SPF"] / medians["without SPF"]) * 100,
             sum(r["spf_pass"] for r in with_spf), sum(r["sample"] for r in with_spf),
             sum(r["spf_pass"] for r in runs["without SPF"])))
    return 0


def median(values):
    """The middle value (the mean of the two middle ones for an even count)."""
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


if __name__ == "__main__":
    sys.exit(main())
