"""auth/auth_vpopmail — refused at start-up: qpsmtpd-tx cannot call vpopmail's C library.

qpsmtpd 0.94's plugin checked passwords with ``vauth_getpw`` of the vpopmail Perl module
(p5-vpopmail, bound to libvpopmail), running as the ``vpopmail`` user. Which store that
function reads (cdb files, MySQL, PostgreSQL, LDAP…) is chosen when vpopmail is compiled,
so reading one of those stores here would be a guess that is wrong for the others, and no
vpopmail library exists for Python. A ``plugins`` line naming it stops start-up with a
message naming the replacements, which give the same answers:

* ``auth/auth_checkpassword checkpw /home/vpopmail/bin/vchkpw true /bin/true`` — vpopmail's
  own checkpassword program, which calls ``vauth_getpw`` with whatever store vpopmail was
  built with (it must run as the vpopmail user: setuid, or through a sudo wrapper; see
  ``qpsmtpd-tx plugins doc auth/auth_checkpassword``);
* ``auth/auth_vpopmaild`` — vpopmail's daemon, over TCP;
* ``auth/auth_vpopmail_sql`` — vpopmail's SQL table, read directly.

Arguments, config files, replies: none (it never starts).
"""

from qpsmtpd_tx.plugin import Plugin, PluginError


class AuthVpopmail(Plugin):
    """Stops start-up, naming the plugins to use instead."""

    def init(self, args):
        raise PluginError(
            "needs vpopmail's C library (vauth_getpw), which qpsmtpd-tx cannot use; use "
            "auth/auth_checkpassword with vpopmail's vchkpw (checkpw /home/vpopmail/bin/vchkpw "
            "true /bin/true), auth/auth_vpopmaild, or auth/auth_vpopmail_sql instead")
