"""DNS for the core and the plugins: one asynchronous resolver per process.

- :mod:`~qpsmtpd_tx.dns.resolver`: :class:`Resolver` (lookups as Deferreds, merged in
  flight, cached by TTL in a bounded cache) and :class:`Answer`;
- :mod:`~qpsmtpd_tx.dns.budget`: :class:`DNSBudget`, the resolver as one connection sees it
  (``transaction.connection.dns`` in a plugin): the same lookups within the connection's
  ``dns_budget``;
- :mod:`~qpsmtpd_tx.dns.errors`: NXDOMAIN, NODATA, SERVFAIL and timeout as distinct errors;
- :mod:`~qpsmtpd_tx.dns.names`: reverse names (``in-addr.arpa``, ``ip6.arpa``) and DNS list
  query names;
- :mod:`~qpsmtpd_tx.dns.cares`: c-ares driven by the reactor (no thread).
- :mod:`~qpsmtpd_tx.dns.other_names`: names c-ares will not put in a query (``a+tag.example``),
  asked through Twisted's DNS client of the same servers.
"""

from qpsmtpd_tx.dns.budget import DNSBudget
from qpsmtpd_tx.dns.errors import BadName, DNSError, DNSTimeout, NoData, NXDomain, ServFail
from qpsmtpd_tx.dns.names import list_query_name, parse_ip, reverse_name
from qpsmtpd_tx.dns.resolver import Answer, Resolver

__all__ = ["Answer", "BadName", "DNSBudget", "DNSError", "DNSTimeout", "NoData", "NXDomain",
           "Resolver", "ServFail", "list_query_name", "parse_ip", "reverse_name"]
