"""check_badrcptto — the old name of ``badrcptto``; loads ``badrcptto`` with the same arguments.

qpsmtpd 0.94 renamed ``check_badrcptto`` to ``badrcptto`` (Debian ships ``check_badrcptto``
as a shim), so existing ``plugins`` files keep working. Prefer ``badrcptto`` in new
configurations; see ``qpsmtpd-tx plugins doc badrcptto``.
"""

ALIAS_OF = "badrcptto"
