"""The milter conversation's state table (qpsmtpd_tx/milter/state.py) without sockets: the
order of steps, negotiated steps left out or not answered, macro lists, the meaning of each
reply at each stage, and the replies the protocol does not allow."""

import struct

from twisted.trial import unittest

from qpsmtpd_tx.milter import codec, state
from qpsmtpd_tx.milter.codec import ProtocolError
from qpsmtpd_tx.milter.state import Conversation, Progress, State, StateError, Verdict


def raw(command, data=b""):
    return struct.pack("!I", len(data) + 1) + command + data


def optneg_answer(actions=state.OFFERED_ACTIONS, protocol=0, version=6, macros=b""):
    return raw(b"O", struct.pack("!III", version, actions, protocol) + macros)


def negotiated(**kwargs):
    conversation = Conversation()
    conversation.optneg()
    [answer] = conversation.receive(optneg_answer(**kwargs))
    return conversation


def step(conversation, stage, payload=b"P", macros=()):
    return conversation.step(stage, payload, macros)


def through_data(conversation):
    for stage in ("connect", "helo", "mail", "rcpt", "data"):
        step(conversation, stage)
        conversation.receive(raw(b"c"))


class NegotiationTests(unittest.TestCase):
    def test_optneg_offers_version_6_and_what_we_implement(self):
        conversation = Conversation()
        packet = conversation.optneg()
        version, actions, protocol = struct.unpack("!III", packet[5:])
        self.assertEqual(version, 6)
        self.assertFalse(actions & codec.F_ADDRCPT_PAR)    # we could not honour its parameters
        self.assertTrue(actions & codec.F_CHGBODY and actions & codec.F_QUARANTINE)
        self.assertFalse(protocol & codec.P_HDR_LEADSPC)
        self.assertTrue(protocol & codec.P_SKIP and protocol & codec.P_NR_BODY)
        self.assertEqual(conversation.awaiting, "optneg")

    def test_answer_opens_the_conversation(self):
        conversation = Conversation()
        conversation.optneg()
        [answer] = conversation.receive(optneg_answer(protocol=codec.P_NOHELO))
        self.assertEqual(answer.protocol, codec.P_NOHELO)
        self.assertEqual(conversation.state, State.OPEN)

    def test_refused_answers(self):
        cases = [optneg_answer(version=1),
                 optneg_answer(actions=codec.F_ADDRCPT_PAR),
                 optneg_answer(protocol=codec.P_HDR_LEADSPC),
                 optneg_answer(actions=codec.F_ADDHDRS,
                               macros=struct.pack("!I", 0) + b"j\0"),
                 raw(b"c")]
        for data in cases:
            conversation = Conversation()
            conversation.optneg()
            self.assertRaises(ProtocolError, conversation.receive, data)

    def test_version_2_milter_is_understood(self):
        conversation = Conversation()
        conversation.optneg()
        self.assertEqual(conversation.receive(optneg_answer(version=2, actions=1))[0].version, 2)


class OrderTests(unittest.TestCase):
    def test_steps_before_negotiation_or_out_of_order_are_refused(self):
        self.assertRaises(StateError, step, Conversation(), "connect")
        conversation = negotiated()
        self.assertRaises(StateError, step, conversation, "mail")
        step(conversation, "connect")
        self.assertRaises(StateError, step, conversation, "connect")    # awaiting its answer
        conversation.receive(raw(b"c"))
        self.assertRaises(StateError, step, conversation, "rcpt")
        self.assertRaises(StateError, step, conversation, "eob")

    def test_a_whole_transaction_then_the_next(self):
        conversation = negotiated()
        through_data(conversation)
        for stage in ("header", "header", "eoh", "body", "body", "eob"):
            self.assertTrue(step(conversation, stage).awaits)
            conversation.receive(raw(b"c"))
        self.assertEqual(conversation.state, State.CONNECTED)
        self.assertEqual(conversation.abort(), b"")     # the message is done: nothing to abort
        self.assertTrue(step(conversation, "mail").awaits)

    def test_abort_ends_an_open_transaction(self):
        conversation = negotiated()
        through_data(conversation)
        self.assertEqual(conversation.abort(), raw(b"A"))
        self.assertEqual(conversation.state, State.CONNECTED)
        self.assertEqual(conversation.quit(), raw(b"Q"))
        self.assertEqual(conversation.quit(), b"")


