"""
Tests for L{sc_remoted.flow} and L{sc_remoted.backlog} with local
clients: backpressure from scamper to the clients, bounded backlogs from
the clients' side.
"""


from typing import List

from twisted.logger import globalLogPublisher

from sc_remoted import wire
from sc_remoted.backlog import STALL_LIMIT
from sc_remoted.flow import MAX_UNACKED
from sc_remoted.limits import Limits

from .fakes import FakeClient, makeController
from .test_session import MAGIC, OTHER_MAGIC, SessionTestCase


class DownstreamTests(SessionTestCase):
    """
    A client that cannot keep up never pauses reading from scamper: what
    it has not taken waits in its backlog, and a client too far behind
    or stalled loses only its own channel.
    """

    limits = Limits(channelBudget=100000, vantagePointBudget=150000, processBudget=180000)

    def setUp(self):
        self.controller = makeController(zombieTime=self.zombieTime, limits=self.limits)
        self.reactor = self.controller.reactor
        self.scamper = self.register(MAGIC)
        self.events: List[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def eventsNamed(self, name: str) -> List[dict]:
        return [e for e in self.events if e.get("sc_event") == name]

    def test_congestedClientDoesNotPauseScamper(self):
        """
        A full client is queued for; the other client of the VP gets its
        data at once; the queue is written, in order, once it drains.
        """
        slow = self.openClient()
        other = FakeClient(self.reactor, "127.0.0.1:42694")
        self.scamper.received()
        self.scamper.ack()
        slow.transport.producer.pauseProducing()
        self.assertEqual(self.scamper.transport.producerState, "producing")
        self.scamper.sendData(1, b"one ")
        self.scamper.sendData(2, b"for the other")
        self.scamper.sendData(1, b"two")
        self.assertEqual(other.read(), b"for the other")
        self.assertEqual(slow.read(), b"")
        vp = self.vp()
        self.assertEqual(vp.queued.used, 7)
        self.assertEqual(self.controller.budgets.process.used, 7)
        slow.transport.producer.resumeProducing()
        self.assertEqual(slow.read(), b"one two")
        self.assertEqual(vp.queued.used, 0)
        self.assertEqual(self.controller.budgets.process.used, 0)

    def test_overChannelBudget(self):
        """
        A client more than its channel budget behind loses its channel
        (CHANNEL_FIN to scamper), with one log line; the other carries on.
        """
        slow = self.openClient()
        other = FakeClient(self.reactor, "127.0.0.1:42694")
        self.scamper.received()
        self.scamper.ack()
        slow.transport.producer.pauseProducing()
        flood(self.scamper, 1, 100000)
        self.assertFalse(slow.transport.disconnected)
        flood(self.scamper, 1, 10000)
        self.assertTrue(slow.transport.disconnected)
        [event] = self.eventsNamed("channel.over_budget")
        self.assertEqual((event["budget"], event["limit"], event["queued"]), ("channel", 100000, 110000))
        self.assertEqual(self.controller.budgets.process.used, 0)
        slow.close()
        self.assertEqual(controlSent(self.scamper), [wire.channelFinPayload(1)])
        self.scamper.sendData(2, b"for the other")
        self.assertEqual(other.read(), b"for the other")

    def test_overVantagePointBudget(self):
        """
        Past the VP's budget the client furthest behind goes, even when
        the other one's write crossed it.
        """
        furthest = self.openClient()
        behind = FakeClient(self.reactor, "127.0.0.1:42694")
        self.scamper.received()
        self.scamper.ack()
        furthest.transport.producer.pauseProducing()
        behind.transport.producer.pauseProducing()
        flood(self.scamper, 1, 90000)
        flood(self.scamper, 2, 50000)
        self.assertFalse(furthest.transport.disconnected)
        flood(self.scamper, 2, 20000)
        self.assertTrue(furthest.transport.disconnected)
        self.assertFalse(behind.transport.disconnected)
        [event] = self.eventsNamed("channel.over_budget")
        self.assertEqual((event["budget"], event["queued"]), ("vantage point", 90000))
        self.assertEqual(self.vp().queued.used, 70000)

    def test_overProcessBudget(self):
        """Past the process's budget the reader furthest behind anywhere goes."""
        second = self.register(OTHER_MAGIC, port=50000)
        here = self.openClient()
        there = FakeClient(self.reactor, "127.0.0.1:50000")
        [new] = second.received()
        second.ack()
        here.transport.producer.pauseProducing()
        there.transport.producer.pauseProducing()
        flood(second, 1, 99000)
        flood(self.scamper, 1, 80000)
        self.assertFalse(there.transport.disconnected)
        flood(self.scamper, 1, 5000)
        [event] = self.eventsNamed("channel.over_budget")
        self.assertEqual((event["budget"], event["limit"], event["queued"]), ("process", 180000, 99000))
        self.assertTrue(there.transport.disconnected)
        self.assertFalse(here.transport.disconnected)
        self.assertEqual(self.controller.budgets.process.used, 85000)

    def test_stalledClientClosed(self):
        """
        A client that reads nothing for the stall limit loses its channel
        (CHANNEL_FIN to scamper), queued data and all; the other client is
        untouched.
        """
        stalled = self.openClient()
        other = FakeClient(self.reactor, "127.0.0.1:42694")
        self.scamper.received()
        self.scamper.ack()
        stalled.transport.producer.pauseProducing()
        self.scamper.sendData(1, b"never read")
        # scamper stays alive meanwhile, as it does (KEEPALIVE every 30 s).
        self.reactor.advance(STALL_LIMIT / 2)
        self.scamper.sendKeepalive()
        self.reactor.advance(STALL_LIMIT / 2 - 1)
        self.assertFalse(stalled.transport.disconnected)
        self.reactor.advance(1)
        self.assertTrue(stalled.transport.disconnected)
        [event] = self.eventsNamed("channel.stalled")
        self.assertEqual(event["queued"], 10)
        self.assertEqual(self.vp().queued.used, 0)
        stalled.close()
        self.assertEqual(controlSent(self.scamper), [wire.channelFinPayload(1)])
        self.scamper.sendData(2, b"for the other")
        self.assertEqual(other.read(), b"for the other")

    def test_drainRestartsStallLimit(self):
        """A client that drains is not cut for time it spent full before."""
        client = self.openClient()
        client.transport.producer.pauseProducing()
        self.reactor.advance(STALL_LIMIT - 1)
        client.transport.producer.resumeProducing()
        client.transport.producer.pauseProducing()
        self.reactor.advance(STALL_LIMIT - 1)
        self.assertFalse(client.transport.disconnected)
        self.assertEqual(self.eventsNamed("channel.stalled"), [])

    def test_finishWhileCongested(self):
        """
        scamper's FIN to a congested client is kept until its queue is
        written: then our producer is unregistered, so that Twisted closes
        the connection once the buffer drains instead of resuming the
        producer (the client would never get EOF).
        """
        client = self.openClient()
        client.transport.producer.pauseProducing()
        self.scamper.sendData(1, b"last words")
        self.scamper.sendFin(1)
        self.assertFalse(client.gotEOF)
        client.transport.producer.resumeProducing()
        self.assertEqual(client.read(), b"last words")
        self.assertIsNone(client.transport.producer)
        self.assertTrue(client.gotEOF)

    def test_finishedButStalled(self):
        """A client that never takes its last data is still cut at the stall limit."""
        client = self.openClient()
        client.transport.producer.pauseProducing()
        self.scamper.sendData(1, b"last words")
        self.scamper.sendFin(1)
        self.reactor.advance(STALL_LIMIT)
        self.assertTrue(client.transport.disconnected)
        self.assertEqual(self.controller.budgets.process.used, 0)

    def vp(self):
        [vp] = [vp for vp in self.controller.vantagePoints() if vp.magic == MAGIC]
        return vp


def controlSent(scamper) -> List[bytes]:
    """The control messages the daemon sent scamper, but ACKs and KEEPALIVEs."""
    ignored = (wire.ControlType.ACK, wire.ControlType.KEEPALIVE)
    return [f.payload for f in scamper.received() if f.channel == 0 and f.payload[0] not in ignored]


def flood(scamper, channel: int, size: int) -> None:
    """scamper sends C{size} bytes on C{channel}, in frames of at most 10000."""
    while size > 0:
        scamper.sendData(channel, b"z" * min(size, 10000))
        size -= 10000


class UpstreamTests(SessionTestCase):
    """Clients are paused while scamper cannot take more."""

    def test_sendBufferFull(self):
        client = self.openClient()
        self.scamper.transport.producer.pauseProducing()
        self.assertEqual(client.transport.producerState, "paused")
        late = FakeClient(self.reactor, "127.0.0.1:42694")
        self.assertEqual(late.transport.producerState, "paused")
        self.scamper.transport.producer.resumeProducing()
        self.assertEqual(client.transport.producerState, "producing")
        self.assertEqual(late.transport.producerState, "producing")

    def test_unackedWindow(self):
        """Past the unacked limit clients pause; ACKs bring them back."""
        client = self.openClient()
        block = b"x" * 60000
        count = MAX_UNACKED // len(block) + 1
        for _ in range(count):
            client.write(block)
        self.assertEqual(client.transport.producerState, "paused")
        self.assertEqual(len(self.scamper.received()), count)
        self.scamper.ack()
        self.assertEqual(client.transport.producerState, "producing")

    def test_zombieWindow(self):
        """While a zombie, queued writes past the limit pause the client."""
        client = self.openClient()
        self.scamper.lose()
        block = b"y" * 60000
        for _ in range(MAX_UNACKED // len(block) + 1):
            client.write(block)
        self.assertEqual(client.transport.producerState, "paused")
        resumed = self.reconnect(50958)
        resumed.resume()
        self.assertEqual(resumed.peer.rcvNxt, 1)
        resumed.received()  # MASTER_OK and the queued writes
        self.assertEqual(client.transport.producerState, "paused")
        resumed.ack()
        self.assertEqual(client.transport.producerState, "producing")
