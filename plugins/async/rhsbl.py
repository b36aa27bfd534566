"""async/rhsbl — qpsmtpd 0.94's name for ``rhsbl`` under qpsmtpd-async.

Every plugin of qpsmtpd-tx is asynchronous, so this loads ``rhsbl`` with the same arguments and
config files; see ``qpsmtpd-tx plugins doc rhsbl``.
"""

ALIAS_OF = "rhsbl"
