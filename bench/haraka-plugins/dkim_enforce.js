'use strict'
// dkim_enforce: refuse (550) a message whose DKIM signature failed, for bench/auth_haraka.py.
//
// haraka-plugin-dkim (1.3.1) verifies signatures at data_post and records the results
// (Authentication-Results, the transaction's results store) but has no setting to refuse a
// message: an operator who wants failures refused, as qpsmtpd-tx's dkim does, lists a plugin
// like this one right after `dkim` in config/plugins. Only `fail` (a body hash or signature
// that does not verify) is refused, and not when another signature on the message passed;
// none, neutral, temperror and permerror go through.

exports.hook_data_post = function (next, connection) {
    const dkim = connection.transaction?.results.get('dkim')
    if (dkim?.fail?.length && !dkim.pass?.length) {
        return next(DENY, `DKIM signature of ${dkim.fail[0]} failed verification`)
    }
    next()
}
