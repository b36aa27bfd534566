"""async/dns_whitelist_soft — qpsmtpd 0.94's name for ``dns_whitelist_soft`` under qpsmtpd-async.

Every plugin of qpsmtpd-tx is asynchronous, so this loads ``dns_whitelist_soft`` with the same
arguments and config files; see ``qpsmtpd-tx plugins doc dns_whitelist_soft``.
"""

ALIAS_OF = "dns_whitelist_soft"
