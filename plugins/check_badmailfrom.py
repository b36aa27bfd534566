"""check_badmailfrom — the old name of ``badmailfrom``; loads it with the same arguments.

qpsmtpd 0.94 renamed ``check_badmailfrom`` to ``badmailfrom`` (Debian ships
``check_badmailfrom`` as a shim), so existing ``plugins`` files keep working. Prefer
``badmailfrom`` in new configurations; see ``qpsmtpd-tx plugins doc badmailfrom``.
"""

ALIAS_OF = "badmailfrom"
