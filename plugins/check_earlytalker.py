"""check_earlytalker — the old name of ``earlytalker``; loads ``earlytalker`` with the same arguments.

qpsmtpd 0.94 renamed the ``check_*`` plugins (Debian ships ``check_earlytalker`` as a shim and
its default ``plugins`` file loads ``check_earlytalker action log``), so existing ``plugins``
files keep working. Prefer ``earlytalker`` in new configurations; see
``qpsmtpd-tx plugins doc earlytalker``.
"""

ALIAS_OF = "earlytalker"
