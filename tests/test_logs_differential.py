"""Differential test of the log: Perl qpsmtpd 0.94 and qpsmtpd-tx write the same grep-able lines.

Both servers get the same config (two copies, differing only in the log file's name) with
``logging/file loglevel LOGDEBUG``, serve the same sessions, and their logs are compared after
replacing what must differ (pids and connection ids, ports, the user, the greeting's and the
queue's texts). Every grep-able line Perl writes must be in ours. Known, intended differences
are listed in ``INTENDED``.

Not compared here: ``spooling message to disk`` — Perl 0.94 logs it through the transaction
object, which logging/file cannot handle (it dies with "Can't call method notes"), so that
line never reaches Perl's log file; ``test_operator_logs`` checks ours.
"""

import os
import re

from twisted.trial import unittest

from tests.support import perl_qpsmtpd
from tests.support.harness import write_config
from tests.support.processes import poll_until, start_twistd
from tests.test_differential import SESSIONS, run_session

#: the sessions both servers serve (those of test_differential, and a refused sender)
LOGGED_SESSIONS = ["happy path", "relaying", "order", "syntax", "databytes", "bare LF end of data"]
BAD_SENDER = [(b"EHLO c.example", False), (b"MAIL FROM:<bad@b.example>", True),
              (b"MAIL FROM:<a@b.example>", True), (b"QUIT", False)]

#: the lines operators grep for (qpsmtpd-forkserver, Qpsmtpd::SMTP and ::TcpServer)
GREPABLE = re.compile(r"^(Accepted connection |Connection from |click, disconnecting$|"
                      r"cleaning up after |deny(soft)? mail from |Listening on |Running as user |"
                      r"dispatching |\d{3}[ -])")

#: what legitimately differs between the two logs, replaced before comparing
NORMALIZE = [
    (re.compile(r"^Accepted connection \d+/"), "Accepted connection N/"),
    (re.compile(r"^cleaning up after \S+$"), "cleaning up after ID"),
    (re.compile(r"^Listening on (.*):\d+$"), r"Listening on \1:PORT"),
    (re.compile(r"^Running as user \S+, group \S+$"), "Running as user U, group G"),
    (re.compile(r"^220 .*"), "220 <greeting>"),
    (re.compile(r"^250 Queued.*"), "250 Queued"),
]

#: normalized Perl lines ours lacks on purpose: why
INTENDED = {}

LINE = re.compile(r"^T \S+\[(?P<id>[^\]]+)\]: (?P<text>.*)$")


def read_log(path):
    """``[(id, text)]`` of a logging/file output with ``tsformat T``."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [(m.group("id"), m.group("text")) for m in map(LINE.match, f.read().splitlines()) if m]


def grepable(lines):
    """The normalized grep-able texts of ``lines``."""
    texts = set()
    for _, text in lines:
        if GREPABLE.match(text):
            for pattern, replacement in NORMALIZE:
                text = pattern.sub(replacement, text)
            texts.add(text)
    return texts


def connections_ended(path):
    """True once every connection in the log has its ``cleaning up after`` line."""
    lines = read_log(path) if os.path.exists(path) else []
    accepted = {i for i, t in lines if t.startswith("Accepted connection ")}
    cleaned = {t.split()[-1] for _, t in lines if t.startswith("cleaning up after ")}
    return bool(accepted) and accepted <= cleaned


class LogDifferentialTests(unittest.TestCase):
    def setUp(self):
        root = perl_qpsmtpd.shared_root(self, "qpsmtpd-tx-logdiff-")
        maildir = os.path.join(root, "maildir")
        logs = os.path.join(root, "logs")
        for path in (maildir, os.path.join(root, "spool"), logs):
            os.makedirs(path)
        self.logs = {name: os.path.join(logs, name + ".log") for name in ("perl", "ours")}
        configs = {}
        for name, log in self.logs.items():
            configs[name] = write_config(os.path.join(root, "config-" + name), [
                "check_badmailfrom",
                "rcpt_ok",
                "queue/maildir %s" % maildir,
            ], {"databytes": "2000", "plugin_dirs": perl_qpsmtpd.PERL_PLUGIN_DIR,
                "spool_dir": os.path.join(root, "spool"), "badmailfrom": "bad@b.example",
                "loglevel": "7", "logging": "logging/file loglevel LOGDEBUG tsformat T %s" % log})
        perl_qpsmtpd.give_to_perl_user(root)
        self.ports = {"perl": perl_qpsmtpd.start_forkserver(self, configs["perl"])}
        # -c 20 and no reverse DNS, as the Perl server above (its -H does nothing in 0.94 and
        # its own lookup finds no PTR for 127.0.0.1: "Unknown")
        _, self.ports["ours"], _ = start_twistd(self, configs["ours"],
                                                extra=["-H", "--limit-connections", "20"])
        for name, port in self.ports.items():
            for session in LOGGED_SESSIONS:
                run_session(port, SESSIONS[session])
            run_session(port, BAD_SENDER)
        for path in self.logs.values():
            # Perl's parent logs the end of a connection when it reaps the child, a little
            # later; the tests report what is still missing after this wait
            poll_until(lambda: connections_ended(path), 20.0)
        self.lines = {name: read_log(path) for name, path in self.logs.items()}

    def test_perl_grepable_lines_are_in_ours(self):
        perl, ours = grepable(self.lines["perl"]), grepable(self.lines["ours"])
        # the comparison means something: Perl's log has every kind of line
        for kind in ("Accepted connection N/20 from 127.0.0.1 / Unknown",
                     "Connection from Unknown [127.0.0.1]", "click, disconnecting",
                     "cleaning up after ID",
                     "deny mail from <bad@b.example> (Your envelope sender is in my "
                     "badmailfrom list)",
                     "Listening on 127.0.0.1:PORT", "Running as user U, group G",
                     "dispatching EHLO c.example", "250-PIPELINING", "250 SIZE 2000"):
            self.assertIn(kind, perl)
        missing = sorted(perl - ours - set(INTENDED))
        self.assertEqual(missing, [], "lines of Perl's log missing from ours:\n" + "\n".join(missing))

    def test_each_connection_has_its_own_id_and_the_parent_cleans_up(self):
        for name, lines in self.lines.items():
            accepted = [i for i, t in lines if t.startswith("Accepted connection ")]
            self.assertEqual(len(accepted), len(set(accepted)), name)
            self.assertGreaterEqual(len(accepted), len(LOGGED_SESSIONS) + 1, name)
            cleaning = {t.split()[-1]: i for i, t in lines if t.startswith("cleaning up after ")}
            for conn_id in accepted:
                # logged by the parent: not with the id of the connection it is about
                self.assertIn(conn_id, cleaning, name)
                self.assertNotEqual(cleaning[conn_id], conn_id, name)
                texts = [t for i, t in lines if i == conn_id]
                self.assertEqual(texts[1], "Connection from Unknown [127.0.0.1]", name)
