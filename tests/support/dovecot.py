"""A private Dovecot LMTP server for the tests (Debian package ``dovecot-lmtpd``).

``start_dovecot(testcase)`` writes a self-contained ``dovecot.conf`` into a fresh directory
under /tmp (nothing of /etc/dovecot or /var/lib/dovecot is used), starts ``dovecot -F`` on
it, listening for LMTP on 127.0.0.1 (a free port) and on a unix socket, waits until it
accepts connections, and stops exactly that process (by its PID) when the test ends.

Users (a passwd-file userdb; mail stored as ``nobody`` in ``<dir>/mail/<user>/Maildir``):
  ``alice``  an ordinary mailbox
  ``bob``    a 1 KiB quota: a bigger message fails *after DATA* with ``552 5.2.2``
  ``carol``  the same quota, with ``quota_full_tempfail``: ``452 4.2.2``
Any other user: ``550 5.1.1 <user@domain> User doesn't exist`` at RCPT.

Dovecot's master must start as root (it runs the delivery as ``nobody``); elsewhere, or
without the package, the tests that need it are skipped with the reason.
"""

import grp
import os
import pwd
import shutil
import tempfile

from twisted.trial.unittest import SkipTest

from tests.support.daemon import PrivateDaemon, listening, spawn, wait_started
from tests.support.harness import maildir_messages
from tests.support.processes import reserve_port

CONFIG = """\
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = qpsmtpd-tx-test-{port}
log_path = {dir}/dovecot.log
protocols = lmtp
listen = 127.0.0.1
{ssl}
mail_uid = nobody
mail_gid = {group}
mail_location = maildir:~/Maildir
postmaster_address = postmaster@example.com
auth_username_format = %n
mail_plugins = quota
plugin {{
  quota = maildir:User quota
}}
passdb {{
  driver = passwd-file
  args = {dir}/users
}}
userdb {{
  driver = passwd-file
  args = {dir}/users
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}
"""

USERS = """\
alice:::::{dir}/mail/alice::
bob:::::{dir}/mail/bob::userdb_quota_rule=*:storage=1K
carol:::::{dir}/mail/carol::userdb_quota_rule=*:storage=1K userdb_quota_full_tempfail=yes
"""


class Dovecot(PrivateDaemon):
    """A running private Dovecot: ``port``, ``socket`` (the LMTP unix socket), ``dir``."""

    log_files = ("master.out", "dovecot.log")

    def __init__(self, directory, port, process):
        super().__init__(directory, port, process)
        self.socket = os.path.join(directory, "run", "lmtp")

    def delivered(self, user):
        """The messages in ``user``'s Maildir ``new/``, as bytes, oldest first."""
        return maildir_messages(os.path.join(self.dir, "mail", user, "Maildir"))


def _nobody_group():
    for name in ("nogroup", "nobody"):
        try:
            grp.getgrnam(name)
            return name
        except KeyError:
            pass
    return None


def start_dovecot(testcase, ssl_cert=None, ssl_key=None):
    """Start a private Dovecot LMTP server for ``testcase``; SkipTest if it cannot run here.
    With ``ssl_cert`` and ``ssl_key`` (PEM files) its LMTP offers STARTTLS."""
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
    if binary is None or not os.path.exists("/usr/lib/dovecot/lmtp"):
        raise SkipTest("Dovecot's LMTP server is not installed (apt-get install dovecot-lmtpd; "
                       ".ci/run does)")
    if os.geteuid() != 0:
        raise SkipTest("a private Dovecot needs root here (it delivers as nobody)")
    group = _nobody_group()
    try:
        for user in ("nobody", "dovecot", "dovenull"):
            pwd.getpwnam(user)
    except KeyError as e:
        raise SkipTest("user missing for Dovecot: %s" % e)
    if group is None:
        raise SkipTest("no nogroup/nobody group for Dovecot's deliveries")

    directory = tempfile.mkdtemp(prefix="qptx-dovecot-")
    os.chmod(directory, 0o755)
    mail = os.path.join(directory, "mail")
    os.mkdir(mail)
    nobody = pwd.getpwnam("nobody")
    os.chown(mail, nobody.pw_uid, grp.getgrnam(group).gr_gid)
    port = reserve_port()
    config = os.path.join(directory, "dovecot.conf")
    with open(config, "w") as f:
        ssl = "ssl = yes\nssl_cert = <%s\nssl_key = <%s" % (ssl_cert, ssl_key) if ssl_cert else "ssl = no"
        f.write(CONFIG.format(dir=directory, port=port, group=group, ssl=ssl))
    with open(os.path.join(directory, "users"), "w") as f:
        f.write(USERS.format(dir=directory))
    process, started = spawn([binary, "-F", "-c", config], directory, "master.out")
    dovecot = Dovecot(directory, port, process)
    testcase.addCleanup(dovecot.stop)
    return wait_started(dovecot, "dovecot", listening(dovecot, 15, dovecot.socket, 5), started)

