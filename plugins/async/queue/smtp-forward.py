"""async/queue/smtp-forward — qpsmtpd 0.94's name for ``queue/smtp-forward`` under qpsmtpd-async.

Every plugin of qpsmtpd-tx is asynchronous, so this loads ``queue/smtp-forward`` with the same
arguments and config files; see ``qpsmtpd-tx plugins doc queue/smtp-forward``.
"""

ALIAS_OF = "queue/smtp-forward"
