"""The test suite's private DNS server: real answers, delays, silence and SERVFAIL.

Why NSD (Debian's ``nsd``): it is authoritative only (it never recurses, so nothing a test
asks leaves the machine: a name outside the test zones gets REFUSED at once), it reads one
small config file and standard zone files, it starts in a fraction of a second, and it runs as root
without any set-up (no chroot, no user, no database). Zones are added, reloaded and removed
while it runs through ``nsd-control`` on a private unix control socket (no keys needed);
a change is in force in 10-15 ms (measured here), where a restart takes ~0.2 s until NSD
answers and would cut off the queries in flight (see :meth:`PrivateDNS._change` for how "in
force" is checked).

It listens on port 53 of a private loopback address, ``127.53.Y.Z`` chosen from the test
process's PID (and moved on if taken), so that two test runs do not clash. Port 53 because
``/etc/resolv.conf`` and Perl's Net::DNS cannot name another port: a server under test is
pointed at it with a private resolv.conf (:mod:`tests.support.resolv_conf`, and the
``nameservers=`` keyword of ``start_twistd`` and ``start_forkserver``). A server in the test
process (``tests.support.server.start_server``) is given it with the config file
``dns_servers`` instead (``{"dns_servers": dns.address}``).

One server per test run (:data:`private_dns`), stopped by its PID at exit, its temp directory
removed; each test uses its own zones (:meth:`PrivateDNS.unique_zone`), so tests do not
depend on each other::

    dns = private_dns()
    zone = dns.set_zone(dns.unique_zone("bl"), [("2.0.0.127", "A", "127.0.0.2"),
                                                ("2.0.0.127", "TXT", "listed " * 100)])
    dns.query("2.0.0.127." + zone, "TXT").answers        # what NSD answers (blocking)
    dns.set_delay(zone, 0.5)                              # via dns.shaped_address: late
    start_twistd(self, config, nameservers=[dns.shaped_address])

Zones (records as zone-file lines or ``(name, type, data[, ttl])``: see
:mod:`tests.support.dns_zones`): :meth:`~PrivateDNS.set_zone` (add or replace),
:meth:`~PrivateDNS.servfail_zone` (answers SERVFAIL: NSD does so for a configured zone whose
file is missing or broken), :meth:`~PrivateDNS.set_ptr`, :meth:`~PrivateDNS.remove_zone`.
The names of addresses are :mod:`qpsmtpd_tx.dns.names`' (``reverse_name``, and
``list_query_name`` for a DNS list zone's records).

Delay and silence: ``dns.shaped_address`` is a second private address (``127.54.Y.Z``, port
53) where a relay (:mod:`tests.support.dns_shaper`, its own process, started at first use)
passes queries to NSD and its answers back, late or never for the zones given to
:meth:`~PrivateDNS.set_delay` / :meth:`~PrivateDNS.set_silent` (until
:meth:`~PrivateDNS.clear_shaping`). ``dns.address`` itself always answers at once. Zones and
rules outlive the test that set them (unique zone names keep that harmless); a test that
shapes a name others use clears it: ``self.addCleanup(dns.clear_shaping, zone)``.

Without the ``nsd`` package (``.ci/run`` installs it), or not as root (port 53), the tests
that need it are skipped with the reason.
"""

import itertools
import os
import re
import socket
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SkipTest

from qpsmtpd_tx.dns.names import reverse_name
from tests.support import dns_query
from tests.support.daemon import PrivateDaemon, die_with_parent, spawn, wait_started
from tests.support.dns_zones import DEFAULT_TTL, normalise, zone_text
from tests.support.processes import poll_until, read_text, stop_process
from tests.support.shared import SharedDaemon

NSD = "/usr/sbin/nsd"
NSD_CONTROL = "/usr/sbin/nsd-control"
NSD_CHECKZONE = "/usr/sbin/nsd-checkzone"
SHAPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dns_shaper.py")
PORT = 53
#: seconds a zone change may take to be in force, and the daemons to start
CHANGE_TIMEOUT = 10.0
START_TIMEOUT = 20.0
#: the pattern (in nsd.conf) every zone is added with
PATTERN = "qptx"
#: the zone that :meth:`PrivateDNS.unique_zone` names are made under (RFC 6761 reserves .test)
UNIQUE_PARENT = "qptx.test"
_NAME = re.compile(r"^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")

