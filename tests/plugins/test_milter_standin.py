"""The ``milter`` plugin's handling of what the real milters here never do: a milter that is
down, silent, broken or asks for changes, discard and quarantine, progress and skip, steps
left out, macro lists — against a scripted stand-in milter on a 127.0.0.1 port
(tests/support/milter_standin.py says why it is a stand-in). The SMTP server is real, on a
loopback socket (tests/support/filter_cases.py); tests/plugins/test_milter.py has the real
milters."""

from qpsmtpd_tx import codes
from tests.support.filter_cases import FilterTestCase, message, short_socket_path
from tests.support.milter_standin import CLOSE, HANG, StandinMilter, index, reply, strings

TEMPFAIL = "4.7.1 Service unavailable - try again later"


class StandinTestCase(FilterTestCase):
    def milter(self, script=None, args="", plugins=(), files=None, **options):
        self.standin = StandinMilter(self, script, **options)
        self.serve(["milter standin %d %s" % (self.standin.port, args)] + list(plugins)
                   + ["rcpt_ok"], files)
        self.envelopes = []

        def queue_post(transaction):
            self.envelopes.append((transaction.sender.format(),
                                   [r.format() for r in transaction.recipients]))
            return codes.DECLINED
        self.server.hooks.register("queue_post", self.server.plugins[0], queue_post)
        return self.standin


