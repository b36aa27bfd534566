"""The test kit's network namespaces (tests/support/netns.py): made with only loopback and a
veth link to the host, and removed with everything they ran, even when the test fails."""

import subprocess

from twisted.trial import unittest

from tests.support import netns
from tests.support.processes import poll_until, read_text


class NamespaceTests(unittest.TestCase):
    def run_inside(self, namespace, argv):
        process = namespace.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return process.communicate(timeout=30)[0].decode()

    def test_link_and_nothing_else(self):
        namespace = netns.make_namespace(self)
        self.assertEqual(self.run_inside(namespace, ["ip", "route"]).split()[0],
                         "10.231.%d.0/30" % namespace.number)
        self.assertEqual(len(self.run_inside(namespace, ["ip", "route"]).splitlines()), 1)
        links = sorted(line.split()[0].split("@")[0] for line in
                       self.run_inside(namespace, ["ip", "-br", "link"]).splitlines())
        self.assertEqual(links, sorted(["lo", namespace.inner_if]))
        # the host reaches the inside over the link (tests/test_haproxy_cluster.py connects)
        route = subprocess.run(["ip", "route", "get", namespace.address], capture_output=True,
                               text=True).stdout
        self.assertIn("dev %s src %s" % (namespace.host_if, namespace.host_address), route)

    def test_two_namespaces_get_different_networks(self):
        first, second = netns.make_namespace(self), netns.make_namespace(self)
        self.assertNotEqual(first.number, second.number)
        self.assertNotEqual(first.address, second.address)

    def test_removed_with_its_processes(self):
        """What a failed test leaves (a process still running, its child too) is stopped by
        PID and the namespace and both veth ends are gone."""
        case = unittest.TestCase()     # a test of its own, whose cleanups we run here
        namespace = netns.make_namespace(case)
        sleeper = namespace.spawn(["sh", "-c", "sleep 300 & exec sleep 301"])
        self.assertTrue(poll_until(lambda: len(namespace.pids()) == 2, 10))
        pids = namespace.pids()
        namespace.grace = 0.5     # the orphaned "sleep 300" would never end by itself
        case.doCleanups()
        self.assertIsNotNone(sleeper.poll())
        for pid in pids:
            self.assertNotIn("sleep", read_text("/proc/%d/cmdline" % pid), pid)
        self.assertNotIn(namespace.name, subprocess.run(["ip", "netns", "list"],
                                                        capture_output=True, text=True).stdout)
        links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
        self.assertNotIn(namespace.host_if, links)
