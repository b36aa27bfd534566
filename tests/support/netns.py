"""Network namespaces for tests that stand for separate hosts (needs root and ``ip``).

``make_namespace(testcase)`` makes a namespace ``qptxN`` with a veth pair to the host's
namespace on the private network ``10.231.N.0/30``: ``host_address`` (``10.231.N.1``, on the
host's end ``qptxNh``) and ``address`` (``10.231.N.2``, on ``qptxNn`` inside, with the
namespace's own ``lo``; no route anywhere else). ``N`` is the first free one: the namespace
name is taken atomically by ``ip netns add`` (so parallel test runs do not share one), and a
number whose addresses or interface names are in use on the host is skipped.

``namespace.spawn(argv, ...)`` runs a process inside (``ip netns exec``, which execs it: the
PID is the process's own) and records it. At the test's end, even after a failure, every
recorded process still running is stopped by its PID (SIGTERM, then SIGKILL), then any
process still inside the namespace (a child of one of them) by its PID, and the namespace
and the veth pair are removed. Without root or ``ip``, or where namespaces cannot be made
(a container without CAP_SYS_ADMIN), the test is skipped with the reason.
"""

import ipaddress
import os
import shutil
import signal
import subprocess

from twisted.trial.unittest import SkipTest

from tests.support.daemon import die_with_parent
from tests.support.processes import poll_until, stop_process

IP = shutil.which("ip") or "/usr/sbin/ip"
NETWORK = "10.231.%d.0/30"
PREFIX = "qptx"


def _ip(*args, check=True):
    """Run ``ip ARGS``; its standard output. RuntimeError with its message if it fails."""
    done = subprocess.run([IP] + list(args), capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), done.stderr.strip()))
    return done.stdout


def _in_use(network, names):
    """True if an address of ``network`` or an interface of ``names`` exists on the host."""
    for line in _ip("-o", "addr", "show").splitlines():
        words = line.split()
        if len(words) > 1 and words[1].split("@")[0] in names:
            return True
        for word, value in zip(words, words[1:]):
            if word in ("inet", "inet6") and ipaddress.ip_interface(value).ip in network:
                return True
    return False


class Namespace:
    """A namespace made by :func:`make_namespace`: ``name``, ``address`` (inside),
    ``host_address`` (the host's end), the interfaces ``host_if`` / ``inner_if``, and the
    ``processes`` started in it."""

    def __init__(self, number):
        self.number = number
        self.name = "%s%d" % (PREFIX, number)
        network = ipaddress.ip_network(NETWORK % number)
        self.host_address, self.address = (str(a) for a in network.hosts())
        self.host_if, self.inner_if = self.name + "h", self.name + "n"
        self.processes = []
        #: seconds the processes left inside after the recorded ones stopped may take to end
        self.grace = 10.0

    def _configure(self):
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.inner_if,
            "netns", self.name)
        _ip("addr", "add", self.host_address + "/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.name, "addr", "add", self.address + "/30", "dev", self.inner_if)
        _ip("-n", self.name, "link", "set", self.inner_if, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def spawn(self, argv, **popen_kwargs):
        """Start ``argv`` inside the namespace (dies with the test process); the Popen,
        recorded for the cleanup."""
        popen_kwargs.setdefault("preexec_fn", die_with_parent)
        process = subprocess.Popen([IP, "netns", "exec", self.name] + list(argv),
                                   **popen_kwargs)
        self.processes.append(process)
        return process

    def pids(self):
        """The PIDs of the processes inside the namespace now."""
        return [int(p) for p in _ip("netns", "pids", self.name, check=False).split()]

    def remove(self):
        """Stop what runs inside (by PID), remove the namespace and the veth pair."""
        for process in self.processes:
            stop_process(process)
        if not poll_until(lambda: not self.pids(), self.grace):
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            poll_until(lambda: not self.pids(), 10)
        _ip("netns", "del", self.name, check=False)
        # deleting the namespace deletes the inner end, and so the pair; unless it is gone
        if _ip("link", "show", self.host_if, check=False):
            _ip("link", "del", self.host_if, check=False)


def _can_make_namespaces():
    """None if namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not os.access(IP, os.X_OK):
        return "%s is missing (package iproute2)" % IP
    return None


def make_namespace(testcase, first=0):
    """A new :class:`Namespace` (numbers from ``first`` on), removed at the test's end."""
    reason = _can_make_namespaces()
    if reason:
        raise SkipTest(reason)
    for number in range(first, 256):
        namespace = Namespace(number)
        if _in_use(ipaddress.ip_network(NETWORK % number),
                   {namespace.host_if, namespace.inner_if}):
            continue
        made = subprocess.run([IP, "netns", "add", namespace.name], capture_output=True,
                              text=True)
        if made.returncode != 0:
            if "exist" in made.stderr:
                continue      # another test run has this one
            raise SkipTest("cannot make a network namespace here: %s" % made.stderr.strip())
        testcase.addCleanup(namespace.remove)
        namespace._configure()
        return namespace
    raise RuntimeError("no free network 10.231.N.0/30 for a namespace")

