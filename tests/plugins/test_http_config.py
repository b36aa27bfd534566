"""Tests of the http_config plugin (config items fetched over HTTP): the tests run a real
twisted.web server on 127.0.0.1 (ConfigResource), and the SMTP server over a real loopback
socket where the greeting shows what config was used (tests.support.server).
"""

import io
import re
import socket
import sys

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.trial import unittest
from twisted.web import resource, server as web_server

from qpsmtpd_tx.codes import DECLINED, OK
from tests.support.content_logging_cases import assertStartupError
from tests.support.harness import make_server, plugin_module
from tests.support.server import connect, keep_signal_handlers, start_server


class ConfigResource(resource.Resource):
    """Serves ``/<prefix>/<name>`` from dicts of items per prefix; 404 for the rest."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.items = {}      # prefix -> {name: text}
        self.status = {}     # (prefix, name) -> status code to answer instead
        self.hanging = set()  # prefixes that never answer
        self.hits = []

    def render_GET(self, request):
        path = request.path.decode()
        self.hits.append(path)
        _, prefix, name = path.split("/", 2)
        if prefix in self.hanging:
            return web_server.NOT_DONE_YET
        if (prefix, name) in self.status:
            request.setResponseCode(self.status[(prefix, name)])
            return b"server error"
        text = self.items.get(prefix, {}).get(name)
        if text is None:
            request.setResponseCode(404)
            return b"no such item"
        return text.encode("utf-8")


class HttpConfigTests(unittest.TestCase):
    def setUp(self):
        self.resource = ConfigResource()
        self.site = WrappingFactory(web_server.Site(self.resource))
        self.listening = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.port = self.listening.getHost().port
        self.addCleanup(self.stop_http)

    async def stop_http(self):
        if self.listening is not None:
            await self.listening.stopListening()
            self.listening = None
        for _ in range(200):
            if not self.site.protocols:
                return
            for protocol in list(self.site.protocols):
                protocol.transport.loseConnection()
            await deferLater(reactor, 0.01, lambda: None)
        for protocol in list(self.site.protocols):
            protocol.transport.abortConnection()

    def url(self, prefix="config"):
        return "http://127.0.0.1:%d/%s/" % (self.port, prefix)

    @staticmethod
    def closed_port():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        return port

    def start(self, args, files=None, listen=False, after=("rcpt_ok",)):
        """A server whose first plugin is ``http_config ARGS``, then ``after`` (rcpt_ok reads
        ``rcpthosts`` in its init, through http_config); its log lines go to self.log."""
        files = dict(files or {})
        files.setdefault("logging", "logging/warn LOGDEBUG")
        keep_signal_handlers(self)
        self.log = io.StringIO()
        self.patch(sys, "stderr", self.log)  # logging/warn writes there
        lines = ["http_config " + args] + list(after)
        if listen:
            server, port = start_server(self, lines, files)
        else:
            server, port = make_server(self, lines, files), None
        plugin = server.plugins[0]
        self.addCleanup(plugin.stop)
        return server, plugin, port

    def log_lines(self):
        return self.log.getvalue().splitlines()

    async def greeting(self, port):
        client = await connect(self, port)
        await client.close()
        return client.greeting

    async def test_preload_end_to_end(self):
        self.resource.items["config"] = {"smtpgreeting": "greetings from http"}
        server, plugin, port = self.start("preload smtpgreeting " + self.url(),
                                          {"smtpgreeting": "greetings from the file"}, listen=True)
        await plugin.wait_idle()
        self.assertEqual(await self.greeting(port), (220, ["greetings from http ESMTP"]))
        self.assertEqual(sorted(self.resource.hits), ["/config/rcpthosts", "/config/smtpgreeting"])
        self.assertIn("http_config: config smtpgreeting: 1 line from %ssmtpgreeting"
                      % self.url(), self.log_lines())

    async def test_first_lookup_uses_the_file_then_http(self):
        self.resource.items["config"] = {"smtpgreeting": "greetings from http"}
        server, plugin, port = self.start(self.url(), {"smtpgreeting": "greetings from the file"},
                                          listen=True)
        self.assertEqual(await self.greeting(port), (220, ["greetings from the file ESMTP"]))
        await plugin.wait_idle()
        self.assertEqual(await self.greeting(port), (220, ["greetings from http ESMTP"]))
        self.assertEqual(self.resource.hits.count("/config/smtpgreeting"), 1)

    async def test_lines_are_parsed_like_a_config_file(self):
        self.resource.items["config"] = {"rcpthosts": "# comment\n\n  a.example  \r\n"
                                                      "b.example\r\n  # indented comment\n0\n"}
        server, plugin, _ = self.start("preload rcpthosts " + self.url())
        # rcpt_ok first has the file (read in init), then what came over HTTP
        self.assertEqual(server.plugins[1].local_domains()[0], {"mx.example.org", "example.com"})
        await plugin.wait_idle()
        self.assertEqual(server.config.get("rcpthosts"), ["a.example", "b.example", "0"])
        self.assertEqual(server.plugins[1].local_domains()[0],
                         {"mx.example.org", "a.example", "b.example", "0"})
        self.assertEqual(plugin.hook_config(None, "rcpthosts"),
                         (OK, ["a.example", "b.example", "0"]))

    async def test_refresh_follows_changes_and_removal(self):
        items = self.resource.items["config"] = {"smtpgreeting": "first"}
        server, plugin, port = self.start("preload smtpgreeting " + self.url(),
                                          {"smtpgreeting": "from the file"}, listen=True)
        await plugin.wait_idle()
        self.assertEqual(await self.greeting(port), (220, ["first ESMTP"]))
        items["smtpgreeting"] = "second"
        await plugin.refresh()
        self.assertEqual(await self.greeting(port), (220, ["second ESMTP"]))
        del items["smtpgreeting"]
        await plugin.refresh()
        self.assertEqual(await self.greeting(port), (220, ["from the file ESMTP"]))
        self.assertEqual(plugin.hook_config(None, "smtpgreeting"), DECLINED)
        self.assertIn("http_config: config smtpgreeting is no longer served; the config file "
                      "is used", self.log_lines())

    async def test_refresh_loop(self):
        items = self.resource.items["config"] = {"me": "one.example"}
        server, plugin, _ = self.start("refresh 0.05 preload me " + self.url())
        await plugin.wait_idle()
        self.assertEqual(plugin.hook_config(None, "me"), (OK, ["one.example"]))
        items["me"] = "two.example"
        for _ in range(200):
            if plugin.cache["me"] == ["two.example"]:
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(server.config.get("me"), ["two.example"])
        self.assertGreaterEqual(self.resource.hits.count("/config/me"), 2)

    async def test_404_passes_to_the_next_url(self):
        self.resource.items["second"] = {"databytes": "1000"}
        server, plugin, _ = self.start("preload databytes %s %s"
                                       % (self.url("first"), self.url("second")))
        await plugin.wait_idle()
        self.assertEqual(plugin.hook_config(None, "databytes"), (OK, ["1000"]))
        self.assertIn("http_config: config databytes: not found at %sdatabytes (HTTP 404)"
                      % self.url("first"), self.log_lines())
        hits = self.resource.hits
        self.assertLess(hits.index("/first/databytes"), hits.index("/second/databytes"))

    async def test_empty_item_passes_to_the_next_url(self):
        self.resource.items["first"] = {"me": "# nothing here\n\n"}
        self.resource.items["second"] = {"me": "mx2.example"}
        server, plugin, _ = self.start("preload me %s %s" % (self.url("first"), self.url("second")))
        await plugin.wait_idle()
        self.assertEqual(plugin.hook_config(None, "me"), (OK, ["mx2.example"]))

    async def test_404_everywhere_declines_without_error(self):
        server, plugin, port = self.start("preload smtpgreeting " + self.url(),
                                          {"smtpgreeting": "from the file"}, listen=True)
        self.assertEqual(await plugin.fetch("smtpgreeting"), "absent")
        self.assertEqual(plugin.hook_config(None, "smtpgreeting"), DECLINED)
        self.assertEqual(await self.greeting(port), (220, ["from the file ESMTP"]))
        self.assertEqual([line for line in self.log_lines()
                          if "cannot" in line or "no URL" in line], [])

    async def test_server_down(self):
        url = "http://127.0.0.1:%d/config/" % self.closed_port()
        server, plugin, port = self.start("preload smtpgreeting " + url,
                                          {"smtpgreeting": "from the file"}, listen=True)
        self.assertEqual(await plugin.fetch("smtpgreeting"), "failed")
        self.assertEqual(plugin.hook_config(None, "smtpgreeting"), DECLINED)
        self.assertEqual(await self.greeting(port), (220, ["from the file ESMTP"]))
        lines = self.log_lines()
        errors = [line for line in lines
                  if line.startswith("http_config: cannot fetch config smtpgreeting from %s"
                                     "smtpgreeting: " % url)]
        self.assertTrue(errors, lines)
        self.assertIn("refused", errors[0].lower())
        self.assertIn("http_config: config smtpgreeting: no URL answered; the config file is "
                      "used", lines)

    async def test_server_down_then_next_url(self):
        self.resource.items["config"] = {"me": "mx3.example"}
        down = "http://127.0.0.1:%d/config/" % self.closed_port()
        server, plugin, _ = self.start("preload me %s %s" % (down, self.url()))
        self.assertEqual(await plugin.fetch("me"), "found")
        self.assertEqual(plugin.hook_config(None, "me"), (OK, ["mx3.example"]))

    async def test_outage_keeps_the_last_values(self):
        self.resource.items["config"] = {"me": "mx4.example"}
        server, plugin, _ = self.start("preload me " + self.url())
        await plugin.wait_idle()
        await self.stop_http()
        self.assertEqual(await plugin.fetch("me"), "failed")
        self.assertEqual(plugin.hook_config(None, "me"), (OK, ["mx4.example"]))
        self.assertIn("http_config: config me: keeping the values fetched before",
                      self.log_lines())

    async def test_http_error_status(self):
        self.resource.status[("config", "me")] = 500
        server, plugin, _ = self.start("preload me " + self.url())
        self.assertEqual(await plugin.fetch("me"), "failed")
        self.assertIn("http_config: cannot fetch config me from %sme: HTTP status 500"
                      % self.url(), self.log_lines())
        self.assertEqual(plugin.hook_config(None, "me"), DECLINED)

    async def test_timeout(self):
        self.resource.hanging.add("slow")
        server, plugin, _ = self.start("timeout 0.2 preload me " + self.url("slow"))
        self.assertEqual(await plugin.fetch("me"), "failed")
        self.assertIn("http_config: cannot fetch config me from %sme: no answer (timed out)"
                      % self.url("slow"), self.log_lines())

    async def test_fetches_are_not_duplicated(self):
        self.resource.items["config"] = {"me": "mx5.example"}
        server, plugin, _ = self.start(self.url())
        self.assertEqual(plugin.hook_config(None, "me"), DECLINED)
        self.assertEqual(plugin.hook_config(None, "me"), DECLINED)
        self.assertEqual(len(plugin.pending), 2)  # me and rcpthosts (read by rcpt_ok)
        await plugin.wait_idle()
        self.assertEqual(self.resource.hits.count("/config/me"), 1)
        self.assertEqual(plugin.hook_config(None, "me"), (OK, ["mx5.example"]))

    async def test_stop(self):
        self.resource.hanging.add("slow")
        server, plugin, _ = self.start("preload me " + self.url("slow"))
        self.assertEqual(len(plugin.pending), 2)
        await plugin.stop()
        self.assertEqual(plugin.pending, {})
        self.assertFalse(plugin._loop.running)
        self.assertEqual(plugin.hook_config(None, "other"), DECLINED)
        self.assertEqual(plugin.pending, {})
        self.assertNotIn("cannot fetch", self.log.getvalue())

    def test_defaults(self):
        server, plugin, _ = self.start("http://a.example/ https://b.example/cgi?config=",
                                       after=())
        self.assertEqual((plugin.urls, plugin.refresh_interval, plugin.timeout, plugin.preload),
                         (["http://a.example/", "https://b.example/cgi?config="], 300.0, 10.0, []))
        self.assertEqual(self.http_config_module.parse_body(b"a\r\n\r\nb\rc\n"), ["a", "b", "c"])

    http_config_module = plugin_module("http_config")

    def test_refresh_0_never_refreshes(self):
        server, plugin, _ = self.start("refresh 0 http://127.0.0.1:9/", after=())
        self.assertIsNone(plugin._loop)

    def test_bad_arguments(self):
        for args, message in (
                ("", "no URL given"),
                ("refresh 5", "no URL given"),
                ("ftp://a.example/", "'ftp://a.example/' is neither an option nor an http"),
                ("http://a.example/ refresh", "refresh needs a value"),
                ("refresh soon http://a.example/", "refresh must be a number of seconds, got 'soon'"),
                ("timeout 0 http://a.example/", "timeout must be a number of seconds above 0"),
                ("timeout -1 http://a.example/", "timeout must be a number of seconds above 0"),
                ("loglevel LOUD http://a.example/", "bad loglevel 'LOUD'")):
            assertStartupError(self, ["rcpt_ok", ("http_config " + args).strip()],
                               r"^/\S+/plugins:2: plugin http_config: .*%s" % re.escape(message))
