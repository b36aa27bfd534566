"""async/resolvable_fromhost — qpsmtpd 0.94's name for ``resolvable_fromhost`` under qpsmtpd-async.

Every plugin of qpsmtpd-tx is asynchronous, so this loads ``resolvable_fromhost`` with the same
arguments and config files; see ``qpsmtpd-tx plugins doc resolvable_fromhost``.
"""

ALIAS_OF = "resolvable_fromhost"
