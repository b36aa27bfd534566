"""async/earlytalker — qpsmtpd 0.94's name for ``earlytalker`` under qpsmtpd-async.

Every plugin of qpsmtpd-tx is asynchronous, so this loads ``earlytalker`` with the same
arguments and config files; see ``qpsmtpd-tx plugins doc earlytalker``.
"""

ALIAS_OF = "earlytalker"
