"""async/uribl — qpsmtpd 0.94's name for ``uribl`` under qpsmtpd-async.

Every plugin of qpsmtpd-tx is asynchronous, so this loads ``uribl`` with the same arguments and
config files; see ``qpsmtpd-tx plugins doc uribl``.
"""

ALIAS_OF = "uribl"
