"""Running a server under test with a resolv.conf the test wrote, read the way an operator's
server reads it: from ``/etc/resolv.conf``.

:func:`with_resolv_conf` prefixes a command line so that it runs in a private mount namespace
(``unshare --mount``, private propagation) where the test's file is bind-mounted over
``/etc/resolv.conf``; the process keeps its PID (``unshare`` and ``sh`` exec it), so it is
stopped as usual. The real ``/etc/resolv.conf`` and every other process are untouched. It
needs root (``unshare --mount``); the namespace outlives a switch to another user (Perl's
forkserver ``-u qpsmtpd``), and the file need only be world-readable, wherever it lies.

    argv = with_resolv_conf(write_resolv_conf(path, [dns.address]), ["getent", "hosts", name])
"""

import os

from twisted.trial.unittest import SkipTest

UNSHARE = "/usr/bin/unshare"
#: the shell step inside the namespace: $0 is the test's file, "$@" the command
_MOUNT_THEN_EXEC = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'


def resolv_conf_text(nameservers, options=()):
    """A resolv.conf: one ``nameserver`` line each, then ``options`` (e.g. ``"timeout:1"``)."""
    lines = ["nameserver %s" % address for address in nameservers]
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def write_resolv_conf(path, nameservers, options=()):
    """Write :func:`resolv_conf_text` to ``path`` (readable by every user); return the path."""
    with open(path, "w") as f:
        f.write(resolv_conf_text(nameservers, options))
    os.chmod(path, 0o644)
    return os.path.abspath(path)


def with_resolv_conf(resolv_conf, argv):
    """``argv`` prefixed to run where ``/etc/resolv.conf`` is the file ``resolv_conf``.
    SkipTest if that cannot be done here (not root, no ``unshare``)."""
    if os.geteuid() != 0:
        raise SkipTest("a private /etc/resolv.conf needs root (unshare --mount, mount --bind)")
    if not os.access(UNSHARE, os.X_OK):
        raise SkipTest("%s is missing (package util-linux)" % UNSHARE)
    return [UNSHARE, "--mount", "--propagation", "private", "--", "sh", "-c", _MOUNT_THEN_EXEC,
            os.path.abspath(resolv_conf)] + list(argv)


def for_test(testcase, nameservers, argv, options=()):
    """``argv`` prefixed to run with a resolv.conf naming ``nameservers``, written in the
    test's temp directory (the ``nameservers=`` keyword of the suite's launchers)."""
    path = write_resolv_conf(os.path.abspath(testcase.mktemp() + ".resolv.conf"), nameservers, options)
    return with_resolv_conf(path, argv)
