"""async/dnsbl — qpsmtpd 0.94's name for ``dnsbl`` under qpsmtpd-async.

Every plugin of qpsmtpd-tx is asynchronous, so this loads ``dnsbl`` with the same arguments and
config files; see ``qpsmtpd-tx plugins doc dnsbl``.
"""

ALIAS_OF = "dnsbl"
