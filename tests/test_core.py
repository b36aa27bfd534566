"""The sans-I/O core's state table, driven directly, without a session or a socket."""

from twisted.trial import unittest

from qpsmtpd_tx.core import (
    ALLOWED,
    NEED_DATA,
    TRANSITIONS,
    Command,
    LineTooLong,
    ProtocolStateError,
    SMTPCore,
    State,
)

S = State
HELLO_FIRST = "please say hello first ..."
ALREADY_HELLO = "but you already said HELO ..."
MAIL_BEFORE_RCPT = "Use MAIL before RCPT"
MAIL_FIRST = "MAIL first"
RCPT_FIRST = "RCPT first"
IN_TRANSACTION = "5.5.1 MAIL transaction in progress"
COMMANDS = ("helo", "ehlo", "mail", "rcpt", "data", "auth", "starttls", "rset", "noop", "vrfy",
            "help", "quit")


def core_in(state):
    """A fresh core brought into ``state`` through the transitions a session uses."""
    core = SMTPCore()
    path = {
        S.CONNECTED: [], S.GREETED: ["greet"], S.READY: ["greet", "helo"],
        S.MAIL: ["greet", "helo", "mail"], S.RCPT: ["greet", "helo", "mail", "rcpt"],
        S.DATA: ["greet", "helo", "mail", "rcpt", "start_data"],
        S.AUTH: ["greet", "helo", "auth"], S.TLS: ["greet", "helo", "starttls"],
        S.CLOSED: ["close"],
    }[state]
    for step in path:
        getattr(core, step)()
    assert core.state is state
    return core


def expected_refusal(command, state):
    """What the test expects, written out independently of core.ALLOWED."""
    if state not in (S.GREETED, S.READY, S.MAIL, S.RCPT):
        # no command line is read in these states; the texts for the three envelope commands
        # are those a command gets after a hook closed the connection under it
        fallback = {"mail": HELLO_FIRST, "rcpt": MAIL_BEFORE_RCPT, "data": MAIL_FIRST}
        return fallback.get(command, "%s not allowed in state %s" % (command.upper(), state.value))
    if command in ("helo", "ehlo"):
        return None if state is S.GREETED else ALREADY_HELLO
    if command == "mail":
        return HELLO_FIRST if state is S.GREETED else None
    if command == "rcpt":
        return None if state in (S.MAIL, S.RCPT) else MAIL_BEFORE_RCPT
    if command == "data":
        return {S.RCPT: None, S.MAIL: RCPT_FIRST}.get(state, MAIL_FIRST)
    if command == "auth":
        if state is S.GREETED:
            return "AUTH not allowed in state greeted"
        return IN_TRANSACTION if state in (S.MAIL, S.RCPT) else None
    if command == "starttls":
        return {S.GREETED: HELLO_FIRST, S.MAIL: IN_TRANSACTION, S.RCPT: IN_TRANSACTION}.get(state)
    return None


class SequencingTests(unittest.TestCase):
    """The core says whether each command is allowed in each state, and why not."""

    def test_every_command_in_every_state(self):
        for state in State:
            core = core_in(state)
            for command in COMMANDS:
                self.assertEqual(core.refusal(command), expected_refusal(command, state),
                                 (command, state))

    def test_the_table_covers_every_command(self):
        self.assertEqual(set(ALLOWED), set(COMMANDS))

    def test_auth_only_once(self):
        core = core_in(S.AUTH)
        core.auth_end(success=False)
        self.assertIsNone(core.refusal("auth"))
        core.auth()
        core.auth_end(success=True)
        self.assertTrue(core.authenticated)
        self.assertEqual(core.refusal("auth"), "but you already said AUTH ...")
        core.mail()
        # already authenticated is reported before the transaction in progress, as qpsmtpd
        self.assertEqual(core.refusal("auth"), "but you already said AUTH ...")

    def test_data_looks_at_the_transaction(self):
        # a plugin may have dropped the sender or the recipients since MAIL and RCPT
        rcpt = core_in(S.RCPT)
        self.assertIsNone(rcpt.refusal("data"))
        self.assertEqual(rcpt.refusal("data", has_recipients=False), RCPT_FIRST)
        self.assertEqual(rcpt.refusal("data", has_sender=False), MAIL_FIRST)
        self.assertEqual(core_in(S.MAIL).refusal("data", has_sender=False), MAIL_FIRST)
        self.assertEqual(core_in(S.READY).refusal("data", has_recipients=False), MAIL_FIRST)

    def test_auth_offered_only_by_an_ehlo_that_said_so(self):
        core = core_in(S.GREETED)
        self.assertFalse(core.auth_offered)
        core.helo(auth_offered=True)
        self.assertTrue(core.auth_offered)
        self.assertFalse(core_in(S.READY).auth_offered)


