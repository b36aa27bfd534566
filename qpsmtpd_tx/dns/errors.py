"""What a DNS lookup can end in, besides an answer.

Plugins map these to qpsmtpd's behaviour: a name that does not exist (:class:`NXDomain`) or
has no record of the type asked (:class:`NoData`) is an answer; a server failure
(:class:`ServFail`) or no answer in time (:class:`DNSTimeout`) is not, and a check that
depends on it is skipped, never turned into a rejection.
"""


class DNSError(Exception):
    """A lookup of ``name`` (type ``rrtype``) gave no records; ``reason`` says why.

    ``definite`` is True when the DNS said so (NXDOMAIN, NODATA), False when the DNS could
    not say (server failure, refusal, timeout, a bad name). ``no_record`` is True when the
    lookup means there is no record to be had: the DNS said so, or the name is one no record
    can have (:class:`BadName`); a check reading a policy or key record treats that as none.
    """

    definite = False
    no_record = False
    reason = "failed"

    def __init__(self, name, rrtype, detail=None):
        self.name = name
        self.rrtype = rrtype
        self.detail = detail
        super().__init__(name, rrtype, detail)

    def __str__(self):
        text = "%s %s: %s" % (self.name, self.rrtype, self.reason)
        return "%s (%s)" % (text, self.detail) if self.detail else text


class NXDomain(DNSError):
    """The name does not exist (RCODE NXDOMAIN)."""

    definite = True
    no_record = True
    reason = "no such name (NXDOMAIN)"


class NoData(DNSError):
    """The name exists but has no record of this type (NODATA)."""

    definite = True
    no_record = True
    reason = "no record of this type (NODATA)"


class ServFail(DNSError):
    """The server failed (SERVFAIL), refused, or answered something unusable."""

    reason = "server failure"


class DNSTimeout(DNSError):
    """No answer within the time allowed (the query's, or the connection's DNS budget)."""

    reason = "timed out"


class BadName(DNSError):
    """The name cannot be asked for (empty label, over 253 bytes, not ASCII after IDNA)."""

    no_record = True
    reason = "not a valid DNS name"
