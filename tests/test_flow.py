"""
Tests for L{sc_remoted.flow}: backpressure between scamper and the local
clients of a vantage point.
"""


from sc_remoted import wire
from sc_remoted.flow import MAX_UNACKED, STALL_LIMIT
from sc_remoted.wire import Frame

from .fakes import FakeClient
from .test_session import SessionTestCase


class DownstreamTests(SessionTestCase):
    """A client that cannot keep up pauses reading from scamper."""

    def test_congestedClientPausesScamper(self):
        client = self.openClient()
        client.transport.producer.pauseProducing()
        self.assertEqual(self.scamper.transport.producerState, "paused")
        client.transport.producer.resumeProducing()
        self.assertEqual(self.scamper.transport.producerState, "producing")

    def test_twoCongestedClients(self):
        """Reading resumes only when every congested client has drained."""
        first = self.openClient()
        second = FakeClient(self.reactor, "127.0.0.1:42694")
        first.transport.producer.pauseProducing()
        second.transport.producer.pauseProducing()
        first.transport.producer.resumeProducing()
        self.assertEqual(self.scamper.transport.producerState, "paused")
        second.close()
        self.assertEqual(self.scamper.transport.producerState, "producing")

    def test_pausedIsNotSilent(self):
        """Time spent paused by us does not count as scamper's silence."""
        client = self.openClient()
        client.transport.producer.pauseProducing()
        self.reactor.advance(STALL_LIMIT - 1)
        client.transport.producer.resumeProducing()
        self.reactor.advance(59)
        self.assertFalse(self.scamper.closed)
        self.reactor.advance(1)
        self.assertTrue(self.scamper.closed)

    def test_stalledClientClosed(self):
        """
        A client that reads nothing for the stall limit loses its channel
        (CHANNEL_FIN to scamper); scamper is read again, the other client
        is untouched.
        """
        stalled = self.openClient()
        other = FakeClient(self.reactor, "127.0.0.1:42694")
        self.scamper.received()
        self.scamper.ack()
        stalled.transport.producer.pauseProducing()
        self.reactor.advance(STALL_LIMIT)
        self.assertTrue(stalled.transport.disconnected)
        self.assertEqual(self.scamper.transport.producerState, "producing")
        stalled.close()
        sent = [f for f in self.scamper.received() if f.payload != b"\x04"]
        self.assertEqual(sent, [Frame(2, 0, wire.channelFinPayload(1))])
        self.scamper.sendData(2, b"for the other")
        self.assertEqual(other.read(), b"for the other")


    def test_finishWhileCongested(self):
        """
        scamper's FIN to a congested client unregisters our producer, so
        that Twisted closes the connection once the buffer drains instead
        of resuming the producer (the client would never get EOF).
        """
        client = self.openClient()
        client.transport.producer.pauseProducing()
        self.scamper.sendFin(1)
        self.assertIsNone(client.transport.producer)
        self.assertTrue(client.gotEOF)


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
