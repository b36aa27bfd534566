"""The two header fields the core adds to every message: Received and Authentication-Results."""

from email.utils import formatdate

from qpsmtpd_tx import SOFTWARE_NAME
from qpsmtpd_tx.authresults import header_value
from qpsmtpd_tx.printable import printable


class _DateCache:
    """The RFC 5322 date of a second, formatted once per second (formatdate costs more than
    the rest of the Received field)."""

    def __init__(self):
        self.second = None
        self.text = ""

    def __call__(self, when):
        second = int(when)
        if second != self.second:
            self.text = formatdate(second, localtime=True)
            self.second = second
        return self.text


_date = _DateCache()


def received_header(me, connection, proto, when):
    """The value of the Received field (two lines), as qpsmtpd 0.94 writes it.

    ``from <remote_info> (HELO <helo>) (<ip>)`` / `` by <me> (qpsmtpd-tx/<ver>) with <proto>; <date>``
    where ``proto`` is SMTP, ESMTP, ESMTPS, ESMTPA or ESMTPSA (RFC 3848). Client-supplied
    parts are escaped (:func:`~qpsmtpd_tx.printable.printable`): they cannot split the field.
    """
    remote = connection.remote_info or connection.remote_host or "Unknown"
    cipher = connection.notes.get("tls_cipher")
    cipher_text = "(%s encrypted) " % cipher if cipher else ""
    return "from %s (HELO %s) (%s)\n by %s (%s) with %s%s; %s" % (
        printable(remote), printable(connection.hello_host), connection.remote_ip, me, SOFTWARE_NAME,
        cipher_text, proto, _date(when),
    )


def authentication_results_header(me, connection):
    """The value of the Authentication-Results field (RFC 8601) before any transaction
    results: see :func:`qpsmtpd_tx.authresults.header_value`."""
    return header_value(me, connection)