class NegotiatedStepsTests(unittest.TestCase):
    def test_left_out_steps_send_nothing_but_move_on(self):
        conversation = negotiated(protocol=codec.P_NOHELO | codec.P_NOHDRS | codec.P_NOBODY)
        step(conversation, "connect")
        conversation.receive(raw(b"c"))
        self.assertEqual(step(conversation, "helo"), state.Step("helo"))
        through = [step(conversation, s) for s in ("mail",)]
        conversation.receive(raw(b"c"))
        self.assertTrue(through[0].awaits)

    def test_no_reply_steps_are_sent_without_waiting(self):
        conversation = negotiated(protocol=codec.P_NR_CONN | codec.P_NR_HDR)
        result = step(conversation, "connect", b"CONNECT")
        self.assertEqual((result.data, result.awaits), (b"CONNECT", False))
        self.assertIsNone(conversation.awaiting)
        self.assertRaises(ProtocolError, conversation.receive, raw(b"c"))   # nobody asked

    def test_macros_all_or_the_listed_ones(self):
        conversation = negotiated()
        sent = step(conversation, "connect", b"C!", [("j", "mx"), ("{client_addr}", "1.2.3.4"),
                                                      ("{unset}", None)])
        self.assertEqual(sent.data, codec.macro_packet(codec.CONNECT, [
            ("j", "mx"), ("{client_addr}", "1.2.3.4")]) + b"C!")
        listed = negotiated(actions=codec.F_SETSYMLIST,
                            macros=struct.pack("!I", codec.M_CONNECT) + b"{client_addr} {x}\0")
        sent = step(listed, "connect", b"C!", [("j", "mx"), ("client_addr", "1.2.3.4")])
        self.assertEqual(sent.data, codec.macro_packet(codec.CONNECT, [
            ("{client_addr}", "1.2.3.4")]) + b"C!")
        listed.receive(raw(b"c"))
        # a stage without a list gets every macro (the milter did not restrict it)
        self.assertEqual(step(listed, "helo", b"H!", [("{cipher}", "x")]).data,
                         codec.macro_packet(codec.HELO, [("{cipher}", "x")]) + b"H!")


class VerdictTests(unittest.TestCase):
    def answer(self, conversation, stage, data):
        step(conversation, stage)
        return conversation.receive(data)

    def test_reject_at_connect_ends_the_conversation(self):
        conversation = negotiated()
        self.assertEqual(self.answer(conversation, "connect", raw(b"r")),
                         [Verdict("connect", state.REJECT)])
        self.assertTrue(conversation.connection_finished)
        self.assertEqual(step(conversation, "helo"), state.Step("helo"))

    def test_replycode_and_progress(self):
        conversation = negotiated()
        step(conversation, "connect")
        events = conversation.receive(raw(b"p") + raw(b"y", b"421 4.7.0 busy\0"))
        self.assertEqual(events, [Progress(), Verdict("connect", state.TEMPFAIL, 421,
                                                      ("4.7.0 busy",))])

    def test_rcpt_refusal_is_for_that_recipient_only(self):
        conversation = negotiated()
        for stage in ("connect", "helo", "mail"):
            self.answer(conversation, stage, raw(b"c"))
        self.assertEqual(self.answer(conversation, "rcpt", raw(b"t"))[0].action, state.TEMPFAIL)
        self.assertFalse(conversation.transaction_finished)
        self.assertTrue(step(conversation, "rcpt").awaits)

    def test_accept_at_mail_ends_the_transaction_until_the_next(self):
        conversation = negotiated()
        for stage in ("connect", "helo"):
            self.answer(conversation, stage, raw(b"c"))
        self.assertEqual(self.answer(conversation, "mail", raw(b"a"))[0].action, state.ACCEPT)
        self.assertEqual(step(conversation, "rcpt"), state.Step("rcpt"))
        self.assertEqual(conversation.abort(), raw(b"A"))
        self.assertTrue(step(conversation, "mail").awaits)

    def test_skip_only_for_body(self):
        conversation = negotiated()
        through_data(conversation)
        self.answer(conversation, "eoh", raw(b"c"))
        self.assertEqual(self.answer(conversation, "body", raw(b"s"))[0].action, state.SKIP)
        conversation = negotiated()
        step(conversation, "connect")
        self.assertRaises(ProtocolError, conversation.receive, raw(b"s"))

    def test_discard_not_before_mail(self):
        conversation = negotiated()
        step(conversation, "connect")
        self.assertRaises(ProtocolError, conversation.receive, raw(b"d"))

    def test_modifications_come_with_the_final_reply_at_eob(self):
        conversation = negotiated()
        through_data(conversation)
        self.answer(conversation, "eoh", raw(b"c"))
        events = self.answer(conversation, "eob", raw(b"h", b"X-A\0one\0") + raw(b"p")
                             + raw(b"+", b"<new@example.com>\0") + raw(b"c"))
        self.assertEqual(events[0], Progress())
        self.assertEqual([m.command for m in events[1].modifications], [b"h", b"+"])

    def test_modifications_elsewhere_or_not_negotiated_are_errors(self):
        conversation = negotiated()
        through_data(conversation)
        step(conversation, "header")
        self.assertRaises(ProtocolError, conversation.receive, raw(b"h", b"X\0y\0"))
        conversation = negotiated(actions=codec.F_ADDHDRS)
        through_data(conversation)
        self.answer(conversation, "eoh", raw(b"c"))
        step(conversation, "eob")
        self.assertRaises(ProtocolError, conversation.receive, raw(b"b", b"new"))

    def test_shutdown_is_a_failure(self):
        conversation = negotiated()
        self.assertEqual(self.answer(conversation, "connect", raw(b"4"))[0].action, state.FAIL)
        self.assertTrue(conversation.connection_finished)
