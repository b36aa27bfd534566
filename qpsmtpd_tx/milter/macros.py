"""What the milter is told at each stage, from our objects: the CONNECT, MAIL and RCPT
packets and the macros (``(name, value)`` pairs; None values are left out) sent with each
stage. The names are Sendmail's, as milters expect them.
"""

import ipaddress

from qpsmtpd_tx import __version__
from qpsmtpd_tx.milter import codec


def connect_packet(connection):
    """CONNECT for the client: its host name (``[ip]`` without one), family, port, address."""
    name = connection.remote_host or "[%s]" % connection.remote_ip
    try:
        ip = ipaddress.ip_address(connection.remote_ip)
    except ValueError:
        return codec.connect_packet(name, codec.FAMILY_UNKNOWN, 0, "")
    family = codec.FAMILY_INET if ip.version == 4 else codec.FAMILY_INET6
    return codec.connect_packet(name, family, connection.remote_port or 0, connection.remote_ip)


def parameters(params):
    """ESMTP parameters as MAIL/RCPT packets carry them: ``KEY=VALUE`` (or ``KEY``)."""
    return ["%s=%s" % (k.upper(), v) if v is not None else k.upper()
            for k, v in (params or {}).items()]


def mail_packet(sender, params):
    """MAIL for ``sender`` (an Address; None is ``<>``) with its ESMTP parameters."""
    return codec.envelope_packet(codec.MAIL, sender.format() if sender is not None else "<>",
                                 parameters(params))


def rcpt_packet(recipient, params):
    """RCPT for ``recipient`` with its ESMTP parameters."""
    return codec.envelope_packet(codec.RCPT, recipient.format(), parameters(params))


def connect_macros(connection, me, daemon_name=None):
    """``j``, ``_``, ``{daemon_name}`` (``me`` unless given), ``{daemon_addr}``,
    ``{daemon_port}``, ``v``, ``{client_addr}``, ``{client_port}``, ``{client_name}``,
    ``{client_ptr}``."""
    host = connection.remote_host
    host = host if host and host != "Unknown" else "unknown"
    return [("j", me), ("_", "%s [%s]" % (host, connection.remote_ip)),
            ("{daemon_name}", daemon_name or me), ("{daemon_addr}", connection.local_ip),
            ("{daemon_port}", str(connection.local_port)), ("v", "qpsmtpd-tx " + __version__),
            ("{client_addr}", connection.remote_ip),
            ("{client_port}", str(connection.remote_port)),
            ("{client_name}", host), ("{client_ptr}", host)]


def helo_macros(connection):
    """``{tls_version}`` and ``{cipher}`` after STARTTLS."""
    notes = connection.notes
    return [("{tls_version}", notes.get("tls_protocol")), ("{cipher}", notes.get("tls_cipher"))]


def id_macros(transaction):
    """``i``: the transaction id (our queue id)."""
    return [("i", transaction.id)]


def mail_macros(transaction, sender=None):
    """``i``, ``{auth_type}`` and ``{auth_authen}`` after AUTH, ``{mail_addr}``,
    ``{mail_host}`` (of ``sender``, else the transaction's)."""
    conn = transaction.connection
    sender = sender if sender is not None else transaction.sender
    macros = id_macros(transaction)
    if conn.auth_user:
        macros += [("{auth_type}", (conn.auth_mechanism or "").upper()),
                   ("{auth_authen}", conn.auth_user)]
    if sender is not None:
        macros += [("{mail_addr}", "" if sender.is_null else sender.address),
                   ("{mail_host}", sender.host or "")]
    return macros


def rcpt_macros(transaction, recipient):
    """``i``, ``{rcpt_addr}``, ``{rcpt_host}``."""
    return id_macros(transaction) + [("{rcpt_addr}", recipient.address),
                                     ("{rcpt_host}", recipient.host or "")]
