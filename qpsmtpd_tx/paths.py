"""Where the program's own plugins and default config live, from a checkout or an install."""

import os
import site
import sys
import sysconfig

#: the directory holding qpsmtpd_tx/, plugins/ and etc/ when run from a source checkout
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _install_roots():
    """Candidate ``share/qpsmtpd-tx`` dirs of an install: venv/prefix, user base, /usr/local."""
    bases = [sysconfig.get_path("data"), sys.prefix, getattr(site, "USER_BASE", None)]
    return [os.path.join(b, "share", "qpsmtpd-tx") for b in bases if b]


def program_dir():
    """The directory qpsmtpd's "beside the program" means: the checkout, else the install share dir."""
    # A checkout is recognised by one of our own plugins, not just any "plugins" directory.
    if os.path.isfile(os.path.join(SOURCE_ROOT, "plugins", "rcpt_ok.py")):
        return SOURCE_ROOT
    for root in _install_roots():
        if os.path.isfile(os.path.join(root, "plugins", "rcpt_ok.py")):
            return root
    return _install_roots()[0]


def default_plugin_dirs():
    """Our own plugin directory (searched before any ``plugin_dirs`` of the config)."""
    return [os.path.join(program_dir(), "plugins")]
