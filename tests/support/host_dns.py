"""For the tests of the plugins that look hosts up in DNS (resolvable_fromhost, fcrdns, helo):
an in-process server (:func:`tests.support.server.start_server`) asking the suite's private
DNS server (:mod:`tests.support.dns`), and client addresses of the tests' own, so that each
test can publish its client's reverse DNS without meeting another test's.
"""

import itertools
import os

from tests.support.dns import private_dns
from tests.support.server import start_server

#: client addresses are taken from 127.77.0.0/16 (any 127/8 address is the loopback)
_ADDRESSES = itertools.count(os.getpid() % 200 * 256 + 1)


def client_address():
    """A loopback address (``127.77.Y.Z``) no other test of this run connects from."""
    n = next(_ADDRESSES) % 65000 + 1
    return "127.77.%d.%d" % (n // 254, n % 254 + 1)


def dns_files(address, files=None):
    """Config files pointing the server at the DNS server ``address``: one try of 1 s per
    query, so that a silent server costs a test seconds, not minutes; then ``files``."""
    result = {"dns_servers": address, "dns_timeout": "1", "dns_attempts": "1"}
    result.update(files or {})
    return result


def start_dns_server(testcase, plugins, files=None, shaped=False, **server_kwargs):
    """``(server, port, dns)``: an in-process server with ``plugins`` and ``files`` asking
    the private DNS server (through its delay/silence relay with ``shaped``)."""
    dns = private_dns()
    address = dns.shaped_address if shaped else dns.address
    server, port = start_server(testcase, plugins, dns_files(address, files), **server_kwargs)
    return server, port, dns
