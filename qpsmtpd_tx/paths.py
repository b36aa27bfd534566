"""Where the program's own plugins and default config live, from a checkout or an install."""

import os
import sys

#: the directory holding qpsmtpd_tx/, plugins/ and etc/ when run from a source checkout
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: where ``pip install`` puts plugins/ and etc/ (setup.cfg data_files)
INSTALL_ROOT = os.path.join(sys.prefix, "share", "qpsmtpd-tx")


def program_dir():
    """The directory qpsmtpd's "beside the program" means: the checkout, else the install share dir."""
    if os.path.isdir(os.path.join(SOURCE_ROOT, "plugins")):
        return SOURCE_ROOT
    return INSTALL_ROOT


def default_plugin_dirs():
    """Plugin directories used when the config has no ``plugin_dirs``."""
    return [os.path.join(program_dir(), "plugins")]
