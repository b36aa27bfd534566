"""check_basicheaders — the old name of ``headers``; loads ``headers`` with the same arguments.

qpsmtpd 0.94 replaced ``check_basicheaders`` by ``headers``; this alias keeps older
``plugins`` files working. The old argument forms are understood: ``check_basicheaders 5``
and ``check_basicheaders days 5`` (refuse dates more than 5 days in the past or future).
Loaded under this name, ``From`` and ``Date`` are both required unless ``require`` says
otherwise, as the old plugin required both. Prefer ``headers`` in new configurations; see
``qpsmtpd-tx plugins doc headers``.
"""

ALIAS_OF = "headers"
