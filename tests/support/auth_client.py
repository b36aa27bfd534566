"""smtplib's AUTH against a server on the reactor: the tests of the auth back ends.

smtplib blocks, so :func:`auth` runs it in a thread while the reactor serves the test's
server (``tests.support.server.start_server``) and the back ends the test started.

    server, port = start_server(self, ["auth/auth_checkpassword checkpw ... true /bin/true"],
                                FILES)
    self.assertEqual((await auth(port, "alice", "secret"))[0], 235)
"""

import smtplib

from twisted.internet import threads

#: a server config with no delay after a failed AUTH (the tests do not wait for it)
NO_DELAY = {"auth_failure_delay": "0"}


def _auth(port, user, password, mechanism, advertised):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example")
        if advertised is not None:
            advertised.extend(client.esmtp_features.get("auth", "").upper().split())
        client.user, client.password = user, password
        method = {"PLAIN": client.auth_plain, "LOGIN": client.auth_login,
                  "CRAM-MD5": client.auth_cram_md5}[mechanism]
        try:
            code, text = client.auth(mechanism, method, initial_response_ok=mechanism == "PLAIN")
        except smtplib.SMTPAuthenticationError as e:
            code, text = e.smtp_code, e.smtp_error
        except smtplib.SMTPServerDisconnected:
            return "closed"
        return code, text.decode("utf-8", "replace")


def auth(port, user, password, mechanism="PLAIN", advertised=None):
    """A Deferred of the final AUTH reply ``(code, text)`` of one smtplib session on
    127.0.0.1:``port`` (EHLO, then AUTH ``mechanism``); ``"closed"`` if the server hung up.
    ``advertised``, a list, gets the mechanisms of the EHLO reply."""
    return threads.deferToThread(_auth, port, user, password, mechanism, advertised)
