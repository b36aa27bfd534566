"""One test module per plugin (qpsmtpd's t/plugin_tests/NAME, Haraka's test/plugins/NAME.js)."""
