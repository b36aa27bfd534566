"""``qpsmtpd-tx forkserver``: qpsmtpd-forkserver's command line mapped onto ``twistd qpsmtpd-tx``."""

import os
import pwd
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request

from twisted.trial import unittest

from qpsmtpd_tx import forkserver
from tests.support.harness import write_config
from tests.support.processes import (CHECKOUT, readable_temp_dir, reserve_port, server_env,
                                      stop_process, wait_for_port)
from tests.test_startup import assert_nothing_left

#: as root the server must switch to an unprivileged user, as qpsmtpd-forkserver does
RUN_AS = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name


def parse(argv):
    return forkserver.build_parser().parse_args(argv)


class MappingTests(unittest.TestCase):
    """Each forkserver option becomes the twistd / qpsmtpd-tx option of the same meaning."""

    def test_debian_init_script_line(self):
        # /etc/init.d/qpsmtpd: --port $PORT --user $RUNAS --pid-file … $LISTEN --detach $EXTRA_ARGS
        args = parse(["--port", "25", "--user", RUN_AS, "--pid-file", "/run/qpsmtpd/qpsmtpd.pid",
                      "--listen-address", "127.0.0.1", "--listen-address", "[::1]", "--detach",
                      "-c", "40", "-m", "3", "-H"])
        user = ["--uid", RUN_AS] if os.geteuid() == 0 else []
        self.assertEqual(forkserver.twistd_argv(args), [
            "twistd", "--pidfile=/run/qpsmtpd/qpsmtpd.pid", "--syslog", "--prefix=qpsmtpd-tx"]
            + user + ["qpsmtpd-tx", "--listen", "tcp:25:interface=127.0.0.1",
                      "--listen", r"tcp6:25:interface=\:\:1",
                      "--limit-connections", "40", "--max-from-ip", "3", "--no-rdns"])

    def test_foreground_defaults(self):
        argv = forkserver.twistd_argv(parse(["-l", "0.0.0.0", "--config", "/etc", "-u", RUN_AS]))
        self.assertEqual(argv[:3], ["twistd", "--nodaemon", "--pidfile="])
        self.assertEqual(argv[argv.index("qpsmtpd-tx"):], [
            "qpsmtpd-tx", "--config", "/etc", "--listen", "tcp:2525:interface=0.0.0.0",
            "--limit-connections", "500", "--max-from-ip", "5"])

    def test_our_additions(self):
        argv = forkserver.twistd_argv(parse(["-l", "127.0.0.1", "-u", RUN_AS, "--workers", "2",
                                             "--metrics", "tcp:9125:interface=127.0.0.1"]))
        self.assertEqual(argv[-4:], ["--workers", "2", "--metrics", "tcp:9125:interface=127.0.0.1"])

    def test_addresses_and_ports(self):
        self.assertEqual(
            forkserver.listen_endpoints(["127.0.0.1", "[::]:26", "localhost"], ["25", "587"]),
            ["tcp:25:interface=127.0.0.1", "tcp:587:interface=127.0.0.1",
             r"tcp6:26:interface=\:\:", "tcp:25:interface=localhost", "tcp:587:interface=localhost"])
        for addresses, ports in ((["1.2.3.4:x"], []), (["127.0.0.1"], ["smtp"]),
                                 (["127.0.0.1"], ["70000"]), (["a b"], [])):
            self.assertRaises(forkserver.ForkserverUsageError, forkserver.listen_endpoints,
                              addresses, ports)

    def test_unknown_user(self):
        self.assertRaises(forkserver.ForkserverUsageError, forkserver.twistd_argv,
                          parse(["-u", "no-such-user-here"]))

    def test_root_without_user_becomes_smtpd(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest("only root switches to smtpd by default")
        try:
            pwd.getpwnam("smtpd")
            self.assertIn("--uid", forkserver.twistd_argv(parse([])))
        except KeyError:
            error = self.assertRaises(forkserver.ForkserverUsageError, forkserver.twistd_argv,
                                      parse([]))
            self.assertIn("unable to determine uid/gid for smtpd", str(error))


class ForkserverProcessTests(unittest.TestCase):
    """A real ``qpsmtpd-tx forkserver`` process on a free port."""

    def setUp(self):
        # the server reads its config as RUN_AS
        self.dir = readable_temp_dir(self, "qpsmtpd-tx-forkserver-")
        self.config = os.path.join(self.dir, "config")
        self.maildir = os.path.join(self.dir, "maildir")
        spool = os.path.join(self.dir, "spool")
        write_config(self.config, ["hosts_allow", "rcpt_ok", "queue/maildir %s" % self.maildir],
                     {"spool_dir": spool})
        entry = pwd.getpwnam(RUN_AS)
        for path in (spool, self.maildir):
            os.makedirs(path)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self.port = reserve_port(self)

    def command(self, *options):
        return [sys.executable, "-m", "qpsmtpd_tx", "forkserver", "-l", "127.0.0.1",
                "-p", str(self.port), "-u", RUN_AS, "--config", self.config] + list(options)

    def first_connection(self, timeout=20.0):
        """A client connection, once the server has seen wait_for_port's probe go away."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return smtplib.SMTP("127.0.0.1", self.port, timeout=10)
            except smtplib.SMTPConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def uid_of(self, pid):
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])

    def test_foreground_limit_connections_and_user(self):
        log = open(os.path.join(self.dir, "log"), "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen(self.command("-c", "1", "-m", "5"), cwd=CHECKOUT,
                                   env=server_env(), stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(stop_process, process)
        wait_for_port(self.port, process)
        self.assertEqual(self.uid_of(process.pid), pwd.getpwnam(RUN_AS).pw_uid)
        with self.first_connection() as first:
            self.assertEqual(first.noop()[0], 250)
            # -c 1 is the concurrent connection limit (as in qpsmtpd-forkserver)
            with self.assertRaises(smtplib.SMTPConnectError) as caught:
                smtplib.SMTP("127.0.0.1", self.port, timeout=10)
            self.assertEqual(caught.exception.smtp_code, 421)
            self.assertIn(b"Too many connections", caught.exception.smtp_error)
            self.assertEqual(first.sendmail("a@b.example", ["u@example.com"], b"Subject: x\r\n\r\nhi\r\n"), {})
        self.assertEqual(len(os.listdir(os.path.join(self.maildir, "new"))), 1)
        self.assertIn(stop_process(process), (0, -signal.SIGTERM))   # twistd ends by the signal

    def test_detach_pid_file_and_max_from_ip(self):
        pidfile = os.path.join(self.dir, "qpsmtpd.pid")
        result = subprocess.run(self.command("--detach", "--pid-file", pidfile, "-m", "1",
                                             "--logfile", os.path.join(self.dir, "log")),
                                cwd=CHECKOUT, env=server_env(), capture_output=True, timeout=60)
        self.addCleanup(assert_nothing_left, self, self.config)
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        with open(pidfile) as f:
            pid = int(f.read())
        self.addCleanup(os.kill, pid, signal.SIGTERM)
        self.assertEqual(self.uid_of(pid), pwd.getpwnam(RUN_AS).pw_uid)
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as first:
            self.assertEqual(first.noop()[0], 250)
            # -m 1: one connection per IP (hosts_allow)
            with self.assertRaises(smtplib.SMTPConnectError) as caught:
                smtplib.SMTP("127.0.0.1", self.port, timeout=10)
            self.assertEqual(caught.exception.smtp_code, 451)

    def test_metrics_endpoint(self):
        metrics_port = reserve_port(self)
        log = open(os.path.join(self.dir, "log"), "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            self.command("--metrics", "tcp:%d:interface=127.0.0.1" % metrics_port), cwd=CHECKOUT,
            env=server_env(), stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(stop_process, process)
        wait_for_port(self.port, process)
        with self.first_connection() as client:
            self.assertEqual(client.sendmail("a@b.example", ["u@example.com"],
                                             b"Subject: x\r\n\r\nhi\r\n"), {})
        wait_for_port(metrics_port, process)
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port, timeout=10) as r:
            text = r.read().decode()
        self.assertRegex(text, r'qpsmtpd_tx_messages_total\{[^}]*outcome="accepted"[^}]*\} 1\.0')

    def test_c_with_a_directory_fails_loudly(self):
        # someone used to `twistd qpsmtpd-tx -c DIR`: here -c is the connection limit
        result = subprocess.run(self.command("-c", self.config), cwd=CHECKOUT, env=server_env(),
                                capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 2)
        self.assertIn(b"argument -c/--limit-connections: invalid int value", result.stderr)