class ConversationTests(StandinTestCase):
    async def test_stages_and_macros(self):
        milter = self.milter()
        outcome = await self.send(message("line one\r\nline two",
                                          extra="X-Spaced : value\r\nX-Folded: a\r\n\tb\r\n"))
        self.assertEqual(outcome.data[0], 250)
        commands = milter.commands()
        self.assertTrue(commands.startswith("ODCHDMDRDT"), commands)
        self.assertEqual(commands[-4:], "NBDE")
        self.assertEqual(milter.connections, 1)
        connect = milter.data_of("C")[0]
        self.assertTrue(connect.endswith(b"\x004" + (b"%c%c" % divmod(
            int(milter.macros("C")["{client_port}"]), 256)) + b"127.0.0.1\0"), connect)
        self.assertEqual(milter.macros("C")["j"], "mx.example.org")
        self.assertEqual(milter.macros("C")["{client_addr}"], "127.0.0.1")
        self.assertEqual(milter.macros("M")["{mail_addr}"], "sender@client.example")
        self.assertEqual(milter.macros("R")["{rcpt_addr}"], "alice@example.com")
        self.assertEqual(milter.data_of("M"), [b"<sender@client.example>\0"])
        self.assertEqual(milter.data_of("B"), [b"line one\r\nline two\r\n"])
        headers = [h.split(b"\0")[0] for h in milter.data_of("L")]
        self.assertEqual(headers[:2], [b"Received", b"Authentication-Results"])
        self.assertIn(b"Subject\0offer\0", milter.data_of("L"))
        self.assertIn(b"X-Spaced\0value\0", milter.data_of("L"))
        self.assertIn(b"X-Folded\0a\n\tb\0", milter.data_of("L"))

    async def test_abort_between_transactions_on_one_connection(self):
        milter = self.milter()
        client = await self.open()
        self.assertEqual((await client.command("MAIL FROM:<a@client.example>"))[0], 250)
        self.assertEqual((await client.command("RSET"))[0], 250)
        outcome = await self.transaction(client, ["alice@example.com"], message("x"))
        self.assertEqual(outcome.data[0], 250)
        second = await self.transaction(client, ["alice@example.com"], message("y"))
        self.assertEqual(second.data[0], 250)
        self.assertEqual(milter.connections, 1)
        commands = milter.commands().replace("D", "")
        self.assertEqual(commands[:5], "OCHMA")
        self.assertEqual(commands.count("E"), 2)
        self.assertEqual(commands.count("A"), 1)    # nothing to abort after a finished message
        await client.command("QUIT")
        await client.wait_closed()
        self.assertTrue(await self.eventually(lambda: milter.commands().endswith("Q")))

    async def eventually(self, condition):
        from qpsmtpd_tx.testing import wait_for
        return await wait_for(condition)

    async def test_steps_left_out_and_not_answered(self):
        # no HELO, no body; headers not answered (the stand-in stays silent for them)
        milter = self.milter(protocol=0x2 | 0x10 | 0x80)
        outcome = await self.send(message("body text"))
        self.assertEqual(outcome.data[0], 250)
        commands = milter.commands().replace("D", "")
        self.assertNotIn("H", commands)
        self.assertNotIn("B", commands)
        self.assertIn("LLLLLN", commands)

    async def test_steps_an_earlier_plugin_decided_are_sent_later(self):
        # rcpt_ok before the milter accepts each RCPT: the milter's rcpt hook never runs
        self.standin = StandinMilter(self)
        self.serve(["rcpt_ok", "milter standin %d" % self.standin.port])
        outcome = await self.send(message("x"), rcpts=("alice@example.com", "bob@example.com"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.standin.data_of("R"), [b"<alice@example.com>\0",
                                                     b"<bob@example.com>\0"])
        self.assertIn("MDRDRDTL", self.standin.commands())

    async def test_unanswered_body_chunks_follow_the_socket(self):
        # NR_BODY: the chunks go out without waiting, as fast as the socket takes them
        milter = self.milter(protocol=0x80000)
        line = "y" * 98 + "\r\n"
        outcome = await self.send(message(line * 40000))       # 4 MB
        self.assertEqual(outcome.data[0], 250)
        chunks = milter.data_of("B")
        self.assertTrue(all(len(c) <= 65535 for c in chunks))
        self.assertEqual(b"".join(chunks), (line * 40000).encode() + b"\r\n")

    async def test_auth_macros(self):
        import base64
        milter = self.milter(plugins=["auth/auth_flat_file"],
                             files={"flat_auth_pw": "u@example.org:s3cret\n"})
        client = await self.open()
        token = base64.b64encode(b"\0u@example.org\0s3cret").decode()
        self.assertEqual((await client.command("AUTH PLAIN " + token))[0], 235)
        await self.transaction(client, ["alice@example.com"], message("x"))
        macros = milter.macros("M")
        self.assertEqual((macros["{auth_authen}"], macros["{auth_type}"]),
                         ("u@example.org", "PLAIN"))

    async def test_two_milters(self):
        first = StandinMilter(self, {"E": [reply("h", strings("X-First", "1")), reply("c")]})
        second = StandinMilter(self, {"E": [reply("h", strings("X-Second", "2")), reply("c")]})
        self.serve(["milter one %d" % first.port, "milter:2 two %d" % second.port, "rcpt_ok"])
        outcome = await self.send(message("x"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual((outcome.header.get("X-First"), outcome.header.get("X-Second")),
                         (["1"], ["2"]))
        # the second milter saw the first one's field: they run in order
        self.assertIn(b"X-First\x001\0", second.data_of("L"))
        self.assertEqual((first.connections, second.connections), (1, 1))

    async def test_macro_lists(self):
        lists = (index(2) + b"{mail_addr}\0") + (index(0) + b"j\0")
        milter = self.milter(macros=lists)
        await self.send(message("x"))
        self.assertEqual(milter.macros("M"), {"{mail_addr}": "sender@client.example"})
        self.assertEqual(milter.macros("C"), {"j": "mx.example.org"})
        self.assertIn("{rcpt_addr}", milter.macros("R"))    # no list for RCPT: all of them

    async def test_skip_stops_the_body(self):
        milter = self.milter({"B": [reply("s")]})
        outcome = await self.send(message(("x" * 70 + "\r\n") * 2000))    # 3 chunks
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(len(milter.data_of("B")), 1)
        self.assertTrue(milter.commands().endswith("BDE"))

    async def test_progress_restarts_the_reply_timer(self):
        from twisted.internet import reactor

        # a progress reply every 0.2 s, the verdict after 1.4 s: well past the limit of 1 s,
        # and each pause far below it (milter and server share this process's reactor: a
        # stall delays the milter's next write and the server's reading of it alike)
        def slow(transport, data):
            for n in range(1, 7):
                reactor.callLater(0.2 * n, transport.write, reply("p"))
            reactor.callLater(1.4, transport.write, reply("c"))
        self.milter({"E": slow}, "content_timeout 1")
        outcome = await self.send(message("x"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.logged(codes.LOGERROR, "milter"), [])


class VerdictTests(StandinTestCase):
    async def test_replycode_refuses_one_recipient(self):
        def by_address(transport, data):
            refused = data.startswith(b"<bob@")
            transport.write(reply("y", b"550 5.1.1 no such user\0") if refused else reply("c"))
        self.milter({"R": by_address})
        outcome = await self.send(message("x"), rcpts=("bob@example.com", "alice@example.com"))
        self.assertEqual(outcome.rcpts, [(550, "5.1.1 no such user"),
                                          (250, "<alice@example.com>, recipient ok")])
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(self.envelopes, [("<sender@client.example>", ["<alice@example.com>"])])

    async def test_reject_and_tempfail_without_text(self):
        self.milter({"M": [reply("r")]})
        client = await self.open()
        self.assertEqual(await client.command("MAIL FROM:<a@client.example>"),
                         (550, ["5.7.1 Command rejected"]))
        self.milter({"M": [reply("y", b"550\0")]})     # a code without text
        client = await self.open()
        self.assertEqual(await client.command("MAIL FROM:<a@client.example>"),
                         (550, ["5.7.1 Command rejected"]))
        self.milter({"T": [reply("t")]})
        client = await self.open()
        await client.command("MAIL FROM:<a@client.example>")
        await client.command("RCPT TO:<alice@example.com>")
        self.assertEqual(await client.command("DATA"), (451, [TEMPFAIL]))

    async def test_421_closes_the_connection(self):
        self.milter({"M": [reply("y", b"421 4.7.0 too busy\0")]})
        client = await self.open()
        self.assertEqual(await client.command("MAIL FROM:<a@client.example>"),
                         (421, ["4.7.0 too busy"]))
        await client.wait_closed()
        self.milter({"E": [reply("y", b"421 4.7.0 going down\0")]})
        client = await self.open()
        outcome = await self.transaction(client, ["alice@example.com"], message("x"))
        self.assertEqual(outcome.data, (452, "4.7.0 going down"))
        await client.wait_closed()

    async def test_reject_at_connect(self):
        self.milter({"C": [reply("y", b"554 5.7.1 not from you\0")]})
        from tests.support.server import connect
        client = await connect(self, self.port)
        self.assertEqual(client.greeting, (550, ["5.7.1 not from you"]))

    async def test_modifications(self):
        new_body = b"replaced\r\nbody\r\n"
        self.milter({"E": [
            reply("h", strings("X-Added", "at the end")),
            reply("i", index(0) + strings("X-Top", "first")),
            reply("m", index(1) + strings("Subject", "")),          # delete
            reply("m", index(1) + strings("To", "changed@example.com")),
            reply("b", new_body[:9]), reply("b", new_body[9:]),    # a CRLF split in two
            reply("+", strings("<added@example.com>")),
            reply("-", strings("<alice@example.com>")),
            reply("e", strings("<new-sender@example.com>", "SIZE=99")),
            reply("c")]})
        outcome = await self.send(message("old body"))
        self.assertEqual(outcome.data[0], 250)
        head, body = outcome.queued.split(b"\n\n", 1)
        self.assertEqual(body, b"replaced\nbody\n")
        self.assertEqual(outcome.top(1), ["X-Top: first"])
        self.assertEqual(outcome.header.get("X-Added"), ["at the end"])
        self.assertEqual(outcome.header.get("Subject"), [])
        self.assertEqual(outcome.header.get("To"), ["changed@example.com"])
        self.assertEqual(self.envelopes, [("<new-sender@example.com>", ["<added@example.com>"])])
        self.assertLogged(codes.LOGINFO, r"changed the sender to <new-sender@example.com> "
                                         r"\(parameters dropped: SIZE=99\)")

    async def test_modifications_are_dropped_when_rejected(self):
        self.milter({"E": [reply("h", strings("X-Added", "x")), reply("r")]})
        outcome = await self.send(message("x"))
        self.assertEqual(outcome.data, (552, "5.7.1 Command rejected"))

    async def test_discard(self):
        self.milter({"R": [reply("d")]})
        outcome = await self.send(message("x"))
        self.assertEqual(outcome.rcpts[0][0], 250)
        self.assertEqual(outcome.data, (250, "Queued"))
        self.assertIsNone(outcome.queued)       # the queue plugin never saw it
        self.assertLogged(codes.LOGNOTICE, "discards the message at RCPT TO")

    async def test_quarantine(self):
        script = {"E": [reply("q", strings("held for review")), reply("c")]}
        self.milter(script)
        outcome = await self.send(message("x"))
        self.assertEqual(outcome.data, (552, "5.7.1 Message quarantined: held for review"))
        self.milter(script, "quarantine tag")
        outcome = await self.send(message("x"))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.top(1), ["X-Milter-Quarantine: standin; held for review"])
        self.milter(script, "quarantine tempfail")
        self.assertEqual((await self.send(message("x"))).data[0], 452)

    async def test_action_tag_per_recipient(self):
        script = {"E": [reply("y", b"550 5.7.1 spam\0")]}
        self.milter(script, plugins=["note_rcpt tagged@example.com milter_action=tag"])
        outcome = await self.send(message("x"), rcpts=("tagged@example.com",))
        self.assertEqual(outcome.data[0], 250)
        self.assertEqual(outcome.top(1), ["X-Milter-Rejected: standin; 550 5.7.1 spam"])
        self.assertEqual((await self.send(message("x"))).data, (550, "5.7.1 spam"))


class UnavailableTests(StandinTestCase):
    def nobody(self, args=""):
        self.serve(["milter down unix:%s %s" % (short_socket_path(self), args), "rcpt_ok"])

    async def test_down_tempfails_by_default(self):
        from tests.support.server import connect
        self.nobody()
        client = await connect(self, self.port)
        self.assertEqual(client.greeting, (450, [TEMPFAIL]))
        self.assertLogged(codes.LOGERROR, r"^milter down unavailable at connect: cannot connect "
                                          r"to .*; default_action tempfail$")

    async def test_down_default_action_accept_and_reject(self):
        self.nobody("default_action accept")
        self.assertEqual((await self.send(message("x"))).data[0], 250)
        from tests.support.server import connect
        self.nobody("default_action reject")
        client = await connect(self, self.port)
        self.assertEqual(client.greeting, (550, ["5.7.1 Command rejected"]))

    async def test_silence_times_out_and_the_milter_is_not_asked_again(self):
        milter = self.milter({"R": HANG}, "command_timeout 0.3")
        client = await self.open()
        await client.command("MAIL FROM:<a@client.example>")
        self.assertEqual(await client.command("RCPT TO:<alice@example.com>"), (450, [TEMPFAIL]))
        self.assertEqual(await client.command("RCPT TO:<bob@example.com>"), (450, [TEMPFAIL]))
        self.assertEqual(milter.commands().count("R"), 1)
        self.assertLogged(codes.LOGERROR, "unavailable at RCPT TO: no answer within 0.3 seconds")

    async def test_silence_with_default_action_accept_goes_on_without_the_milter(self):
        milter = self.milter({"R": HANG}, "command_timeout 0.3 default_action accept")
        outcome = await self.send(message("x"), rcpts=("alice@example.com", "bob@example.com"))
        self.assertEqual([code for code, _ in outcome.rcpts], [250, 250])
        self.assertEqual(outcome.data[0], 250)
        self.assertIsNotNone(outcome.queued)
        self.assertEqual(milter.commands().count("R"), 1)
        self.assertNotIn("E", milter.commands())
        self.assertLogged(codes.LOGERROR, "default_action accept$")

    async def test_closing_and_garbage_are_failures(self):
        for script, why in [({"M": CLOSE}, "the milter closed the connection"),
                            ({"M": [reply("y", b"250 fine\0")]}, "protocol error: REPLYCODE"),
                            ({"M": [reply("h", strings("X", "y"))]},
                             "protocol error: modification"),
                            ({"M": [b"\0\0\0\0"]}, "protocol error: packet of 0 bytes")]:
            self.milter(script)
            client = await self.open()
            self.assertEqual(await client.command("MAIL FROM:<a@client.example>"),
                             (450, [TEMPFAIL]), why)
            self.assertLogged(codes.LOGERROR, "unavailable at MAIL FROM: " + why)

    async def test_client_leaving_while_the_milter_thinks(self):
        from qpsmtpd_tx.testing import wait_for
        milter = self.milter({"E": HANG}, "content_timeout 0.5")
        client = await self.open()
        await client.command("MAIL FROM:<a@client.example>")
        await client.command("RCPT TO:<alice@example.com>")
        await client.command("DATA")
        client.send(message("x") + ".")
        self.assertTrue(await wait_for(lambda: "E" in milter.commands()))
        client.transport.abortConnection()
        # the session ends once the milter's time is up; the milter connection is closed,
        # and nothing worse than the milter's silence is logged
        self.assertTrue(await wait_for(lambda: milter.open_connections == 0), self.logs)
        self.assertEqual([line for line in self.logs if line[0] < codes.LOGERROR], [])
        self.assertLogged(codes.LOGERROR, "no answer within 0.5 seconds")

    async def test_refused_negotiation(self):
        from tests.support.server import connect
        self.milter(actions=0x80)       # ADDRCPT_PAR, which we do not offer
        client = await connect(self, self.port)
        self.assertEqual(client.greeting[0], 450)
        self.assertLogged(codes.LOGERROR, "negotiation .* failed: protocol error: the milter "
                                          "wants actions we do not allow")


class ArgumentTests(StandinTestCase):
    def test_bad_arguments(self):
        prefix = "plugins:1: plugin milter: "
        for line, expected in [
            ("milter", "needs a name and the milter's address"),
            ("milter onlyname", "needs a name and the milter's address"),
            ("milter x nowhere", "milter address must be PORT"),
            ("milter x 99999", "milter address must be PORT"),
            ("milter x 5513 default_action ignore", "default_action must be tempfail|reject|"
                                                    "accept"),
            ("milter x 5513 quarantine hold", "quarantine must be reject|tempfail|tag"),
            ("milter x 5513 action delete", "action must be reject or tag"),
            ("milter x 5513 command_timeout 0", "command_timeout must be a positive number"),
            ("milter x 5513 colour blue", "unknown argument 'colour'"),
        ]:
            self.assertStartupError(line, prefix + expected)

    def test_address_forms(self):
        from qpsmtpd_tx.testing import plugin_module
        parse = plugin_module("milter").parse_milter_address
        for text, expected in [("5513", "127.0.0.1:5513"), ("bm:5513", "bm:5513"),
                               ("inet:5513@mx.example", "mx.example:5513"),
                               ("inet6:5513@[::1]", "[::1]:5513"),
                               ("inet:127.0.0.2:5513", "127.0.0.2:5513"),
                               ("unix:/run/m.sock", "/run/m.sock"),
                               ("local:/run/m.sock", "/run/m.sock"), ("/run/m.sock", "/run/m.sock")]:
            self.assertEqual(str(parse(text)), expected)
