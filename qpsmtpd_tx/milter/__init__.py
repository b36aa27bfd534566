"""An MTA-side milter client (milter protocol version 6), for the ``milter`` plugin.

- :mod:`~qpsmtpd_tx.milter.codec`: the packets and their constants, bytes only;
- :mod:`~qpsmtpd_tx.milter.state`: the conversation as a state table (what to send at each
  stage, what the milter's replies mean), without I/O;
- :mod:`~qpsmtpd_tx.milter.client`: the Twisted connection and the time limits;
- :mod:`~qpsmtpd_tx.milter.macros`: the CONNECT/MAIL/RCPT packets and macros from our objects;
- :mod:`~qpsmtpd_tx.milter.changes`: the milter's changes applied to a transaction.
"""
