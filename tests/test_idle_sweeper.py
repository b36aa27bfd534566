"""Idle timeouts with one timer for all connections (qpsmtpd_tx.idle), on a Clock and over
real sockets: a silent client gets ``421 Connection Timed Out`` within a second after its
limit, a talking one does not, a busy session is looked at again, and open connections add no
timer of their own to the reactor."""

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from qpsmtpd_tx.idle import IdleSweeper
from tests.support.server import connect, start_server, wait_sessions_closed


class Member:
    """A connection as the sweeper sees it; ``busy`` answers False to the first expiries."""

    def __init__(self, limit, busy=0):
        self.limit, self.busy, self.expired = limit, busy, []

    def idle_limit(self):
        return self.limit

    def idle_expired(self):
        self.expired.append(self.idle_since)
        if self.busy:
            self.busy -= 1
            return False
        return True


class SweeperTests(unittest.TestCase):
    """The sweeper on a Clock."""

    def setUp(self):
        self.clock = Clock()
        self.sweeper = IdleSweeper(self.clock)

    def test_silent_members_expire_within_a_second_after_their_limit(self):
        short, long_, none = Member(5), Member(30), Member(0)
        for member in (short, long_, none):
            self.sweeper.add(member)
        self.clock.pump([1] * 4)
        self.assertEqual(short.expired, [])
        self.clock.pump([1] * 2)
        self.assertEqual(len(short.expired), 1)
        self.clock.pump([1] * 100)
        self.assertEqual((len(short.expired), len(long_.expired), none.expired), (1, 1, []))
        self.assertEqual(len(self.sweeper), 1)          # only the one without a limit is left

    def test_activity_postpones(self):
        member = Member(5)
        self.sweeper.add(member)
        for _ in range(20):
            self.clock.advance(1)
            member.idle_since = self.clock.seconds()     # the client sent something
        self.assertEqual(member.expired, [])
        self.clock.pump([1] * 6)
        self.assertEqual(len(member.expired), 1)

    def test_a_busy_member_is_looked_at_a_whole_limit_later(self):
        member = Member(5, busy=1)
        self.sweeper.add(member)
        self.clock.pump([1] * 5)
        self.assertEqual(len(member.expired), 1)        # busy: kept
        self.clock.pump([1] * 4)
        self.assertEqual(len(member.expired), 1)
        self.clock.pump([1] * 2)
        self.assertEqual(len(member.expired), 2)
        self.assertEqual(len(self.sweeper), 0)

    def test_the_timer_runs_only_while_there_are_members(self):
        first, second = Member(5), Member(5)
        self.sweeper.add(first)
        self.sweeper.add(second)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.sweeper.discard(first)
        self.sweeper.discard(first)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.sweeper.discard(second)
        self.assertEqual(self.clock.getDelayedCalls(), [])


    def test_a_member_that_raises_stops_no_other_nor_the_timer(self):
        class Broken(Member):
            def idle_expired(self):
                super().idle_expired()
                raise RuntimeError("broken close")

        broken, silent, later = Broken(5), Member(5), Member(20)
        for member in (broken, silent, later):
            self.sweeper.add(member)
        self.clock.pump([1] * 6)
        self.assertEqual((len(broken.expired), len(silent.expired)), (1, 1))
        self.clock.pump([1] * 5)
        self.assertEqual(len(broken.expired), 2)        # looked at again a limit later
        self.clock.pump([1] * 10)                       # the timer still runs
        self.assertEqual(len(later.expired), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 4)


class RealConnectionTests(unittest.TestCase):
    """A server on a real socket with ``timeout`` 2."""

    async def test_a_silent_client_times_out_a_talking_one_does_not(self):
        # 2 s, not 1: the talking client's pauses may be stretched by a loaded machine (the
        # server runs in this process), and a second's limit left half a second for that
        server, port = start_server(self, ["rcpt_ok"], {"timeout": "2"})
        silent = await connect(self, port)
        talking = await connect(self, port)
        for _ in range(12):                 # 3 s of NOOPs, one every quarter second
            self.assertEqual((await talking.command("NOOP"))[0], 250)
            await _sleep(0.25)
        self.assertEqual(await silent.reply(), (421, ["Connection Timed Out"]))
        await silent.wait_closed()
        self.assertFalse(talking.closed)
        self.assertEqual((await talking.command("QUIT"))[0], 221)
        await wait_sessions_closed(server)

    async def test_open_connections_add_no_timer_each(self):
        server, port = start_server(self, ["rcpt_ok"])
        # (from ten addresses: five per address is the default --max-from-ip)
        clients = [await connect(self, port, source="127.0.3.1")]
        with_one = len(reactor.getDelayedCalls())
        clients += [await connect(self, port, source="127.0.3.%d" % n) for n in range(2, 11)]
        self.assertEqual(len(server.sessions), 10)
        self.assertEqual(len(reactor.getDelayedCalls()), with_one)
        for client in clients:
            await client.command("QUIT")


def _sleep(seconds):
    from twisted.internet.task import deferLater
    return deferLater(reactor, seconds, lambda: None)
