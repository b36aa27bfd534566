#!/usr/bin/env python3
"""Side-by-side benchmark: qpsmtpd-tx vs Perl qpsmtpd-forkserver, Haraka and bare Twisted.

The servers ("kinds"): ``perl`` (qpsmtpd 0.94 forkserver), ``tx`` (this checkout),
``tx-base`` (``--tx-baseline``), and the peers (skipped with ``--no-peers``): ``haraka``
(Haraka, one process, rcpt_to.in_host_list + bench/haraka-plugins/queue/maildir) and
``twisted`` (bench/bare_twisted.py: twisted.mail's ESMTP, no plugins, same Maildir delivery).

For each server this script
  1. makes a temporary directory with a qpsmtpd config dir, a Maildir and a
     spool dir (the same short plugin chain for both servers),
  2. starts the server on 127.0.0.1 and a free port, waits for its greeting,
  3. runs bench/smtpload.py: the idle pipelined latency mode, then 50 clients
     with 40 messages per connection, then 50 clients with 1 message per
     connection (10 KiB messages),
  4. checks after each run that the Maildir gained exactly as many files as
     messages were accepted, and that a delivered body is byte-correct,
  5. stops the server by its PID (and any leftover child by its PID).
Then it prints one table, with tx/perl, tx/haraka and tx/twisted ratios (msgs/s, p50
latency, server CPU per message) for the servers that ran.

Exit status: 0 if all went well, 1 if any message failed or mail was lost.
"""

import argparse
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import smtpload  # noqa: E402  (for expected_body and tree_memory)

PERL_SERVER = "/usr/bin/qpsmtpd-forkserver"
PERL_PLUGIN_DIR = "/usr/share/qpsmtpd/plugins"
#: the checkout's own virtualenv (the README's set-up command), else the older /work/venv
TWISTD = next((t for t in (os.path.join(ROOT, ".venv", "bin", "twistd"), "/work/venv/bin/twistd")
               if os.access(t, os.X_OK)), os.path.join(ROOT, ".venv", "bin", "twistd"))

#: Haraka, installed by bench/install_haraka.sh under the gitignored bench/.haraka/
HARAKA_DIR = os.path.join(HERE, ".haraka", "node_modules", "Haraka")
HARAKA_PLUGINS = os.path.join(HERE, "haraka-plugins")
NODE = "/usr/bin/node"
#: Haraka's version of the short chain: in_host_list does rcpthosts + rcpt_ok's job
HARAKA_PLUGIN_CHAIN = "rcpt_to.in_host_list\nqueue/maildir"
PEERS = ("haraka", "twisted")

#: the plugin chain, identical for both servers ({maildir} is filled in)
PLUGINS = """\
count_unrecognized_commands 4
relay
badmailfrom
badrcptto
rcpt_ok
queue/maildir {maildir}
"""


#: issue 4's "all of them at once": every network-free plugin, configured so that the
#: benchmark's mail passes every check (qpsmtpd-tx only: Perl lacks some, and differs in others)
FULL_PLUGINS = """\
hosts_allow
earlytalker wait 0
connection_time
count_unrecognized_commands 4
noop_counter 3
random_error 0.0
relay
whitelist
helo policy lenient
parse_addr_withhelo
dont_require_anglebrackets
badmailfrom
badmailfromto
bogus_bounce deny
badrcptto
rcpt_map domain other.example file {root}/config/rcpt_map_other default DENY=no_such_user
rcpt_regexp
naughty
rcpt_ok
headers require From,Date future 2 past 15
loop
content_log
queue/maildir {maildir}
"""
#: config files the full chain reads (none of them matches the benchmark's mail)
FULL_FILES = {
    "hosts_allow": "192.0.2.0/24 DENY not from the documentation network",
    "whitelisthosts": "192.0.2.77",
    "whitelistsenders": "friend@trusted.example",
    "badhelo": "evil.example",
    "badmailfromto": "bad@sender.example victim@example.com",
    "rcpt_map_other": "someone@other.example OK",
    "rcpt_regexp": "/^spamtrap-/ DENY not here",
    "content_log_enabled": "1",
}
CHAINS = {"short": PLUGINS, "full": FULL_PLUGINS}


