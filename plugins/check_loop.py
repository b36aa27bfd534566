"""check_loop — the old name of ``loop``; loads ``loop`` with the same arguments.

qpsmtpd 0.94 renamed the ``check_*`` plugins (Debian ships ``check_loop`` as a shim, and
loads it in its default ``plugins`` file), so existing configurations keep working. Prefer
``loop`` in new configurations; see ``qpsmtpd-tx plugins doc loop``.
"""

ALIAS_OF = "loop"
