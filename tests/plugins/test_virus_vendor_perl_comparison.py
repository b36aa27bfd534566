"""The legacy vendor scanners and dspam against Perl qpsmtpd 0.94's plugins, both servers running the
same STAND-IN programs (tests/support/scanners.py: the vendors' programs cannot run here):
a message with the test virus and a clean one get the same replies. Skipped without Perl.

Not compared: ``virus/uvscan``'s default (0.94's code tags, its documentation and we
refuse; ``deny_viruses yes`` is given here), the paths of the message files in
``virus/aveclient``'s report (each server names its own), and the order of several names
in ``virus/hbedv``'s reply (0.94's is Perl's hash order, ours the scanner's)."""

import os
import re

from twisted.trial import unittest

from tests.support.clamd import VIRUS_PATTERN
from tests.support.filter_cases import message
from tests.support.perl_qpsmtpd import give_to_perl_user, start_both
from tests.support.scanners import multipart, vendor_standin
from tests.support.smtp_session import data_reply


def normalized(text):
    """A reply text with file paths as ``FILE`` and several names found in sorted order."""
    text = re.sub(r"/tmp/\S+", "FILE", text)
    prefix, found, names = text.partition("found: ")
    return prefix + found + ", ".join(sorted(names.split(", "))) if found else text


class VendorPerlComparisonTests(unittest.TestCase):
    def compare(self, program, line, messages):
        """Replies of both servers to ``messages`` with plugin ``line`` ({} = the stand-in)."""
        path = vendor_standin(self, program)
        # the Perl server runs it as its own user: the directory and the log it writes
        os.chmod(os.path.dirname(path), 0o755)
        for log in ("argv.log", "stdin.log", "trained.log"):
            open(os.path.join(os.path.dirname(path), log), "w").close()
        give_to_perl_user(os.path.dirname(path))
        perl, ours, _ = start_both(self, ["rcpt_ok", line.format(path), "queue/maildir {}"],
                                   {}, None, "qptx-vendor-")

        def replies(port):
            return [(code, normalized(text))
                    for code, text in (data_reply(port, m) for m in messages)]
        ours_replies = replies(ours)
        self.assertEqual(replies(perl), ours_replies)
        return ours_replies

    def test_aveclient(self):
        got = self.compare("aveclient", "virus/aveclient avclient_bin {}",
                           [message(VIRUS_PATTERN), message("clean")])
        self.assertEqual(got[0], (552, "Virus found: REPORT: FILE infected: QPTX.Test.Pattern"))

    def test_bitdefender(self):
        got = self.compare("bdc", "virus/bitdefender bitdefender_location {}",
                           [multipart(VIRUS_PATTERN), multipart("clean"), message(VIRUS_PATTERN)])
        self.assertEqual([code for code, _ in got], [552, 250, 250])

    def test_hbedv(self):
        got = self.compare("antivir", "virus/hbedv hbedvscanner {}",
                           [message(VIRUS_PATTERN), message(VIRUS_PATTERN + " SECOND-VIRUS"),
                            message("clean")])
        self.assertEqual([code for code, _ in got], [552, 552, 250])

    def test_kavscanner(self):
        got = self.compare("kavscanner", "virus/kavscanner kavscanner_bin {}",
                           [message(VIRUS_PATTERN), message("clean")])
        self.assertEqual([code for code, _ in got], [250, 250])

    def test_uvscan(self):
        got = self.compare("uvscan", "virus/uvscan uvscan_location {} deny_viruses yes",
                           [multipart(VIRUS_PATTERN), multipart("PASSWORD-ZIP"),
                            multipart("clean")])
        self.assertEqual([code for code, _ in got], [552, 552, 250])

    def test_dspam(self):
        got = self.compare("dspam", "dspam dspam_bin {} reject 0.5",
                           [message("SPAMMY"), message("DOUBTFUL"), message("hello")])
        self.assertEqual(got[0], (552, "dspam says, no spam please (#5.6.1)"))
        self.assertEqual([code for code, _ in got], [552, 250, 250])