def free_port():
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plugin_chain(maildir, skip=(), chain="short", root=""):
    """The plugins file text: the chain without the plugins named in ``skip``."""
    lines = CHAINS[chain].format(maildir=maildir, root=root).splitlines()
    return "".join(l + "\n" for l in lines if l.split()[0] not in skip)


#: bench/perl-plugins: queue/maildir_fsync, a Perl queue plugin that fsyncs as ours does
PERL_BENCH_PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "perl-plugins")


def base_config(root, plugins):
    """The config files of every benchmarked server under ``root`` (``plugins``: the text of
    its plugins file), as {name: text}."""
    return {
        "me": "bench.example",
        "rcpthosts": "example.com",
        "badmailfrom": "spammer@bad.example\n@spamdomain.example",
        "badrcptto": "blocked@example.com",
        "plugins": plugins,
        "logging": "",          # no logging plugin: log to stderr ...
        "loglevel": "4",        # ... at LOGWARN and above
        "spool_dir": os.path.join(root, "spool"),
    }


def write_config_files(conf, files):
    """Write ``files`` ({name: text}) into directory ``conf``, each ending in a newline."""
    for name, text in files.items():
        with open(os.path.join(conf, name), "w") as f:
            f.write(text + ("\n" if text and not text.endswith("\n") else ""))


def make_config(root, perl, user, skip=(), chain="short", perl_fsync=False):
    """Write config/, maildir/ and spool/ under ``root``; return the config dir.

    ``perl``: also write plugin_dirs (Perl's default is beside the program,
    /usr/bin/plugins, which does not exist).  ``user``: chown the tree to it.
    """
    conf = os.path.join(root, "config")
    maildir = os.path.join(root, "maildir")
    for d in (conf, os.path.join(root, "spool"),
              *(os.path.join(maildir, s) for s in ("cur", "new", "tmp"))):
        os.makedirs(d, mode=0o700)
    files = base_config(root, plugin_chain(maildir, skip, chain, root))
    if chain == "full":
        files.update(FULL_FILES)
        files["content_log_file"] = os.path.join(root, "content_log")
    if perl:
        files["plugin_dirs"] = PERL_PLUGIN_DIR
        if perl_fsync:
            files["plugin_dirs"] = PERL_BENCH_PLUGINS + "\n" + PERL_PLUGIN_DIR
            files["plugins"] = files["plugins"].replace("queue/maildir ", "queue/maildir_fsync ")
    write_config_files(conf, files)
    if user and os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        for dirpath, dirnames, filenames in os.walk(root):
            for n in [dirpath] + [os.path.join(dirpath, x) for x in filenames]:
                os.chown(n, pw.pw_uid, pw.pw_gid)
    return conf


def server_command(kind, conf, port, user, workers=1, tx_root=ROOT, peer_fsync=False):
    """(argv, env, cwd) to start ``kind`` ('perl', 'tx', 'haraka' or 'twisted') on ``port``.

    ``tx_root`` is the checkout whose qpsmtpd-tx runs (another one for ``--tx-baseline``).
    ``peer_fsync``: the bare Twisted server fsyncs its deliveries.
    """
    env = dict(os.environ)
    if kind == "perl":
        argv = [PERL_SERVER, "-l", "127.0.0.1", "-p", str(port), "-c", "60", "-m", "60"]
        if user:
            argv += ["-u", user]
        env["QPSMTPD_CONFIG"] = conf
        return argv, env, os.path.dirname(conf)
    if kind == "haraka":
        return [NODE, os.path.join(HARAKA_DIR, "bin", "haraka"), "-c",
                os.path.join(os.path.dirname(conf), "haraka")], env, os.path.dirname(conf)
    if kind == "twisted":
        argv = [os.path.join(os.path.dirname(TWISTD), "python"), os.path.join(HERE, "bare_twisted.py"),
                "--port", str(port), "--maildir", os.path.join(os.path.dirname(conf), "maildir")]
        return argv + (["--fsync"] if peer_fsync else []), env, os.path.dirname(conf)
    env["PYTHONPATH"] = tx_root + os.pathsep + env.get("PYTHONPATH", "")
    argv = [TWISTD, "-n", "--pidfile=", "qpsmtpd-tx", "--config", conf,
            "--listen", "tcp:%d:interface=127.0.0.1" % port, "--max-from-ip", "60",
            "--workers", str(workers)]
    return argv, env, tx_root


