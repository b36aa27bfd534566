"""Starting Debian's Perl ``qpsmtpd-forkserver`` on a config dir, for differential tests."""

import os
import pwd
import shutil
import subprocess
import tempfile
from unittest import SkipTest

from tests.support import resolv_conf
from tests.support.processes import reserve_port, stop_process, wait_for_port

FORKSERVER = "/usr/bin/qpsmtpd-forkserver"
PERL_PLUGIN_DIR = "/usr/share/qpsmtpd/plugins"
#: the user Debian's package creates; forkserver refuses to keep running as root
PERL_USER = "qpsmtpd"


def available():
    """Why the Perl server cannot run here, or None if it can."""
    if not os.access(FORKSERVER, os.X_OK):
        return "%s is not installed (apt-get install qpsmtpd; .ci/run does)" % FORKSERVER
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PERL_USER)
        except KeyError:
            return "user %s missing (it comes with Debian's qpsmtpd package)" % PERL_USER
    return None


def shared_root(testcase, prefix):
    """A temporary directory the Perl server can use, removed after the test; skips without Perl.

    Not under trial's temp dir: its parents are mode 0700, and the Perl server runs as the
    qpsmtpd user, which must read the config there (call :func:`give_to_perl_user` once it
    is written).
    """
    why = available()
    if why:
        raise SkipTest(why)
    root = tempfile.mkdtemp(prefix=prefix)
    testcase.addCleanup(shutil.rmtree, root, True)
    os.chmod(root, 0o755)
    return root


def give_to_perl_user(*paths):
    """Let the Perl server (running as the qpsmtpd user) write these trees."""
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam(PERL_USER)
    for top in paths:
        for dirpath, _, filenames in os.walk(top):
            for path in [dirpath] + [os.path.join(dirpath, n) for n in filenames]:
                os.chown(path, pw.pw_uid, pw.pw_gid)


def start_forkserver(testcase, config_dir, nameservers=None, with_log=False):
    """Start qpsmtpd-forkserver on 127.0.0.1; stopped at the test's end. Returns the port
    (with ``with_log``: the port and the path of its output). With ``nameservers`` (IPs),
    it runs where /etc/resolv.conf names them (tests.support.resolv_conf)."""
    port = reserve_port(testcase)
    argv = [FORKSERVER, "-l", "127.0.0.1", "-p", str(port), "-c", "20", "-m", "20"]
    if os.geteuid() == 0:
        argv += ["-u", PERL_USER]
    if nameservers is not None:
        argv = resolv_conf.for_test(testcase, nameservers, argv)
    env = dict(os.environ, QPSMTPD_CONFIG=config_dir)
    log_path = os.path.abspath(testcase.mktemp() + ".perl.log")
    log = open(log_path, "wb")
    process = subprocess.Popen(argv, env=env, cwd=os.path.dirname(config_dir),
                               stdout=log, stderr=subprocess.STDOUT)
    testcase.addCleanup(log.close)
    testcase.addCleanup(stop_process, process)
    wait_for_port(port, process)
    return (port, log_path) if with_log else port


def start_both(testcase, plugins, files, nameservers, prefix):
    """Perl qpsmtpd and our twistd on twin configs: ``plugins`` lines (``{}`` in a line is
    replaced by a Maildir of that server's own) and ``files``, Perl's with its plugin
    directory; both reading ``nameservers`` through a private /etc/resolv.conf. Returns
    ``(perl_port, our_port, root)``: the Maildirs are ``root``/perl-md and ``root``/ours-md.
    Skips without Perl."""
    from tests.support.harness import write_config
    from tests.support.processes import start_twistd
    root = shared_root(testcase, prefix)

    def config(name, extra):
        return write_config(os.path.join(root, name),
                            [line.format(os.path.join(root, name + "-md")) for line in plugins],
                            dict(files, **extra))

    perl_config = config("perl", {"plugin_dirs": PERL_PLUGIN_DIR})
    ours_config = config("ours", {})
    give_to_perl_user(root)
    perl = start_forkserver(testcase, perl_config, nameservers=nameservers)
    _, ours, _ = start_twistd(testcase, ours_config, nameservers=nameservers)
    return perl, ours, root
