"""What the tests of the program-based scanners share (virus/clamav, the vendor virus scanners,
dspam): stand-in programs written into a temp dir, and the warnings a server logs at start-up.

A stand-in is a small executable Python script made here from a body of code; it is a
STAND-IN for a scanner that cannot run here (a commercial product, or dspam, which is no
longer in Debian), speaking the command line, output and exit codes the qpsmtpd 0.94 plugin
parses. Every stand-in appends its command line (one line, words joined by spaces) to
``argv.log`` beside it. Markers in the scanned message steer it:
  ``QPTX-TEST-VIRUS-7f3a9c-SIGNATURE``  (the suite's test virus) → report it;
  ``QPTX-STANDIN-HANG``                  → sleep for an hour (the plugin must time out);
  ``QPTX-STANDIN-CRASH``                 → die from SIGSEGV;
  ``QPTX-STANDIN-EXIT-<n>``              → print ``error <n>`` and exit with status n.
The dspam stand-in (no longer in Debian) reads the message on its standard input, classes
text with ``SPAMMY`` as spam, ``DOUBTFUL`` as spam without full confidence, the rest as
innocent; it keeps what it read in ``stdin.log`` and its retraining in ``trained.log``.
"""

import os
import shutil
import stat
import sys
import tempfile

from qpsmtpd_tx.server import SMTPServer
from tests.support.clamd import VIRUS_PATTERN
from tests.support.harness import make_server

PROLOGUE = '''\
import os, re, signal, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "argv.log"), "a") as log:
    log.write(" ".join(sys.argv) + "\\n")
VIRUS = %(virus)r

def marker(text):
    """Act on the test markers in ``text``; return the exit status asked for, or None."""
    if "QPTX-STANDIN-HANG" in text:
        time.sleep(3600)
    if "QPTX-STANDIN-CRASH" in text:
        os.kill(os.getpid(), signal.SIGSEGV)
    m = re.search(r"QPTX-STANDIN-EXIT-(\\d+)", text)
    if m:
        print("error", m.group(1))
        sys.exit(int(m.group(1)))
    return None
'''


#: the stand-ins' interpreter: the system's Python 3 (Perl qpsmtpd, running as its own user,
#: can run it too), else ours
INTERPRETER = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def standin(testcase, name, code):
    """Write stand-in program ``name`` (``code`` after the common prologue) into a fresh
    directory (removed after the test); its path."""
    directory = tempfile.mkdtemp(prefix="qptx-standin-")
    testcase.addCleanup(shutil.rmtree, directory, True)
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write("#!%s\n%s\n%s" % (INTERPRETER, PROLOGUE % {"virus": VIRUS_PATTERN}, code))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def standin_file(program, name):
    """The text of file ``name`` (``trained.log``, ``stdin.log``…) beside stand-in
    ``program`` ('' if it is not there)."""
    try:
        with open(os.path.join(os.path.dirname(program), name)) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def command_lines(program):
    """The command lines the stand-in ``program`` was run with (lists of words)."""
    try:
        with open(os.path.join(os.path.dirname(program), "argv.log")) as f:
            return [line.split() for line in f]
    except FileNotFoundError:
        return []


def startup_log(testcase, plugins, files=None):
    """``(server, lines)``: a server made with ``plugins``, and the ``(level, message)`` lines
    its plugins logged while starting."""
    lines = []
    original = SMTPServer.log

    def log(server, level, message, plugin=None, transaction=None, hook=None):
        lines.append((level, message))
        return original(server, level, message, plugin=plugin, transaction=transaction, hook=hook)

    every_level, original_enabled = (lambda server, level: True), SMTPServer.log_enabled
    testcase.patch(SMTPServer, "log", log)
    testcase.patch(SMTPServer, "log_enabled", every_level)     # (see log_every_level)
    server = make_server(testcase, plugins, files)
    testcase.patch(SMTPServer, "log", original)
    testcase.patch(SMTPServer, "log_enabled", original_enabled)
    return server, lines