def haraka_instance(root, port, fsync):
    """Write Haraka's instance dir ``root``/haraka: Haraka's default config/ with our smtp.ini
    (127.0.0.1:``port``, ``nodes=`` empty: no cluster, one process), me, host_list, plugins,
    maildir.ini (``root``/maildir, ``fsync``) and log.ini; plugins/ is bench/haraka-plugins."""
    inst = os.path.join(root, "haraka")
    conf = os.path.join(inst, "config")
    shutil.copytree(os.path.join(HARAKA_DIR, "config"), conf)
    os.symlink(HARAKA_PLUGINS, os.path.join(inst, "plugins"))
    write_config_files(conf, {
        "smtp.ini": "[main]\nlisten=127.0.0.1:%d\nnodes=\nforce_shutdown_timeout=5" % port,
        "me": "bench.example",
        "host_list": "example.com",
        "plugins": HARAKA_PLUGIN_CHAIN,
        "maildir.ini": "[main]\npath=%s\nfsync=%s" % (os.path.join(root, "maildir"),
                                                      "true" if fsync else "false"),
        "log.ini": "[main]\nlevel=warn",
    })


def haraka_available():
    """(True, '') if Haraka is installed (running bench/install_haraka.sh if not), else (False, why)."""
    if not os.access(NODE, os.X_OK):
        return False, "%s not found" % NODE
    if not os.path.exists(os.path.join(HARAKA_DIR, "bin", "haraka")):
        print("-- installing Haraka: bench/install_haraka.sh", flush=True)
        p = subprocess.run(["sh", os.path.join(HERE, "install_haraka.sh")],
                           capture_output=True, text=True)
        if p.returncode != 0:
            last = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
            return False, "bench/install_haraka.sh failed (%s)" % last[0]
    return True, ""


def twisted_available():
    """(True, '') if the venv's Python has twisted.mail, else (False, why)."""
    py = os.path.join(os.path.dirname(TWISTD), "python")
    if not os.access(py, os.X_OK):
        return False, "%s not found" % py
    p = subprocess.run([py, "-c", "import twisted.mail.smtp"], capture_output=True, text=True)
    if p.returncode != 0:
        return False, "%s cannot import twisted.mail.smtp" % py
    return True, ""


