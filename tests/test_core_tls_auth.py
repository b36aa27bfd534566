"""The core's AUTH state around STARTTLS: allowed after AUTH, which the handshake forgets; the
exchange in progress is held by the core alone."""

from twisted.trial import unittest

from qpsmtpd_tx.core import SMTPCore, State


def authenticated_core():
    """A core after EHLO and a successful AUTH."""
    core = SMTPCore()
    core.greet()
    core.helo(auth_offered=True)
    core.auth()
    core.auth_end(success=True)
    return core


class STARTTLSAfterAUTHTests(unittest.TestCase):
    """RFC 3207 4.2: STARTTLS after AUTH is the client's right; afterwards AUTH counts no more."""

    def test_allowed_after_auth(self):
        self.assertIsNone(authenticated_core().refusal("starttls"))

    def test_handshake_forgets_auth(self):
        core = authenticated_core()
        core.starttls()
        core.tls_done()
        self.assertFalse(core.authenticated)
        core.helo(auth_offered=True)
        self.assertIsNone(core.refusal("auth"))


class ExchangeTests(unittest.TestCase):
    """``auth_exchange`` is set exactly while the core is in state AUTH."""

    def test_held_from_auth_to_auth_end(self):
        core = SMTPCore()
        core.greet()
        core.helo(auth_offered=True)
        exchange = object()
        core.auth(exchange)
        self.assertIs(core.auth_exchange, exchange)
        self.assertIs(core.state, State.AUTH)
        core.auth_end()
        self.assertIsNone(core.auth_exchange)

    def test_dropped_on_close(self):
        core = SMTPCore()
        core.greet()
        core.helo(auth_offered=True)
        core.auth(object())
        core.close()
        self.assertIsNone(core.auth_exchange)
