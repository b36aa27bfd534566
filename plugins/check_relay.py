"""check_relay — the old name of ``relay``; loads ``relay`` with the same arguments.

qpsmtpd 0.94 renamed the ``check_*`` plugins (Debian ships ``check_relay`` as a shim), so
existing ``plugins`` files keep working. Prefer ``relay`` in new configurations; see
``qpsmtpd-tx plugins doc relay``.
"""

ALIAS_OF = "relay"
