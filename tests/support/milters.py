"""Private milters for the tests of the ``milter`` plugin (Debian packages ``clamav-milter``
and ``opendkim``).

Each ``start_*`` writes its own config into a fresh temp directory, starts the milter in the
foreground listening on a unix socket there (``socket``), waits until it passes a small clean
message (:mod:`tests.support.milter_probe`), and returns a
:class:`~tests.support.daemon.PrivateDaemon` the caller stops (by PID). Nothing of /etc is
used. Without the package the tests that need it are skipped with the reason.

- ``start_clamav_milter(clamd)``: clamav-milter in front of the suite's clamd
  (tests/support/clamd.py), rejecting infected mail with ``RejectMsg`` (``%v`` is the
  virus name) and adding its ``X-Virus-Scanned``/``X-Virus-Status`` fields
  (``AddHeader Replace``).
- ``start_opendkim(domain, selector)``: opendkim in sign mode for ``domain`` with a fresh
  2048-bit RSA key made by ``opendkim-genkey``; ``public_key`` is the DNS TXT record's text
  (``v=DKIM1; k=rsa; p=…``), for verifying without DNS. It signs mail from 127.0.0.1
  (``InternalHosts``).
"""

import os
import shutil
import subprocess
import tempfile

from twisted.trial.unittest import SkipTest

from qpsmtpd_tx.milter import codec
from tests.support import milter_probe
from tests.support.daemon import PrivateDaemon, die_with_parent, spawn, wait_started
from tests.support.processes import poll_until

CLAMAV_MILTER = "/usr/sbin/clamav-milter"
OPENDKIM = "/usr/sbin/opendkim"
OPENDKIM_GENKEY = "/usr/sbin/opendkim-genkey"

#: clamav-milter's reply text for a virus (``%v``: the virus name)
CLAMAV_REJECT_MSG = "Virus found: %v"

CLAMAV_MILTER_CONFIG = """\
MilterSocket unix:{dir}/milter.sock
MilterSocketMode 666
FixStaleSocket yes
Foreground yes
PidFile {dir}/clamav-milter.pid
TemporaryDirectory {dir}/tmp
ClamdSocket unix:{clamd_socket}
OnClean Accept
OnInfected Reject
OnFail Defer
RejectMsg {reject_msg}
AddHeader Replace
ReportHostname milter.test
LogFile {dir}/clamav-milter.log
LogTime yes
LogVerbose yes
LogInfected Full
LogClean Full
"""

OPENDKIM_CONFIG = """\
Socket local:{dir}/milter.sock
UMask 000
Background no
PidFile {dir}/opendkim.pid
Mode s
Domain {domain}
Selector {selector}
KeyFile {dir}/{selector}.private
InternalHosts 127.0.0.1
Canonicalization simple/simple
RequireSafeKeys false
Syslog no
LogWhy yes
UserID {user}
"""


class Milter(PrivateDaemon):
    """A running private milter: ``socket`` (unix), ``dir``, ``process``."""

    def __init__(self, directory, process, log_files):
        super().__init__(directory, None, process)
        self.socket = os.path.join(directory, "milter.sock")
        self.log_files = log_files


def _answering(milter, timeout=60):
    """A ``ready`` for :func:`wait_started`: the milter answers a small clean message with
    accept or continue. Not only its socket: libmilter listens before clamav-milter has found
    clamd (a background thread pings it), and a message in between gets TEMPFAIL (452)."""
    answers = []

    def answered():
        if milter.process.poll() is not None:
            return True
        try:
            answers.append(milter_probe.clean_message_verdict(milter.socket))
        except OSError as e:           # no socket yet, not accepting yet, closed
            answers.append(e)
        return answers[-1] in (codec.R_ACCEPT, codec.R_CONTINUE)

    def ready():
        if not poll_until(answered, timeout, 0.05):
            raise RuntimeError("%s gives no clean message a pass after %d s (last: %r)"
                               % (milter.socket, timeout, answers[-1] if answers else None))
        if milter.process.poll() is not None:
            raise RuntimeError("exited with status %s" % milter.process.returncode)
    return ready


def _directory(prefix):
    directory = tempfile.mkdtemp(prefix=prefix)
    os.chmod(directory, 0o755)
    return directory


def start_clamav_milter(clamd, reject_msg=CLAMAV_REJECT_MSG):
    """Start clamav-milter in front of ``clamd`` (a tests.support.clamd.Clamd)."""
    if not os.path.exists(CLAMAV_MILTER):
        raise SkipTest("clamav-milter is not installed (apt-get install clamav-milter; "
                       ".ci/run does)")
    directory = _directory("qptx-clamav-milter-")
    os.mkdir(os.path.join(directory, "tmp"))
    config = os.path.join(directory, "clamav-milter.conf")
    with open(config, "w") as f:
        f.write(CLAMAV_MILTER_CONFIG.format(dir=directory, clamd_socket=clamd.socket,
                                            reject_msg=reject_msg))
    process, started = spawn([CLAMAV_MILTER, "--config-file=" + config], directory,
                             "clamav-milter.out", preexec_fn=die_with_parent)
    milter = Milter(directory, process, ("clamav-milter.log", "clamav-milter.out"))
    return wait_started(milter, "clamav-milter", _answering(milter), started)


def start_opendkim(domain="example.org", selector="qptx"):
    """Start opendkim signing mail from ``domain`` with a new key (``public_key``)."""
    if not os.path.exists(OPENDKIM):
        raise SkipTest("opendkim is not installed (apt-get install opendkim opendkim-tools; "
                       ".ci/run does)")
    directory = _directory("qptx-opendkim-")
    subprocess.run([OPENDKIM_GENKEY, "-b", "2048", "-d", domain, "-s", selector, "-D",
                    directory], check=True, capture_output=True)
    user = "opendkim" if os.getuid() == 0 and _has_user("opendkim") else str(os.getuid())
    if user == "opendkim":
        for path in (directory, os.path.join(directory, selector + ".private")):
            shutil.chown(path, "opendkim")
    config = os.path.join(directory, "opendkim.conf")
    with open(config, "w") as f:
        f.write(OPENDKIM_CONFIG.format(dir=directory, domain=domain, selector=selector,
                                       user=user))
    process, started = spawn([OPENDKIM, "-f", "-l", "-x", config], directory, "opendkim.out",
                             preexec_fn=die_with_parent)
    milter = Milter(directory, process, ("opendkim.out",))
    with open(os.path.join(directory, selector + ".txt")) as f:
        milter.public_key = _txt_value(f.read())
    milter.domain, milter.selector = domain, selector
    return wait_started(milter, "opendkim", _answering(milter), started)


def _has_user(name):
    import pwd
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _txt_value(zone_text):
    """The text of the TXT record opendkim-genkey writes (its quoted strings, joined)."""
    import re
    return "".join(re.findall(r'"([^"]*)"', zone_text))
