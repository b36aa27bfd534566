"""check_spamhelo — the old name of ``helo``; loads ``helo`` with the same arguments.

qpsmtpd 0.94 renamed ``check_spamhelo`` to ``helo`` (Debian ships ``check_spamhelo`` as a
shim), so existing ``plugins`` files keep working. Prefer ``helo`` in new configurations; see
``qpsmtpd-tx plugins doc helo``.
"""

ALIAS_OF = "helo"
