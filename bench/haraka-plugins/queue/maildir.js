'use strict'
// queue/maildir: deliver each message into one Maildir, for bench/run.py.
//
// Haraka has no Maildir queue plugin; this one does what qpsmtpd's queue/maildir does:
// write the message (headers and body, dot-unstuffed, LF line endings) to maildir/tmp/NAME,
// rename it into maildir/new/NAME, then answer 250. config/maildir.ini:
//
//     path=/the/maildir        (required; cur/ new/ tmp/ must exist)
//     fsync=false              (true: fsync the file before the rename and new/ after it,
//                               like qpsmtpd-tx's queue/maildir; false, the default, is how
//                               Haraka users run a local delivery)

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

let counter = 0

exports.register = function () {
    this.cfg = this.config.get('maildir.ini', { booleans: ['-main.fsync'] }).main
    if (!this.cfg.path) throw new Error('queue/maildir: config/maildir.ini has no path=')
    this.register_hook('queue', 'deliver')
}

exports.deliver = function (next, connection) {
    const plugin = this
    const fsync = plugin.cfg.fsync
    const name = `${Date.now()}.${process.pid}_${++counter}.${os.hostname()}`
    const tmp = path.join(plugin.cfg.path, 'tmp', name)
    const dest = path.join(plugin.cfg.path, 'new', name)
    const fail = (err) => {
        connection.logerror(plugin, `delivery failed: ${err.message}`)
        fs.unlink(tmp, () => next(DENYSOFT, 'Maildir delivery failed'))
    }
    const sync = (fd, cb) => (fsync ? fs.fsync(fd, cb) : cb())
    fs.open(tmp, 'wx', 0o600, (err, fd) => {
        if (err) return fail(err)
        const ws = fs.createWriteStream(null, { fd, autoClose: false })
        ws.on('error', fail)
        ws.on('finish', () => sync(fd, (err) => {
            fs.close(fd, () => {})
            if (err) return fail(err)
            fs.rename(tmp, dest, (err) => {
                if (err) return fail(err)
                if (!fsync) return next(OK, 'Queued!')
                fs.open(path.dirname(dest), 'r', (err, dfd) => {
                    if (err) return fail(err)
                    fs.fsync(dfd, (err) => {
                        fs.close(dfd, () => {})
                        if (err) return fail(err)
                        next(OK, 'Queued!')
                    })
                })
            })
        }))
        connection.transaction.message_stream.pipe(ws, { line_endings: '\n' })
    })
}
