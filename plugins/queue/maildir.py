"""queue/maildir — deliver each accepted message into a Maildir, durably.

The message is written to ``tmp/``, fsynced, linked into ``new/`` and the directory fsynced
before the client gets ``250`` (a Maildir created for it, e.g. by ``PATTERN``, has the
parents of its new directories fsynced too); any failure answers ``451`` and leaves nothing half-delivered
in ``new/``. A body held in memory (below ``size_threshold``) is written, fsynced and linked
by the server's delivery child process (:mod:`qpsmtpd_tx.syncer`), several messages at a time,
with one fsync of ``new/`` per batch; that process starts with the server (in each
``--workers`` worker too), and if it ends or cannot start, the deliveries it had not answered
get ``451`` and the next one starts a new process. Where that process
cannot run (the server's Python or its library not usable by the user it runs as, e.g.
under ``/root`` with ``--uid``), a warning says so at start-up and the server's own threads
do the same (:mod:`qpsmtpd_tx.thread_syncer`), at some CPU cost. A larger body is
copied from the spool a megabyte at a time, so it does not become memory, in the server's I/O
thread pool (``blocking_threads``); so many deliveries overlap and the server keeps serving
other clients.

Arguments: ``[DIR [PATTERN [MODE]]]``
  ``DIR``      the Maildir (default ``./var/maildir``); ``cur``, ``new``, ``tmp`` are created.
  ``PATTERN``  deliver one copy per recipient into ``DIR/PATTERN``, where ``%l`` is the local
               part, ``%d`` the domain and ``%u`` the whole address (characters other than
               ``-A-Za-z0-9+_.,@=`` become ``_``).
  ``MODE``     octal permission of every directory it creates, the Maildir itself and any
               missing parent included, whatever the umask (default ``700``); files get it
               without the execute bits (less the umask).

Config files: none.

At start-up the Maildir (``cur``, ``new``, ``tmp``) is created, as the user the server runs as;
``qpsmtpd-tx check-config`` checks the arguments but creates nothing.

What is written: ``Return-Path: <sender>``, one ``Delivered-To:`` per recipient, the header
(with the core's Received and Authentication-Results) and the body, with LF line endings.

Replies: ``250 Queued! <Message-Id>``; on any error ``451 queue error (<what>)``.
"""

import os
import re

from twisted.internet import defer

from qpsmtpd_tx.codes import DECLINED, LOGERROR, LOGINFO, LOGWARN, OK
from qpsmtpd_tx.maildir import MaildirError, make_maildir, write_maildir
from qpsmtpd_tx.syncer import SYNCER, child_problem
from qpsmtpd_tx.thread_syncer import THREAD_SYNCER
from qpsmtpd_tx.plugin import Plugin, PluginError


_UNSAFE = re.compile(r"[^-A-Za-z0-9+_.,@=]")


class Maildir(Plugin):
    """Deliver to a Maildir with fsync, from the delivery child or a thread."""

    def init(self, args):
        if len(args) > 3:
            raise PluginError("usage: queue/maildir [DIR [PATTERN [MODE]]]")
        self.maildir = os.path.abspath(args[0] if args else os.path.join("var", "maildir"))
        self.pattern = args[1] if len(args) > 1 else None
        try:
            self.mode = int(args[2], 8) if len(args) > 2 else 0o700
        except ValueError:
            raise PluginError("MODE must be octal, got %r" % args[2])
        if self.server.check_only:
            return  # a config check (qpsmtpd-tx check-config) creates nothing
        try:
            make_maildir(self.maildir, self.mode)
        except OSError as e:
            raise PluginError("cannot create %s: %s" % (self.maildir, e.strerror))
        problem = child_problem()
        if problem is None:
            self.syncer = SYNCER
            SYNCER.log = self.log     # the delivery child's troubles go to the server's log
            SYNCER.start_with_reactor()
        else:
            self.syncer = THREAD_SYNCER
            self.log(LOGWARN, "cannot run the delivery child (%s): delivering from threads, "
                     "which costs more CPU" % problem)

    def stop(self):
        # At shutdown (the sessions have drained) wait for the delivery child to exit, so
        # that this process reaps it; after a reload the new chain's instance goes on using it.
        if self.server.draining and getattr(self, "syncer", None) is SYNCER:
            return SYNCER.close_at_shutdown()   # (at most Syncer.SHUTDOWN_WAIT)
        return None

    def hook_queue(self, transaction):
        # Take the message now, in the reactor thread: the body file stays readable even if
        # the client goes away and the transaction is discarded while the thread writes.
        header = transaction.header_bytes()
        body = transaction.body.open()
        sender = transaction.sender.format() if transaction.sender else "<>"
        recipients = [r.address for r in transaction.recipients]
        msgid = (transaction.header.get_first("Message-Id") or "") if transaction.header else ""
        jobs = self._jobs(sender, recipients)
        if transaction.body.filename is None:
            d = self._deliver_now(jobs, header, body)
        else:
            d = self.server.run_blocking(self._deliver, jobs, header, body)
        d.addCallbacks(self._delivered, self._failed, callbackArgs=(transaction, msgid),
                       errbackArgs=(transaction,))
        return d

    def _jobs(self, sender, recipients):
        return_path = ("Return-Path: %s\n" % sender).encode("utf-8", "surrogateescape")
        if self.pattern is None:
            delivered = "".join("Delivered-To: %s\n" % r for r in recipients)
            return [(self.maildir, return_path + delivered.encode("utf-8", "surrogateescape"))]
        jobs = []
        for rcpt in recipients:
            local, _, domain = rcpt.rpartition("@")
            sub = (self.pattern.replace("%l", _UNSAFE.sub("_", local))
                   .replace("%d", _UNSAFE.sub("_", domain)).replace("%u", _UNSAFE.sub("_", rcpt)))
            prefix = return_path + ("Delivered-To: %s\n" % rcpt).encode("utf-8", "surrogateescape")
            jobs.append((os.path.join(self.maildir, sub), prefix))
        return jobs

    def _deliver(self, jobs, header, body):
        try:
            names = []
            for maildir, prefix in jobs:
                body.seek(0)
                names.append(write_maildir(maildir, self.mode, [prefix, header], body))
            return names
        finally:
            body.close()

    def _deliver_now(self, jobs, header, body):
        # A body kept in memory (below size_threshold) goes to the delivery child as bytes.
        try:
            text = body.read()
        finally:
            body.close()
        committing = [self.syncer.deliver(maildir, self.mode, [prefix, header, text])
                      for maildir, prefix in jobs]
        if len(committing) == 1:
            return committing[0].addCallback(lambda name: [name])
        d = defer.gatherResults(committing, consumeErrors=True)
        return d.addErrback(lambda failure: failure.value.subFailure)

    def _delivered(self, names, transaction, msgid):
        self.log(LOGINFO, "delivered to %s" % ", ".join(names), transaction)
        return OK, ("Queued! %s" % msgid).rstrip()

    def _failed(self, failure, transaction):
        reason = failure.getErrorMessage()
        self.log(LOGERROR, "maildir delivery failed: %s" % reason, transaction)
        if failure.check(MaildirError):
            return DECLINED, "queue error (%s)" % reason.split(":")[0]
        return DECLINED, "queue error (%s)" % reason
