'use strict'
// loopback_is_public: treat a client on 127.0.0.0/8 as a client on the Internet, for
// bench/auth_haraka.py.
//
// The benchmark's load generator connects from 127.0.0.1, which Haraka marks
// connection.remote.is_private; haraka-plugin-spf (1.3.0) skips private clients at HELO and,
// unless they relay, at MAIL (no lookup, no result, no header), so its SPF check would cost
// nothing and prove nothing. Listed first in config/plugins, this plugin clears the mark when
// the connection starts, so spf checks 127.0.0.1 against the sender's record as it would a
// public address. Nothing else in the benchmark's chain reads the mark.

exports.hook_connect_init = function (next, connection) {
    connection.remote.is_private = false
    next()
}