def multipart(text):
    """A multipart message (CRLF, without the final dot) whose attachment holds ``text``."""
    return ('From: sender@client.example\r\nTo: someone@example.com\r\nSubject: files\r\n'
            'MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary="b0"\r\n\r\n'
            '--b0\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n'
            '--b0\r\nContent-Type: application/octet-stream\r\n\r\n%s\r\n--b0--\r\n' % text)


#: the name the stand-ins report for the suite's test virus
STANDIN_VIRUS = "QPTX.Test.Pattern"

#: the stand-ins' code after the prologue, by program: each reads the message file named last
#: on its command line and answers in its vendor's format
STANDINS = {
    # Kaspersky aveclient -p SOCKET -s FILE: exit 4 = infected; the first line is a banner
    "aveclient": '''
path = sys.argv[-1]
text = open(path, errors="replace").read()
marker(text)
print("aveclient: scanning " + path)
if VIRUS in text:
    print(path + " infected: QPTX.Test.Pattern")
    sys.exit(4)
''',
    # BitDefender bdc --mail --all --arc FILE: "<file>  infected: <name>" (exit status unused)
    "bdc": '''
path = sys.argv[-1]
text = open(path, errors="replace").read()
marker(text)
print("BDC/Linux-Console (stand-in)")
if VIRUS in text:
    print(path + "  infected: QPTX.Test.Pattern")
    sys.exit(1)
print(path + "  ok")
''',
    # H+BEDV antivir ... -rs FILE: "ALERT: [<name> virus] ..." lines, exit 1 = found
    "antivir": '''
path = sys.argv[-1]
text = open(path, errors="replace").read()
marker(text)
if VIRUS in text:
    for part in ("part1", "part2"):
        print("ALERT: [QPTX.Test.Pattern virus] %s <<< contains the test pattern" % part)
    if "SECOND-VIRUS" in text:
        print("ALERT: [Other/Worm worm] part3 <<< contains another")
    sys.exit(1)
''',
    # Kaspersky kavscanner -Y -P -B -MP -MD -* FILE: exit 4 infected, 3 suspicious
    "kavscanner": '''
path = sys.argv[-1]
text = open(path, errors="replace").read()
marker(text)
if VIRUS in text:
    print(path + " infected: QPTX.Test.Pattern")
    if "SUSPICIOUS" in text:
        print("   " + path + "/part2 suspicion: Type_Win32")
    sys.exit(4)
''',
    # McAfee uvscan --mime --unzip --secure --noboot FILE: exit 13 = found
    "uvscan": '''
path = sys.argv[-1]
text = open(path, errors="replace").read()
marker(text)
print("Scanning " + path)
if "PASSWORD-ZIP" in text:
    print(path + "/secret.zip is password-protected.")
    sys.exit(0)
if VIRUS in text:
    print("        Found the QPTX.Test.Pattern virus !!!")
    sys.exit(13)
''',
    # dspam --user U --mode=tum --process --deliver=summary --stdout < message: its summary
    # line; --mode=toe --source=error --class=C (retraining) is recorded in trained.log
    "dspam": '''
text = sys.stdin.read()
marker(text)
args = sys.argv[1:]
user = args[args.index("--user") + 1]
with open(os.path.join(HERE, "stdin.log"), "a") as log:
    log.write(text + "\\n.\\n")
if "--process" in args:
    if "SPAMMY" in text:
        result, probability, confidence = "Spam", "1.0000", "1.00"
    elif "DOUBTFUL" in text:
        result, probability, confidence = "Spam", "0.9900", "0.80"
    else:
        result, probability, confidence = "Innocent", "0.0023", "1.00"
    signature = "sig%d" % len(text)
else:
    result = "Spam" if "--class=spam" in args else "Innocent"
    probability, confidence = "1.0000", "1.00"
    signature = re.search(r"X-DSPAM-Signature: (\\S+)", text).group(1)
    with open(os.path.join(HERE, "trained.log"), "a") as log:
        log.write("%s %s %s\\n" % (user, result, signature))
print('%s; result="%s"; class="%s"; probability=%s; confidence=%s; signature=%s'
      % (user, result, result, probability, confidence, signature))
''',
}


def vendor_standin(testcase, program):
    """Stand-in ``program`` (a key of STANDINS) in a fresh directory; its path."""
    return standin(testcase, program, STANDINS[program])
