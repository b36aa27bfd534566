"""A private SpamAssassin spamd for the tests (Debian packages ``spamassassin`` and ``spamd``).

``shared_spamd()`` starts one spamd per test run, the first time a test asks for it, and
stops exactly that process (by its PID) when the test process exits. It is private:

- its rules are only the file written here (``-C`` points at a fresh directory, and the
  site config directory ``--siteconfigpath`` holds only an ``init.pre`` that loads the
  ``Check`` plugin, which scanning needs): nothing of /etc/spamassassin or
  /usr/share/spamassassin or any sa-update rules is read;
- ``--nouser-config`` (-x), ``--local`` (-L: no network tests), Bayes off;
- it listens on 127.0.0.1 on a free port and on a unix socket in its temp directory;
- ``--pidfile`` and its log are in that directory.

Rules: ``GTUBE`` (the standard test string, score 1000: a sure spam score) and
``QPTX_SIX`` (the text ``QPTX-SIX-POINTS``, score 6: spam over spamd's required 5, under a
high reject threshold). The X-Spam-* headers are Debian's defaults.

Without the packages, the tests that need spamd are skipped with the reason.
"""

import os
import pwd
import tempfile

from twisted.trial.unittest import SkipTest

from tests.support.daemon import PrivateDaemon, listening, spawn, wait_started
from tests.support.processes import reserve_port
from tests.support.shared import SharedDaemon

SPAMD = "/usr/sbin/spamd"

#: the standard Generic Test for Unsolicited Bulk Email string
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
#: a text our own rule scores 6
SIX_POINTS = "QPTX-SIX-POINTS"

RULES = r"""
required_score 5
use_bayes 0
bayes_auto_learn 0
util_rb_tld com net org example
util_rb_2tld co.uk
report_safe 0
clear_headers
add_header all Checker-Version SpamAssassin _VERSION_ (_SUBVERSION_) on _HOSTNAME_
add_header spam Flag _YESNOCAPS_
add_header all Level _STARS(*)_
add_header all Status "_YESNO_, score=_SCORE_ required=_REQD_ tests=_TESTS_ autolearn=_AUTOLEARN_ version=_VERSION_"
body GTUBE /XJS\*C4JDBQADN1\.NSBN3\*2IDNEN\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\*C\.34X/
describe GTUBE Generic Test for Unsolicited Bulk Email
score GTUBE 1000
body QPTX_SIX /QPTX-SIX-POINTS/
describe QPTX_SIX qpsmtpd-tx test rule
score QPTX_SIX 6
"""


class Spamd(PrivateDaemon):
    """A running private spamd: ``port`` (127.0.0.1), ``socket`` (unix), ``dir``,
    ``startup_seconds`` (from exec to accepting connections)."""

    log_files = ("spamd.log",)

    def __init__(self, directory, port, process, startup_seconds=None):
        super().__init__(directory, port, process, startup_seconds)
        self.socket = os.path.join(directory, "spamd.sock")


def start_spamd():
    """Start a private spamd; SkipTest if it is not installed. The caller stops it."""
    if not os.path.exists(SPAMD):
        raise SkipTest("spamd is not installed (apt-get install --no-install-recommends "
                       "spamassassin spamd; .ci/run does)")
    directory = tempfile.mkdtemp(prefix="qptx-spamd-")
    os.chmod(directory, 0o755)
    rules, site, home = (os.path.join(directory, d) for d in ("rules", "site", "home"))
    for path in (rules, site, home):
        os.mkdir(path)
    with open(os.path.join(rules, "local.cf"), "w") as f:
        f.write(RULES)
    with open(os.path.join(site, "init.pre"), "w") as f:
        f.write("loadplugin Mail::SpamAssassin::Plugin::Check\n")
    port = reserve_port()
    argv = [SPAMD, "--nouser-config", "--local", "-C", rules, "--siteconfigpath", site,
            "--helper-home-dir", home, "--listen", "127.0.0.1:%d" % port,
            "--listen", os.path.join(directory, "spamd.sock"), "--socketmode", "0666",
            "--pidfile", os.path.join(directory, "spamd.pid"), "--syslog", "stderr",
            "--max-children", "3", "--min-children", "1"]
    if os.geteuid() == 0:
        # spamd will not scan as root; its children run as nobody
        user = "nobody"
        os.chown(home, pwd.getpwnam(user).pw_uid, -1)
        argv += ["--username", user]
    process, started = spawn(argv, directory, "spamd.log")
    spamd = Spamd(directory, port, process)
    return wait_started(spamd, "spamd", listening(spamd, 60, spamd.socket), started)


#: the spamd of this test run: ``shared_spamd()`` starts it at the first call, stops it at exit
shared_spamd = SharedDaemon("spamd", start_spamd).get
