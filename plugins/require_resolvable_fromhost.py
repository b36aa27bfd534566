"""require_resolvable_fromhost — the old name of ``resolvable_fromhost``; loads it with the
same arguments.

qpsmtpd renamed ``require_resolvable_fromhost`` to ``resolvable_fromhost`` (0.94 ships only the
new name), so existing ``plugins`` files keep working. Prefer ``resolvable_fromhost`` in new
configurations; see ``qpsmtpd-tx plugins doc resolvable_fromhost``.
"""

ALIAS_OF = "resolvable_fromhost"
