"""``python -m qpsmtpd_tx``: the qpsmtpd-tx command line (see :mod:`qpsmtpd_tx.cli`)."""

import sys

from qpsmtpd_tx.cli import main

sys.exit(main())
