"""The twistd plugin: ``twistd qpsmtpd-tx``."""

from twisted.application.service import ServiceMaker

qpsmtpd_tx = ServiceMaker(
    "qpsmtpd-tx",
    "qpsmtpd_tx.tap",
    "SMTP server running qpsmtpd plugins and config (a drop-in for qpsmtpd)",
    "qpsmtpd-tx",
)
