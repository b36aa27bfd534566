"""qpsmtpd-tx: a drop-in replacement for the Perl SMTP server qpsmtpd, on Twisted."""

__version__ = "0.1.0"
SOFTWARE_NAME = "qpsmtpd-tx/" + __version__