# rrl-ratelimit 0: NSD limits answers per client netblock by default (200/s), which a
# benchmark from 127.0.0.1 would hit at once.
CONFIG = """\
server:
    ip-address: {address}
    port: {port}
    do-ip4: yes
    do-ip6: no
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "{dir}/zones"
    database: ""
    zonelistfile: "{dir}/zone.list"
    xfrdfile: "{dir}/xfrd.state"
    xfrdir: "{dir}"
    pidfile: "{dir}/nsd.pid"
    logfile: "{dir}/nsd.log"
    verbosity: 1
    hide-version: yes
    rrl-ratelimit: 0
    tcp-count: 200
remote-control:
    control-enable: yes
    control-interface: "{dir}/control.sock"
pattern:
    name: "{pattern}"
    zonefile: "%s.zone"
"""


class PrivateDNS(PrivateDaemon):
    """The running private NSD: ``address`` (its IP; port 53), ``dir``, ``process``; the
    zone helpers; and, through the relay, ``shaped_address`` and the delay/silence rules."""

    log_files = ("nsd.log", "nsd.out", "shaper.out")

    def __init__(self, directory, address, process):
        super().__init__(directory, PORT, process)
        self.address = address
        self.config = os.path.join(directory, "nsd.conf")
        #: origin → serial of the zone served, or None for a SERVFAIL zone
        self.zones = {}
        self._serials = {}
        self._unique = itertools.count(1)
        #: the relay's Popen once started (see ``shaped_address``)
        self.relay_process = None
        self._shaper_address = None

    # ---- zones -----------------------------------------------------------------------

    def unique_zone(self, prefix="zone"):
        """A zone name no other test of this run uses: ``PREFIX<n>.qptx.test`` (not created:
        pass it to :meth:`set_zone`)."""
        return "%s%d.%s" % (prefix.lower(), next(self._unique), UNIQUE_PARENT)

    def set_zone(self, origin, records=(), ttl=DEFAULT_TTL):
        """Serve zone ``origin`` with ``records`` (replacing what it held), and return only
        once NSD answers with it; returns ``origin`` (lower case, no final dot). A record NSD
        refuses raises ValueError, with NSD's complaint and the zone file."""
        origin = _checked_origin(origin)
        serial = self._serials.get(origin, 0) + 1
        text = zone_text(origin, records, serial, ttl)
        path = self._zone_file(origin)
        self._check_zone(origin, text, path + ".new")
        os.replace(path + ".new", path)

        def serving(answer):
            return answer.rCode == 0 and _serial(answer) == serial
        if origin in self.zones:
            self._change(["reload", origin], origin, serving)
        else:
            self._change(["addzone", origin, PATTERN], origin, serving)
        self.zones[origin] = self._serials[origin] = serial
        return origin

    def servfail_zone(self, origin):
        """Make ``origin`` a zone NSD answers SERVFAIL for (configured, but its zone file is
        missing); returns ``origin``."""
        origin = _checked_origin(origin)
        if origin in self.zones:
            self.remove_zone(origin)
        self._change(["addzone", origin, PATTERN], origin, lambda answer: answer.rCode == 2)
        self.zones[origin] = None
        return origin

    def remove_zone(self, origin):
        """Stop serving ``origin`` (NSD then answers REFUSED for it)."""
        origin = _checked_origin(origin)
        if origin not in self.zones:
            return
        self._change(["delzone", origin], origin, lambda answer: answer.rCode == 5)
        del self.zones[origin]
        if os.path.exists(self._zone_file(origin)):
            os.remove(self._zone_file(origin))

    def set_ptr(self, ip, *names, ttl=DEFAULT_TTL):
        """Serve PTR records ``names`` for address ``ip`` (IPv4 or IPv6) in a zone of its own
        (its reverse name, under in-addr.arpa or ip6.arpa); returns that name. Remove it with
        :meth:`remove_zone` if another test may use the same address."""
        origin = reverse_name(ip)
        return self.set_zone(origin, [("@", "PTR", name) for name in names], ttl)

    def query(self, name, rtype="A", tcp=False, shaped=False, timeout=dns_query.QUERY_TIMEOUT):
        """Ask NSD (or, with ``shaped``, the relay) one question, blocking; the answer as a
        ``twisted.names.dns.Message``. Raises ``dns_query.NoAnswer`` after ``timeout``."""
        address = self.shaped_address if shaped else self.address
        return dns_query.query(address, name, rtype, tcp=tcp, timeout=timeout)

    def _zone_file(self, origin):
        return os.path.join(self.dir, "zones", origin + ".zone")

    def _check_zone(self, origin, text, path):
        with open(path, "w") as f:
            f.write(text)
        checked = subprocess.run([NSD_CHECKZONE, origin, path], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
        if checked.returncode != 0:
            os.remove(path)
            numbered = "".join("%4d  %s\n" % (n, line) for n, line in enumerate(text.splitlines(), 1))
            raise ValueError("zone %s: nsd-checkzone refused it:\n%s\nthe zone file:\n%s"
                             % (origin, checked.stdout.decode(errors="replace").strip(), numbered))

    def _change(self, command, origin, in_force):
        """Run ``nsd-control COMMAND`` and wait until it is in force.

        NSD applies a change by starting new server processes and then ending the old ones;
        for a moment both answer, the old ones with the old data. So a change is in force
        when a SOA query for ``origin`` gets the answer ``in_force`` wants AND the server
        processes that ran before the command are gone."""
        before = self.server_processes()
        self._control(*command)

        def done():
            if any(alive(pid) for pid in before):
                return False
            try:
                return in_force(dns_query.query(self.address, origin, "SOA", timeout=1.0))
            except dns_query.NoAnswer:
                return False
        if not poll_until(done, CHANGE_TIMEOUT, 0.005):
            raise RuntimeError("NSD: %s was not in force after %.0f s\n%s"
                               % (" ".join(command), CHANGE_TIMEOUT, self.log()[-3000:]))

    def _control(self, *command):
        done = subprocess.run([NSD_CONTROL, "-c", self.config] + list(command),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = done.stdout.decode(errors="replace").strip()
        if done.returncode != 0 or not output.startswith("ok"):
            raise RuntimeError("nsd-control %s: %s\n%s" % (" ".join(command), output,
                                                            self.log()[-3000:]))

    def server_processes(self):
        """The PIDs of NSD's server processes (its grandchildren), which answer queries."""
        return [grandchild for child in _children(self.process.pid) for grandchild in _children(child)]

    # ---- delay and silence (the relay) ---------------------------------------------------

    @property
    def shaped_address(self):
        """The relay's IP (port 53), started at first use: NSD's answers, delayed or dropped
        as :meth:`set_delay` and :meth:`set_silent` say."""
        self._relay()
        return self._shaper_address

    def set_delay(self, zone_suffix, seconds):
        """Through ``shaped_address``, answers for ``zone_suffix`` and the names under it
        come ``seconds`` late (replacing any rule for that suffix; the longest matching
        suffix wins)."""
        self._shaper_command("delay %s %r" % (normalise(zone_suffix), float(seconds)))

    def set_silent(self, zone_suffix):
        """Through ``shaped_address``, queries for ``zone_suffix`` and the names under it get
        no answer at all."""
        self._shaper_command("silent %s" % normalise(zone_suffix))

    def clear_shaping(self, zone_suffix=None):
        """Drop the rule for ``zone_suffix`` (every rule without one)."""
        self._shaper_command("clear %s" % normalise(zone_suffix) if zone_suffix else "clear")

    def shaper_stats(self):
        """What the relay has done so far: ``{"queries": N, "answered": N, "dropped": N,
        "tcp": N}`` (``tcp``: the queries that came over TCP)."""
        reply = self._shaper_command("stats")
        return {key: int(value) for key, value in (word.split("=") for word in reply.split()[1:])}

    def _relay(self):
        if self.relay_process is None:
            self._shaper_address = free_private_address(54)
            control = os.path.join(self.dir, "shaper.sock")
            self.relay_process, _ = spawn([sys.executable, SHAPER, self._shaper_address, self.address, control],
                                    self.dir, "shaper.out", preexec_fn=die_with_parent)
            if not poll_until(lambda: self.relay_process.poll() is not None or _answers_ping(control),
                              START_TIMEOUT, 0.02) or self.relay_process.poll() is not None:
                raise RuntimeError("the DNS relay did not start:\n%s"
                                   % read_text(os.path.join(self.dir, "shaper.out"))[-3000:])
        if self.relay_process.poll() is not None:
            raise RuntimeError("the DNS relay exited (status %s):\n%s"
                               % (self.relay_process.returncode,
                                  read_text(os.path.join(self.dir, "shaper.out"))[-3000:]))
        return os.path.join(self.dir, "shaper.sock")

    def _shaper_command(self, line):
        reply = _control_line(self._relay(), line)
        if not reply.startswith("ok"):
            raise ValueError("DNS relay: %s: %s" % (line, reply))
        return reply

    def stop(self):
        """Stop the relay (if started) and NSD by their PIDs, remove the directory."""
        if self.relay_process is not None:
            stop_process(self.relay_process)
        super().stop()


def free_private_address(second_octet):
    """``127.<second_octet>.Y.Z`` from this process's PID, the next one if port 53 is taken
    there (UDP or TCP)."""
    n = os.getpid() % 62500
    for step in range(200):
        m = (n + step) % 62500
        address = "127.%d.%d.%d" % (second_octet, m // 250, m % 250 + 1)
        if _port_free(address):
            return address
    raise RuntimeError("no free private address 127.%d.*.* with port 53 free" % second_octet)


def _port_free(address):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((address, PORT))
            except OSError:
                return False
    return True


def start_dns():
    """Start a private NSD (no zones yet); SkipTest if it cannot run here. The caller
    stops it."""
    if not os.access(NSD, os.X_OK):
        raise SkipTest("nsd is not installed (apt-get install nsd; .ci/run does)")
    if os.geteuid() != 0:
        raise SkipTest("the private DNS server listens on port 53, which needs root")
    directory = tempfile.mkdtemp(prefix="qptx-nsd-")
    os.chmod(directory, 0o755)
    os.mkdir(os.path.join(directory, "zones"))
    address = free_private_address(53)
    with open(os.path.join(directory, "nsd.conf"), "w") as f:
        f.write(CONFIG.format(address=address, port=PORT, dir=directory, pattern=PATTERN))
    process, started = spawn([NSD, "-d", "-c", os.path.join(directory, "nsd.conf")],
                             directory, "nsd.out", preexec_fn=die_with_parent)
    server = PrivateDNS(directory, address, process)

    def ready():
        def answering():
            if process.poll() is not None:
                raise RuntimeError("nsd exited with status %s" % process.returncode)
            try:
                return dns_query.query(address, "ready.invalid", "SOA", timeout=0.2).rCode == 5
            except (dns_query.NoAnswer, OSError):
                return False
        if not poll_until(answering, START_TIMEOUT, 0.01):
            raise RuntimeError("no answer on %s port 53 within %.0f s" % (address, START_TIMEOUT))
    return wait_started(server, "nsd", ready, started)


def _checked_origin(origin):
    origin = normalise(origin)
    if not _NAME.match(origin):
        raise ValueError("not a zone name the helpers accept: %r" % origin)
    return origin


def _serial(answer):
    for record in answer.answers:
        if record.type == 6:  # SOA
            return record.payload.serial
    return None


def _children(pid):
    return [int(child) for child in read_text("/proc/%d/task/%d/children" % (pid, pid)).split()]


def alive(pid):
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    stat = read_text("/proc/%d/stat" % pid)
    return bool(stat) and stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _control_line(path, line, timeout=10.0):
    """Send one line to a unix stream socket, return the first line of the reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(line.encode("utf-8") + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode("utf-8", "replace").strip()


def _answers_ping(path):
    try:
        return _control_line(path, "ping", timeout=1.0) == "ok"
    except OSError:
        return False


#: the private DNS server of this test run: ``private_dns()`` starts it at the first call
#: (SkipTest, remembered, if it cannot run here), stops it at exit
private_dns = SharedDaemon("DNS server (NSD)", start_dns).get
