"""A transaction's ARC chain (:mod:`qpsmtpd_tx.arc`), checked once per message for the plugins
that need it: the ``arc`` plugin (result and seal) and the ``dmarc`` plugin (its override by a
trusted sealer), whichever asks first at data_post.

The chain is checked on the header as received (``transaction.received_fields``: the core
prepends its own fields before data_post); the body is hashed streaming from the spool and the keys are asked through the server's
resolver, as the ``dkim`` plugin does.
"""

from twisted.internet import defer

from qpsmtpd_tx import arc, dkim_body, dkim_verify

_CHECKED = "arc_checked"


class Checked:
    """A message's checked chain: ``fields`` (the header as received, parsed), ``chain``
    (:class:`arc.Chain`), ``verdict`` (:class:`arc.Verdict`), ``hashes`` (the body hashes
    computed so far, :func:`dkim_body.body_hashes` keys), ``problem`` (why the header could
    not be parsed, else None)."""

    def __init__(self, fields, chain, verdict, hashes, problem=None):
        self.fields, self.chain, self.verdict, self.hashes, self.problem = (
            fields, chain, verdict, hashes, problem)


def check(server, transaction, timeout, extra_body=()):
    """A Deferred of the message's :class:`Checked`, computed on the first call and kept in
    the transaction; ``extra_body`` names body hashes wanted beside the chain's (computed in
    the same pass, or in one more pass when the chain was checked without them)."""
    done = transaction.notes.get(_CHECKED)
    if done is not None:
        missing = set(extra_body) - set(done.hashes)
        if not missing:
            return defer.succeed(done)
        d = dkim_body.hashes_and(server, transaction.body.size, transaction.body.open(),
                                 missing, defer.succeed(None))
        return d.addCallback(lambda found: _more(done, found[0]))
    problem = None
    try:
        fields = dkim_verify.header_fields(dkim_verify.received_fields(transaction))
    except ValueError as e:
        fields, problem = [], "header not parsed: %s" % e
    chain = arc.Chain(fields)
    wanted = chain.body_keys() | set(extra_body)
    names = chain.key_names()
    if not wanted and not names:
        return defer.succeed(_keep(transaction, Checked(
            fields, chain, arc.check_chain(chain, fields, {}, {}), {}, problem)))

    def checked(hashes_and_keys):
        hashes, keys = hashes_and_keys
        return _keep(transaction, Checked(
            fields, chain, arc.check_chain(chain, fields, hashes, keys), hashes, problem))

    d = dkim_body.hashes_and(server, transaction.body.size, transaction.body.open(), wanted,
                             dkim_verify.fetch_keys(transaction.connection.dns, names, timeout))
    return d.addCallback(checked)


def _keep(transaction, done):
    transaction.notes[_CHECKED] = done
    return done


def _more(done, hashes):
    done.hashes.update(hashes)
    return done
