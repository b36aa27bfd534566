"""check_loop — the old name of ``loop``; loads ``loop`` with the same arguments.

qpsmtpd 0.94 renamed the ``check_*`` plugins (Debian ships ``check_loop`` as a shim, and
loads it in its default ``plugins`` file), so existing configurations keep working. Prefer
``loop`` in new configurations; see ``qpsmtpd-tx plugins doc loop``.

Intended difference: Debian's Perl shim replaces ``loop``'s ``init``, so ``max_hops`` is never
set and every message, with no Received header at all, is refused with
``552 Too many hops (#5.4.6)``: an unchanged Debian ``/etc/qpsmtpd`` with a queue method
chosen accepts no mail. Here ``check_loop`` is ``loop`` with its default of 100 hops.
"""

ALIAS_OF = "loop"