#: (from, transition, to), the state diagram as the session walks it; written out here so that
#: a transition added to or dropped from the core without a test fails
WALKS = [
    (S.CONNECTED, "greet", S.GREETED), (S.GREETED, "helo", S.READY),
    (S.READY, "mail", S.MAIL), (S.MAIL, "rcpt", S.RCPT), (S.RCPT, "rcpt", S.RCPT),
    (S.RCPT, "data", S.DATA), (S.DATA, "data_end", S.READY),
    (S.MAIL, "reset", S.READY), (S.RCPT, "reset", S.READY),
    (S.READY, "auth", S.AUTH), (S.AUTH, "auth_end", S.READY),
    (S.READY, "starttls", S.TLS), (S.TLS, "tls_done", S.GREETED),
]
EXPECTED_TRANSITIONS = {}
for _from, _name, _to in WALKS:
    EXPECTED_TRANSITIONS.setdefault(_name, {})[_from] = _to
#: the core method that makes each transition
METHODS = {"data": "start_data"}


class TransitionTests(unittest.TestCase):
    """Every transition from every state: where it goes, or ProtocolStateError."""

    def test_the_table_is_the_expected_one(self):
        self.assertEqual(TRANSITIONS, EXPECTED_TRANSITIONS)

    def test_every_transition_from_every_state(self):
        for name, moves in EXPECTED_TRANSITIONS.items():
            for state in State:
                core = core_in(state)
                method = getattr(core, METHODS.get(name, name))
                if state in moves:
                    method()
                    self.assertIs(core.state, moves[state], (name, state))
                else:
                    self.assertRaises(ProtocolStateError, method)
                    self.assertIs(core.state, state, (name, state))

    def test_close_from_every_state(self):
        for state in State:
            core = core_in(state)
            core.receive_data(b"NOOP\r\n")
            core.close()
            self.assertIs(core.state, S.CLOSED)
            self.assertEqual(core.buffered, 0)
            self.assertIs(core.next_event(), NEED_DATA)



class TLSStateTests(unittest.TestCase):
    """STARTTLS: nothing pipelined after it is ever read; the dialogue starts over after it."""

    def test_starttls_refuses_pipelined_input(self):
        for pipelined in (b"HELO injected\r\n", b"H", b"x" * 600):
            core = core_in(S.READY)
            core.receive_data(pipelined)
            if len(pipelined) > core.max_line:
                # an over-long line is dropped as it comes, but the rest of it is still pending
                self.assertIsInstance(core.next_event(), LineTooLong)
            self.assertRaises(ProtocolStateError, core.starttls)
            self.assertIs(core.state, S.READY)

    def test_no_command_during_the_handshake(self):
        core = core_in(S.TLS)
        core.receive_data(b"NOOP\r\n")
        self.assertIs(core.next_event(), NEED_DATA)
        core.tls_done()
        self.assertEqual(core.next_event(), Command("NOOP"))

    def test_after_the_handshake(self):
        core = core_in(S.READY)
        core.auth_offered = True
        core.starttls()
        core.tls_done()
        self.assertEqual((core.state, core.tls, core.auth_offered), (S.GREETED, True, False))
        self.assertEqual(core.refusal("starttls"), "5.5.1 TLS already active")
        self.assertEqual(core.refusal("mail"), HELLO_FIRST)


class AuthStateTests(unittest.TestCase):
    """AUTH is a state: SASL answers may be as long as an AUTH line."""

    def test_long_answer_is_read_in_auth_state(self):
        core = core_in(S.AUTH)
        self.assertTrue(core.expect_auth_line)
        answer = b"A" * 5000
        core.receive_data(answer + b"\r\n")
        self.assertEqual(core.next_event(), Command(answer.decode()))

    def test_same_line_is_too_long_as_a_command(self):
        core = core_in(S.READY)
        self.assertFalse(core.expect_auth_line)
        core.receive_data(b"A" * 5000 + b"\r\nNOOP\r\n")
        self.assertEqual(core.next_event(), LineTooLong(512))
        self.assertEqual(core.next_event(), Command("NOOP"))


class ReplyTests(unittest.TestCase):
    """reply() queues only real SMTP reply codes."""

    def test_good_replies(self):
        core = SMTPCore()
        core.reply(200, ["a"])
        core.reply(250, ["first", "", "last"])
        core.reply(599, [])
        self.assertEqual(core.data_to_send(),
                         b"200 a\r\n250-first\r\n250 last\r\n599 \r\n")

    def test_bad_codes_are_refused(self):
        core = SMTPCore()
        for code in (199, 600, 99, 1000, 0, -250, "250", 250.0, True, None):
            self.assertRaises(ValueError, core.reply, code, ["text"])
        self.assertEqual(core.output_size, 0)
        self.assertEqual(core.data_to_send(), b"")
