"""A private ClamAV clamd for the tests (Debian package ``clamav-daemon``).

``shared_clamd()`` starts one clamd per test run, the first time a test asks for it, and
stops exactly that process (by its PID) when the test process exits. It is private: its own
``clamd.conf`` in a fresh temp directory, ``Foreground yes``, listening on 127.0.0.1 (a free
port) and on a unix socket there, and a ``DatabaseDirectory`` holding only the signature
file written here — no main.cvd/daily.cvd, no freshclam, no network.

Signatures (``qptx-test.ndb``, ClamAV's extended format ``Name:TargetType:Offset:HexSig``):
  ``QPTX.Test.Pattern-1``  the text ``QPTX-TEST-VIRUS-7f3a9c-SIGNATURE`` anywhere in any
                           file (clamd decodes mail parts, so a base64 attachment matches too).
clamd reports custom signatures with ``.UNOFFICIAL`` appended.

``StreamMaxLength`` is 2 MB here, so a bigger INSTREAM is refused by clamd itself.
Without the package, the tests that need clamd are skipped with the reason.
"""

import os
import tempfile

from twisted.trial.unittest import SkipTest

from tests.support.daemon import PrivateDaemon, die_with_parent, listening, spawn, wait_started
from tests.support.processes import reserve_port
from tests.support.shared import SharedDaemon

CLAMD = "/usr/sbin/clamd"

#: the text our signature matches
VIRUS_PATTERN = "QPTX-TEST-VIRUS-7f3a9c-SIGNATURE"
#: the name clamd reports for it
VIRUS_NAME = "QPTX.Test.Pattern-1.UNOFFICIAL"
STREAM_MAX_LENGTH = 2 * 1024 * 1024

CONFIG = """\
Foreground yes
DatabaseDirectory {dir}/db
LocalSocket {dir}/clamd.sock
LocalSocketMode 666
TCPSocket {port}
TCPAddr 127.0.0.1
PidFile {dir}/clamd.pid
LogFile {dir}/clamd.log
LogTime yes
TemporaryDirectory {dir}/tmp
StreamMaxLength {stream_max}
SelfCheck 0
MaxThreads 4
Bytecode no
"""


class Clamd(PrivateDaemon):
    """A running private clamd: ``port`` (127.0.0.1), ``socket`` (unix), ``dir``,
    ``startup_seconds`` (from exec to accepting connections)."""

    log_files = ("clamd.log", "clamd.out")

    def __init__(self, directory, port, process, startup_seconds=None):
        super().__init__(directory, port, process, startup_seconds)
        self.socket = os.path.join(directory, "clamd.sock")

    def databases(self):
        """The signature files clamd loads."""
        return sorted(os.listdir(os.path.join(self.dir, "db")))


def start_clamd(stream_max=STREAM_MAX_LENGTH):
    """Start a private clamd (``StreamMaxLength`` ``stream_max`` bytes); SkipTest if it is
    not installed. The caller stops it."""
    if not os.path.exists(CLAMD):
        raise SkipTest("clamd is not installed (apt-get install --no-install-recommends "
                       "clamav-daemon; .ci/run does)")
    directory = tempfile.mkdtemp(prefix="qptx-clamd-")
    os.chmod(directory, 0o755)
    for sub in ("db", "tmp"):
        os.mkdir(os.path.join(directory, sub))
    with open(os.path.join(directory, "db", "qptx-test.ndb"), "w") as f:
        f.write("QPTX.Test.Pattern-1:0:*:%s\n" % VIRUS_PATTERN.encode("ascii").hex())
    port = reserve_port()
    config = os.path.join(directory, "clamd.conf")
    with open(config, "w") as f:
        f.write(CONFIG.format(dir=directory, port=port, stream_max=stream_max))
    process, started = spawn([CLAMD, "--config-file=" + config], directory, "clamd.out",
                             preexec_fn=die_with_parent)
    clamd = Clamd(directory, port, process)
    return wait_started(clamd, "clamd", listening(clamd, 60, clamd.socket), started)


#: the clamd of this test run: ``shared_clamd()`` starts it at the first call, stops it at exit
shared_clamd = SharedDaemon("clamd", start_clamd).get
