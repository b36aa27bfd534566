"""async/dns_whitelist_soft — qpsmtpd 0.94's name for ``dns_whitelist_soft`` under qpsmtpd-async.

Every plugin of qpsmtpd-tx is asynchronous, so this loads ``dns_whitelist_soft`` with the same
arguments and config files; see ``qpsmtpd-tx plugins doc dns_whitelist_soft``. Loaded under
this name, it waits for the DNS answers at connect, as 0.94's async variant did, so that the
connect hooks of the plugins after it already see the connection note ``whitelisthost``.
"""

ALIAS_OF = "dns_whitelist_soft"