def tx_available():
    """(True, '') if twistd knows the qpsmtpd-tx plugin, else (False, why)."""
    if not os.access(TWISTD, os.X_OK):
        return False, "%s not found" % TWISTD
    env = dict(os.environ, PYTHONPATH=ROOT)
    try:
        p = subprocess.run([TWISTD, "qpsmtpd-tx", "--help"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False, "'twistd qpsmtpd-tx --help' timed out"
    if p.returncode != 0:
        last = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
        return False, "'twistd qpsmtpd-tx' is not available (%s)" % last[0]
    return True, ""


def wait_ready(proc, port, timeout=30):
    """Wait until the server on ``port`` sends a 220 greeting; False on failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    s.recv(512)
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def start_tx(conf, max_from_ip, workers=1):
    """Start qpsmtpd-tx on ``conf`` (a free port, ``--max-from-ip`` set, ``--workers``
    ``workers``, output in server.log beside ``conf``) and wait for its greeting; returns
    (process, port, log file). The caller stops it with :func:`stop_server` and closes the
    log."""
    port = free_port()
    argv, env, cwd = server_command("tx", conf, port, None, workers)
    argv[argv.index("--max-from-ip") + 1] = str(max_from_ip)
    log = open(os.path.join(os.path.dirname(conf), "server.log"), "wb")
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    wait_ready(proc, port)
    return proc, port, log


def stop_server(proc):
    """SIGTERM the server by PID, then SIGKILL it and any leftover descendant by PID."""
    family = []
    try:
        kids = smtpload._children_map()
        todo = [proc.pid]
        while todo:
            p = todo.pop()
            family.append(p)
            todo.extend(kids.get(p, ()))
    except OSError:
        family = [proc.pid]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    time.sleep(0.5)
    for pid in family[1:]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cpu_busy(seconds=1.0):
    """Percentage of all CPUs busy (any process) over ``seconds``, from /proc/stat."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


def wait_quiet(limit, max_wait):
    """Wait (up to ``max_wait`` s) until the machine is under ``limit`` % busy; return the last figure."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > limit and time.monotonic() < deadline:
        busy = cpu_busy(2)
    if busy > limit:
        print("   WARNING: machine already %.0f%% busy before this run: figures are unreliable" % busy)
    return busy


def count_new(maildir):
    """Number of files in maildir/new."""
    return sum(1 for _ in os.scandir(os.path.join(maildir, "new")))


def check_body(maildir, size):
    """True if the newest delivered message has our Message-ID and exactly the body sent.

    Line endings are normalised first (Perl's maildir plugin writes LF).
    """
    new = os.path.join(maildir, "new")
    files = sorted(os.scandir(new), key=lambda e: e.stat().st_mtime)
    if not files:
        return False
    with open(files[-1].path, "rb") as f:
        data = f.read().replace(b"\r\n", b"\n")
    want = smtpload.expected_body(size, "sender@example.net", "user@example.com").replace(b"\r\n", b"\n")
    parts = data.split(b"\n\n", 1)
    return (len(parts) == 2 and parts[1] == want
            and re.search(rb"^Message-ID: <\d{10}\.\d{7}@smtpload\.example>$", parts[0], re.M) is not None)


def renice(n):
    """A preexec_fn that changes the child's niceness by ``n`` (None when n is 0)."""
    return (lambda: os.nice(n)) if n else None


def run_load(port, pid, extra, timeout, nice=0):
    """Run smtpload.py with ``extra`` options; return its JSON result (or an error dict)."""
    argv = [sys.executable, os.path.join(HERE, "smtpload.py"), "--port", str(port),
            "--server-pid", str(pid), "--json"] + extra
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           preexec_fn=renice(nice))
    except subprocess.TimeoutExpired:
        return {"error": "smtpload timed out"}
    try:
        return json.loads(p.stdout)
    except ValueError:
        err = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": "smtpload failed: %s" % err}


def bench_server(kind, a):
    """Start ``kind``, run every scenario against it, stop it; return a list of row dicts.

    ``kind`` is 'perl', 'tx' (this checkout), 'tx-base' (the ``--tx-baseline`` checkout),
    'haraka' or 'twisted'.
    """
    user = None
    if kind == "perl" and os.geteuid() == 0:
        user = a.perl_user  # forkserver refuses to stay root; default target 'smtpd' does not exist here
    root = tempfile.mkdtemp(prefix="qpbench-%s-" % kind, dir=a.tmpdir)
    conf = make_config(root, kind == "perl", user, a.skip_plugin, a.chain, a.perl_fsync)
    maildir = os.path.join(root, "maildir")
    port = free_port()
    if kind == "haraka":
        haraka_instance(root, port, a.peer_fsync)
    tx_root = a.tx_baseline if kind == "tx-base" else ROOT
    argv, env, cwd = server_command("tx" if kind == "tx-base" else kind, conf, port, user,
                                    a.tx_workers, tx_root, a.peer_fsync)
    if kind == "tx" and a.tx_reuseport:
        argv.append("--reuseport")
    log = open(os.path.join(root, "server.log"), "wb")
    print("== %s: %s" % (kind, " ".join(argv)), flush=True)
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=renice(a.nice))
    rows, ok = [], True
    try:
        if not wait_ready(proc, port, 60):  # Haraka takes ~5 s to load its TLD lists
            print("!! %s did not answer on port %d; its log: %s/server.log%s"
                  % (kind, port, root, " (a peer: skipped)" if kind in PEERS else ""))
            log.flush()
            with open(os.path.join(root, "server.log"), errors="replace") as f:
                for line in f.read().splitlines()[-5:]:
                    print("   | " + line)
            ok = kind in PEERS  # a peer that cannot start is skipped, not a failed run
            return [], ok
        common = ["--size", str(a.size)]
        scenarios = [
            ("idle latency", ["--latency", "--messages", str(a.latency_messages)]),
            ("%d/conn" % a.per_connection, ["--concurrency", str(a.concurrency),
                                            "--per-connection", str(a.per_connection),
                                            "--duration", str(a.duration), "--messages", str(a.messages)]),
            ("1/conn", ["--concurrency", str(a.concurrency), "--per-connection", "1",
                        "--duration", str(a.duration), "--messages", str(a.messages)]),
        ]
        for name, extra in scenarios:
            busy = wait_quiet(a.quiet, a.quiet_wait)
            before = count_new(maildir)
            print("   %s (machine %.0f%% busy before) ..." % (name, busy), flush=True)
            r = run_load(port, proc.pid, common + extra, a.duration + 180, a.nice)
            r["server_kind"], r["scenario"] = kind, name
            delivered = count_new(maildir) - before
            r["delivered"] = delivered
            r["busy_before_pct"] = round(busy, 1)
            if "error" in r:
                ok = False
            elif delivered != r["accepted"]:
                ok = False
                print("!!!! MAIL COUNT MISMATCH (%s, %s): %d accepted but %d files in Maildir !!!!"
                      % (kind, name, r["accepted"], delivered))
            if r.get("failed") or r.get("errors"):
                ok = False
            rows.append(r)
            time.sleep(1)  # let connections and forked children wind down
        body_ok = check_body(maildir, a.size)
        for r in rows:
            r["body_ok"] = body_ok
        if not body_ok:
            ok = False
            print("!!!! %s: delivered message body differs from the one sent (dot-stuffing?) !!!!" % kind)
    finally:
        stop_server(proc)
        log.close()
        if a.keep or not ok:
            print("   files kept in %s" % root)
        else:
            # removed at the end of the whole run: on an ext4 without a journal (this VM's)
            # every file created within ~30 s of a removal pays for scanning past the freed
            # inodes, so removing here would slow down the next server's deliveries
            TO_REMOVE.append(root)
    return rows, ok


#: the temporary directories of servers done with, removed at the end of the run
TO_REMOVE = []


def remove_finished():
    """Remove the directories :func:`bench_server` left for the end."""
    while TO_REMOVE:
        shutil.rmtree(TO_REMOVE.pop(), ignore_errors=True)


def fmt(v, f="%.1f"):
    """Format a number or '-' for None."""
    return "-" if v is None else f % v


def cpu_ms_per_message(row, key="cpu_pct"):
    """Server CPU milliseconds per accepted message in ``row`` (None when unknown); with
    ``key="own_cpu_pct"``, of the server process alone (without its children)."""
    cpu_pct = row.get("server", {}).get(key)
    if cpu_pct is None or not row.get("accepted"):
        return None
    return cpu_pct / 100.0 * row["elapsed_s"] / row["accepted"] * 1000


def print_ratios(by, kind, base):
    """One line per scenario: ``kind`` against ``base`` (msgs/s, p50, CPU per message)."""
    for (k, scen), new in sorted(by.items()):
        old = by.get((base, scen))
        if k != kind or not old:
            continue
        p50 = (new["latency_ms"]["p50"] / old["latency_ms"]["p50"]
               if old["latency_ms"]["p50"] and new["latency_ms"]["p50"] else None)
        cpu_new, cpu_old = cpu_ms_per_message(new), cpu_ms_per_message(old)
        cpu = cpu_new / cpu_old if cpu_new and cpu_old else None
        if scen == "idle latency":  # one client: only the per-message time matters
            print("%-10s %-14s p50 x%s (mean %s ms vs %s ms)" % (
                kind + "/" + base, scen, fmt(p50, "%.2f"), fmt(new["latency_ms"]["mean"]),
                fmt(old["latency_ms"]["mean"])))
            continue
        rate = new["msgs_per_s"] / old["msgs_per_s"] if old["msgs_per_s"] else None
        print("%-10s %-14s msgs/s x%s   p50 x%s   server CPU/msg x%s" % (
            kind + "/" + base, scen, fmt(rate, "%.2f"), fmt(p50, "%.2f"), fmt(cpu, "%.2f")))


def print_columns(lines):
    """Print ``lines`` (tuples of cells, the header first) as left-aligned columns."""
    widths = [max(len(str(l[i])) for l in lines) for i in range(len(lines[0]))]
    print()
    for l in lines:
        print("  ".join(str(c).ljust(w) for c, w in zip(l, widths)).rstrip())


def print_table(rows, wanted=()):
    """Print the comparison table and the ratios of tx to each other server; say so for a
    peer in ``wanted`` (the kinds asked for) that has no rows."""
    hdr = ("server", "scenario", "msgs/s", "p50 ms", "p99 ms", "mean ms", "conn ms",
           "RSS MiB", "PSS MiB", "procs", "srv CPU%", "CPU ms/msg", "own ms/msg", "vcsw/msg", "gen CPU%", "other%", "errors",
           "maildir")
    lines = [hdr]
    for r in rows:
        if "error" in r:
            lines.append((r["server_kind"], r["scenario"], r["error"]) + ("",) * (len(hdr) - 3))
            continue
        s, lat = r.get("server", {}), r["latency_ms"]
        errs = sum(r["errors"].values())
        diff = r["delivered"] - r["accepted"]
        mail = "ok" if not diff else ("LOST %d" % -diff if diff < 0 else "EXTRA %d" % diff)
        if not r.get("body_ok", True):
            mail += ", BAD BODY"
        lines.append((r["server_kind"], r["scenario"], fmt(r["msgs_per_s"]), fmt(lat["p50"]),
                      fmt(lat["p99"]), fmt(lat["mean"]), fmt(r["setup_ms"]["p50"]), fmt(s.get("peak_rss_kib", 0) / 1024),
                      fmt(s.get("peak_pss_kib", 0) / 1024), str(s.get("peak_procs", "-")),
                      fmt(s.get("cpu_pct"), "%.0f"), fmt(cpu_ms_per_message(r), "%.2f"),
                      fmt(cpu_ms_per_message(r, "own_cpu_pct"), "%.2f"),
                      fmt(s.get("voluntary_switches_per_msg")),
                      fmt(r.get("client_cpu_pct"), "%.0f"),
                      fmt(r.get("other_cpu_pct"), "%.0f"), str(errs), mail))
    print_columns(lines)
    busy = [r for r in rows if (r.get("other_cpu_pct") or 0) > 25]
    if busy:
        print("WARNING: other processes used the CPU during: %s -- rerun on a quiet machine"
              % ", ".join("%s %s (%.0f%%)" % (r["server_kind"], r["scenario"], r["other_cpu_pct"])
                          for r in busy))
    by = {(r["server_kind"], r["scenario"]): r for r in rows if "error" not in r}
    ran = {k for k, _ in by}
    for base in ("perl",) + PEERS + ("tx-base",):
        if "tx" in ran and base in wanted and base not in ran:
            print("tx/%s: no ratios, %s did not run (skipped or failed: see above)" % (base, base))
        print_ratios(by, "tx", base)


def main():
    """Entry point."""
    p = argparse.ArgumentParser(description="qpsmtpd-tx vs Perl qpsmtpd, Haraka and bare Twisted")
    p.add_argument("--only", choices=("perl", "tx") + PEERS, help="benchmark one server only")
    p.add_argument("--no-peers", action="store_true",
                   help="leave out Haraka and the bare Twisted server (run by default)")
    p.add_argument("--peer-fsync", action="store_true",
                   help="Haraka's and bare Twisted's Maildir delivery fsync the file and new/ "
                        "like qpsmtpd-tx (default: no fsync, as they are usually run)")
    p.add_argument("--duration", type=float, default=15, help="seconds per load scenario (15)")
    p.add_argument("--messages", type=int, default=50000,
                   help="at most this many messages per load scenario (50000)")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--per-connection", type=int, default=40)
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--latency-messages", type=int, default=50, help="messages in the idle latency run (50)")
    p.add_argument("--perl-user", default="qpsmtpd",
                   help="user forkserver switches to when started as root (qpsmtpd)")
    p.add_argument("--quiet", type=float, default=10,
                   help="wait for the machine to be under this %% CPU busy before each run (10)")
    p.add_argument("--quiet-wait", type=float, default=120,
                   help="give up waiting for quiet after this many seconds and warn (120)")
    p.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0,
                   help="niceness change for server and load generator, so that other work on a "
                        "shared machine disturbs less (-10 as root, else 0)")
    p.add_argument("--skip-plugin", action="append", default=[], metavar="NAME",
                   help="leave this plugin out of the chain, for both servers (repeatable)")
    p.add_argument("--chain", choices=sorted(CHAINS), default="short",
                   help="plugin chain: short (both servers) or full (every network-free "
                        "plugin, qpsmtpd-tx only; implies --only tx)")
    p.add_argument("--tmpdir", default=None,
                   help="where the config, spool and Maildir go (default: the system temp dir); "
                        "/dev/shm (tmpfs, where fsync costs nothing) compares the servers' CPU "
                        "cost without the disk, since Perl's queue/maildir never fsyncs")
    p.add_argument("--perl-fsync", action="store_true",
                   help="Perl delivers with bench/perl-plugins/queue/maildir_fsync (fsync like "
                        "qpsmtpd-tx) instead of 0.94's queue/maildir, which never fsyncs")
    p.add_argument("--tx-workers", type=int, default=1,
                   help="qpsmtpd-tx --workers N: processes serving the port (1)")
    p.add_argument("--tx-reuseport", action="store_true",
                   help="qpsmtpd-tx --reuseport (with --tx-workers 2 or more): a listening "
                        "socket per process; not passed to the --tx-baseline checkout")
    p.add_argument("--tx-baseline", metavar="CHECKOUT",
                   help="also run qpsmtpd-tx from this other checkout (e.g. a `git worktree` of "
                        "the previous commit) in the same run, and print tx/tx-base ratios")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    p.add_argument("--json-out", help="also write all results to this JSON file")
    a = p.parse_args()
    if a.chain == "full":
        a.only = "tx"

    rows, ok = [], True
    kinds = (("perl", "tx") + (("tx-base",) if a.tx_baseline else ())
             + (() if a.no_peers or a.chain == "full" else PEERS))
    checks = {"tx": tx_available, "tx-base": tx_available, "haraka": haraka_available,
              "twisted": twisted_available}
    kinds = [k for k in kinds if not a.only or a.only == k.split("-")[0]]
    try:
        for kind in kinds:
            avail, why = checks.get(kind, lambda: (True, ""))()
            if not avail:
                print("-- skipping %s: %s" % (kind, why))
                continue
            r, k = bench_server(kind, a)
            rows += r
            ok = ok and k
    finally:
        remove_finished()
    return finish(rows, ok, a.json_out, lambda rows: print_table(rows, kinds),
                  "see messages above (errors, lost mail or a server that did not start)")


def finish(rows, ok, json_out, print_table, problems):
    """The end of a benchmark: print the table of ``rows`` (``print_table(rows)``), write them
    as JSON to ``json_out`` (if given), say ``problems`` unless ``ok``; the exit status."""
    if rows:
        print_table(rows)
    if json_out:
        with open(json_out, "w") as f:
            json.dump(rows, f, indent=2)
    if not ok:
        print("\nPROBLEMS: " + problems)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
