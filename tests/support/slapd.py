"""A private OpenLDAP server for the tests (Debian package ``slapd``), one per test run.

``slapd_server()`` starts it on first use and returns the same :class:`Slapd` after that; it
raises SkipTest (with the reason, remembered) when it cannot run here. Nothing of /etc/ldap
or /var/lib/ldap is used but Debian's schema files: the helper writes its own ``slapd.conf``
into a fresh directory under /tmp (an ``mdb`` database for ``dc=example,dc=com`` in that
directory, a small test schema), loads :data:`LDIF` with ``slapadd`` before the start, and
runs ``slapd -d 0`` in the foreground listening on ``ldap://127.0.0.1:<free port>/`` only.

Who may read what (``access`` lines): ``cn=qpsmtpd,dc=example,dc=com`` (password
:data:`BIND_PASSWORD`) reads everything; anonymous clients may only bind, and see nothing.

The server is stopped by its PID and its directory removed by :func:`stop_slapd` — called
by the test module's suite once its tests have run, and at interpreter exit in case a test
was run on its own. It needs no root: as root it runs as root, in its own directory.
"""

import atexit
import os
import shutil
import subprocess
import tempfile
import time

from twisted.trial.unittest import SkipTest

from tests.support.daemon import PrivateDaemon, listening, spawn, wait_started
from tests.support.processes import reserve_port
from tests.support.shared import SharedDaemon

SUFFIX = "dc=example,dc=com"
ROOT_DN = "cn=admin," + SUFFIX
ROOT_PASSWORD = "admin-pw"
BIND_DN = "cn=qpsmtpd," + SUFFIX
BIND_PASSWORD = "qpsmtpd-pw"
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIR = "/usr/lib/ldap"
START_TIMEOUT = 30.0

# Attributes for mail routing and per-recipient settings: mailForwardingAddress as in the
# qmail-ldap schema, the rest test-only (OIDs from OpenLDAP's experimental arc).
SCHEMA = """\
attributetype ( 1.3.6.1.4.1.4203.666.11.977.1.1 NAME 'mailForwardingAddress'
    DESC 'an address mail for this entry is forwarded to'
    EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )
attributetype ( 1.3.6.1.4.1.4203.666.11.977.1.2 NAME 'qptxTestThreshold'
    DESC 'test: a spam threshold' EQUALITY caseIgnoreMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{64} )
attributetype ( 1.3.6.1.4.1.4203.666.11.977.1.3 NAME 'qptxTestAction'
    DESC 'test: what to do with spam' EQUALITY caseIgnoreMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{64} )
attributetype ( 1.3.6.1.4.1.4203.666.11.977.1.4 NAME 'qptxMailSettings'
    DESC 'per-recipient settings as key=value words' EQUALITY caseExactMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024} )
objectclass ( 1.3.6.1.4.1.4203.666.11.977.2.1 NAME 'qptxMailRecipient'
    DESC 'a recipient address or pattern with mail settings' SUP top AUXILIARY
    MUST mail
    MAY ( mailForwardingAddress $ qptxTestThreshold $ qptxTestAction $ qptxMailSettings ) )
"""

CONFIG = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {dir}/qptx.schema
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
modulepath {modules}
moduleload back_mdb
loglevel none

database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {dir}/db
index objectClass eq
index mail eq
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by dn.exact="{binddn}" read
    by * none
"""

BASE_LDIF = """\
dn: {suffix}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: {binddn}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: qpsmtpd
userPassword: {bindpw}

"""


class Slapd(PrivateDaemon):
    """A running private slapd: ``url``, ``port``, ``dir``, ``process``, ``startup_seconds``."""

    suffix = SUFFIX
    bind_dn = BIND_DN
    bind_password = BIND_PASSWORD
    log_files = ("slapd.out",)

    def __init__(self, directory, port, process, startup_seconds=None):
        super().__init__(directory, port, process, startup_seconds)
        self.url = "ldap://127.0.0.1:%d" % port

    def modify(self, ldif):
        """Apply LDIF change records (``changetype: …``) as the root DN, with ldapmodify."""
        binary = shutil.which("ldapmodify")
        if binary is None:
            raise SkipTest("ldapmodify is not installed (apt-get install ldap-utils; .ci/run does)")
        done = subprocess.run([binary, "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
                              input=ldif.encode("utf-8"), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=30)
        if done.returncode != 0:
            raise RuntimeError("ldapmodify failed: %s" % done.stdout.decode("utf-8", "replace"))


def _start(ldif=""):
    slapd = "/usr/sbin/slapd" if os.path.exists("/usr/sbin/slapd") else shutil.which("slapd")
    slapadd = "/usr/sbin/slapadd" if os.path.exists("/usr/sbin/slapadd") else shutil.which("slapadd")
    if slapd is None or slapadd is None:
        raise SkipTest("slapd is not installed (apt-get install slapd; .ci/run does)")
    if not os.path.exists(os.path.join(MODULE_DIR, "back_mdb.la")):
        raise SkipTest("slapd's mdb backend is missing (%s/back_mdb.la)" % MODULE_DIR)

    started = time.monotonic()
    directory = tempfile.mkdtemp(prefix="qptx-slapd-")
    atexit.register(shutil.rmtree, directory, True)
    os.mkdir(os.path.join(directory, "db"))
    with open(os.path.join(directory, "qptx.schema"), "w") as f:
        f.write(SCHEMA)
    config = os.path.join(directory, "slapd.conf")
    with open(config, "w") as f:
        f.write(CONFIG.format(schema=SCHEMA_DIR, dir=directory, modules=MODULE_DIR,
                              suffix=SUFFIX, rootdn=ROOT_DN, rootpw=ROOT_PASSWORD, binddn=BIND_DN))
    data = os.path.join(directory, "data.ldif")
    with open(data, "w") as f:
        f.write(BASE_LDIF.format(suffix=SUFFIX, binddn=BIND_DN, bindpw=BIND_PASSWORD))
        f.write(ldif)
    added = subprocess.run([slapadd, "-q", "-f", config, "-l", data], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=START_TIMEOUT)
    if added.returncode != 0:
        raise RuntimeError("slapadd failed (status %d): %s"
                           % (added.returncode, added.stdout.decode("utf-8", "replace")[-2000:]))

    port = reserve_port()
    process, _ = spawn([slapd, "-d", "0", "-f", config, "-h", "ldap://127.0.0.1:%d/" % port],
                       directory, "slapd.out")
    server = Slapd(directory, port, process)
    server.ldif = ldif
    return wait_started(server, "slapd", listening(server, START_TIMEOUT), started)


_shared = SharedDaemon("slapd", _start, skip_on_failure=True)


def slapd_server(ldif=""):
    """The private slapd of this test run, or SkipTest. Started on first use with ``ldif``
    (entries under :data:`SUFFIX`, loaded after the base entries); later calls with the same
    ``ldif`` return the same server, a call with another one restarts it with that one (two
    modules' tests may run interleaved, e.g. with ``trial -j``). Stopped at exit."""
    if _shared.daemon is not None and _shared.daemon.ldif != ldif:
        _shared.stop()
    return _shared.get(ldif)


#: stop the private slapd if it was started (by its PID); the next use starts anew
stop_slapd = _shared.stop
