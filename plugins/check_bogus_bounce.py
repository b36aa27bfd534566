"""check_bogus_bounce — the old name of ``bogus_bounce``; loads it with the same arguments.

The plugin was called ``check_bogus_bounce`` until qpsmtpd renamed the ``check_*`` plugins
(its one argument, ``log``, ``deny`` or ``denysoft``, is unchanged), so existing ``plugins``
files keep working. Prefer ``bogus_bounce`` in new configurations; see
``qpsmtpd-tx plugins doc bogus_bounce``.

Differences from the old plugin: ``bogus_bounce`` also refuses a bounce carrying a non-empty
``Return-Path:`` header, and its replies name the rule that failed (the old plugin's read
``<plugin name> determined this to be a bogus bounce``); see its documentation.
"""

ALIAS_OF = "bogus_bounce"
