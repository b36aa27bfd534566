"""auth/auth_vpopmail — loads, warns and stays disabled: qpsmtpd-tx cannot call vpopmail's C
library.

qpsmtpd 0.94's plugin checked passwords with ``vauth_getpw`` of the vpopmail Perl module
(p5-vpopmail, bound to libvpopmail), running as the ``vpopmail`` user. Which store that
function reads (cdb files, MySQL, PostgreSQL, LDAP…) is chosen when vpopmail is compiled,
so reading one of those stores here would be a guess that is wrong for the others, and no
vpopmail library exists for Python.

So this plugin does what 0.94's does where the vpopmail module is not installed (its
``register`` logs "skip: is vpopmail perl module installed?" and adds no hook): at start-up it
logs an error naming the replacements, and offers no AUTH mechanism. The replacements give
the same answers:

* ``auth/auth_checkpassword checkpw /home/vpopmail/bin/vchkpw true /bin/true`` — vpopmail's
  own checkpassword program, which calls ``vauth_getpw`` with whatever store vpopmail was
  built with (it must run as the vpopmail user: setuid, or through a sudo wrapper; see
  ``qpsmtpd-tx plugins doc auth/auth_checkpassword``);
* ``auth/auth_vpopmaild`` — vpopmail's daemon, over TCP;
* ``auth/auth_vpopmail_sql`` — vpopmail's SQL table, read directly.

Arguments: none. Config files: none. Replies: none (no hook).
"""

from qpsmtpd_tx.codes import LOGERROR
from qpsmtpd_tx.plugin import Plugin, PluginError

#: the start-up message (also in the tests)
DISABLED = ("disabled: needs vpopmail's C library (vauth_getpw), which qpsmtpd-tx cannot use; "
            "use auth/auth_checkpassword with vpopmail's vchkpw (checkpw "
            "/home/vpopmail/bin/vchkpw true /bin/true), auth/auth_vpopmaild, or "
            "auth/auth_vpopmail_sql instead")


class AuthVpopmail(Plugin):
    """Logs that it is disabled and why; registers no hook (as 0.94 without vpopmail)."""

    def init(self, args):
        if args:
            raise PluginError("takes no arguments")
        if not self.server.check_only:
            self.log(LOGERROR, DISABLED)
