"""A forwarder's ARC set, made with our own sealing code (:func:`qpsmtpd_tx.arc.seal`) for
the tests that need a message sealed by another domain: the key is the test's (its public
half published under that domain on the private NSD)."""

import io
import os

from qpsmtpd_tx import arc, dkim_body, dkim_sign
from tests.support.dkim_cases import SELECTOR


def forwarder_sealed(message, keyfile, domain, results, cv="pass"):
    """``message`` (bytes, CRLF) with an ARC set of ``domain`` on top, sealed with the key
    ``keyfile`` (selector :data:`SELECTOR`) as a forwarder whose checks found ``results``
    (an Authentication-Results value, authserv-id first) and the chain ``cv``."""
    directory = os.path.dirname(keyfile)
    with open(os.path.join(directory, "selector"), "w") as f:
        f.write(SELECTOR + "\n")
    key = dkim_sign.SigningKey(domain, directory)
    header, body = message.split(b"\r\n\r\n", 1)
    body_hash = dkim_body.body_hashes(io.BytesIO(body.replace(b"\r\n", b"\n")),
                                      [arc.SEAL_BODY])[arc.SEAL_BODY]
    fields = arc.seal(key, header.replace(b"\r\n", b"\n") + b"\n", body_hash,
                      arc.Verdict(cv), results)
    return "".join("%s: %s\r\n" % (name, value.replace("\n", "\r\n"))
                   for name, value in reversed(fields)).encode() + message
