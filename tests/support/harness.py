"""The suite's view of :mod:`qpsmtpd_tx.testing`: the same kit, with the test plugins.

Everything here is :mod:`qpsmtpd_tx.testing`, except that :func:`make_server`,
:func:`startup_error`, :func:`assertStartupError` and :class:`StartupErrorMixin` also find
the suite's own test plugins (``tests/fixture_plugins``) before the bundled ones.
"""

import functools
import os

from qpsmtpd_tx import testing
from qpsmtpd_tx.testing import (  # noqa: F401 (re-exported for the tests)
    CountingTransport, MemoryClient, capture_log, codes_of, eventually, fake_transaction,
    loaded_plugin, log_every_level, maildir_by_recipient, maildir_messages, plugin_module, wait_for, write_config)

TEST_PLUGINS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixture_plugins")

make_server = functools.partial(testing.make_server, plugin_dirs=[TEST_PLUGINS])
startup_error = functools.partial(testing.startup_error, plugin_dirs=[TEST_PLUGINS])
assertStartupError = functools.partial(testing.assertStartupError, plugin_dirs=[TEST_PLUGINS])


class StartupErrorMixin(testing.StartupErrorAssertions):
    """``self.assertStartupError(plugins, expected, files=None)`` with the test plugins."""

    plugin_search_dirs = [TEST_PLUGINS]
