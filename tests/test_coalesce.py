"""
Tests for L{sc_remoted.coalesce}: a scamper connection's writes of one
reactor turn sent in one call at its end, and the scamper protocol using
it over a real socket.
"""

import socket
from typing import List

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from sc_remoted.coalesce import Coalescer, TurnEnd
from sc_remoted.wire import FrameDecoder, encodeMasterNew

from .fakes import makeController


class TurnEndTests(unittest.SynchronousTestCase):
    """L{TurnEnd}."""

    def test_oneDelayedCallPerTurn(self):
        """Every call due at the end of a turn is made from one C{callLater(0)}, in order."""
        clock = Clock()
        turnEnd = TurnEnd(clock)
        made: List[str] = []
        turnEnd.callAtEnd(lambda: made.append("a"))
        turnEnd.callAtEnd(lambda: made.append("b"))
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.assertEqual(made, [])
        clock.advance(0)
        self.assertEqual(made, ["a", "b"])
        turnEnd.callAtEnd(lambda: made.append("c"))
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0)
        self.assertEqual(made, ["a", "b", "c"])

    def test_failureIsolated(self):
        """A call that raises is logged, and the calls after it are still made."""
        clock = Clock()
        turnEnd = TurnEnd(clock)
        events: List[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        made: List[str] = []
        turnEnd.callAtEnd(lambda: 1 / 0)
        turnEnd.callAtEnd(lambda: made.append("after"))
        clock.advance(0)
        self.assertEqual(made, ["after"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(any(e.get("log_level") == LogLevel.critical for e in events))


class CoalescerTests(unittest.SynchronousTestCase):
    """L{Coalescer}."""

    def setUp(self):
        self.clock = Clock()
        self.sent: List[List[bytes]] = []
        self.coalescer = Coalescer(self.sent.append, TurnEnd(self.clock), limit=100)

    def test_oneWriteSequencePerTurn(self):
        """The writes of a turn go in one C{writeSequence}, in order, at its end."""
        self.coalescer.write([b"ACK 1"])
        self.coalescer.write([b"DATA", b" 2"])
        self.assertEqual(self.sent, [])
        self.clock.advance(0)
        self.assertEqual(self.sent, [[b"ACK 1", b"DATA", b" 2"]])
        self.clock.advance(0)
        self.assertEqual(len(self.sent), 1)

    def test_callersListUntouched(self):
        """The parts a caller hands over are copied: its list is not extended."""
        parts = [b"a"]
        self.coalescer.write(parts)
        self.coalescer.write([b"b"])
        self.assertEqual(parts, [b"a"])

    def test_limit(self):
        """Past the limit, what waits goes at once; the next write waits for the turn's end again."""
        self.coalescer.write([b"x" * 60])
        self.assertEqual(self.sent, [])
        self.coalescer.write([b"y" * 40])
        self.assertEqual(self.sent, [[b"x" * 60, b"y" * 40]])
        self.coalescer.write([b"z"])
        self.assertEqual(len(self.sent), 1)
        self.clock.advance(0)
        self.assertEqual(self.sent[1:], [[b"z"]])

    def test_flush(self):
        """L{Coalescer.flush} sends what waits now; the turn's end then finds nothing."""
        self.coalescer.write([b"REJ"])
        self.coalescer.flush()
        self.assertEqual(self.sent, [[b"REJ"]])
        self.coalescer.flush()
        self.clock.advance(0)
        self.assertEqual(self.sent, [[b"REJ"]])

    def test_drop(self):
        """L{Coalescer.drop} forgets what waits."""
        self.coalescer.write([b"lost"])
        self.coalescer.drop()
        self.clock.advance(0)
        self.assertEqual(self.sent, [])


class ScamperConnectionTests(unittest.TestCase):
    """
    The scamper protocol over a real TCP connection: what a turn writes
    reaches scamper at the turn's end, in order, in one send.
    """

    def setUp(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.scamper = socket.create_connection(listener.getsockname())
        self.addCleanup(self.scamper.close)
        ours, _ = listener.accept()
        listener.close()
        # The protocol's timers and turns are a controller's memory
        # reactor; its transport is the real reactor's.
        self.controller = makeController()
        self.clock = self.controller.reactor
        factory = self.controller.scamperFactory()
        built = []
        buildProtocol = factory.buildProtocol
        factory.buildProtocol = lambda addr: built.append(buildProtocol(addr)) or built[-1]
        ours.setblocking(False)
        reactor.adoptStreamConnection(ours.fileno(), socket.AF_INET, factory)
        ours.close()
        self.protocol = built[0]
        self.addCleanup(self.protocol.transport.abortConnection)
        self.scamper.setblocking(False)

    def received(self) -> bytes:
        try:
            return self.scamper.recv(65536)
        except BlockingIOError:
            return b""

    def test_writesOfATurn(self):
        """Two writes in one turn: nothing before its end, then both, in order."""
        self.protocol.write(b"first ")
        self.protocol.writeSequence([b"second ", b"third"])
        self.assertEqual(self.received(), b"")
        self.clock.advance(0)
        self.scamper.setblocking(True)
        self.scamper.settimeout(5)
        expected = b"first second third"
        data = b""
        while len(data) < len(expected):
            data += self.scamper.recv(65536)
        self.assertEqual(data, expected)

    def test_registration(self):
        """A MASTER_NEW read: the MASTER_ID is sent when the turn ends."""
        self.protocol.dataReceived(encodeMasterNew(b"m" * 8))
        self.assertEqual(self.received(), b"")
        self.clock.advance(0)
        self.scamper.setblocking(True)
        self.scamper.settimeout(5)
        frames = FrameDecoder().feed(self.scamper.recv(65536))
        self.assertEqual(len(frames), 1)

    def test_abandonSendsFirst(self):
        """An abandoned connection sends what its turn wrote before it closes."""
        self.protocol.write(b"last ACKs")
        self.protocol.abandon()
        self.scamper.setblocking(True)
        self.scamper.settimeout(5)
        self.assertEqual(self.scamper.recv(65536), b"last ACKs")

    def test_refuseSendsFirst(self):
        """A refusal's frame is sent before the connection is asked to close."""
        self.protocol.refuse(b"REJ")
        self.scamper.setblocking(True)
        self.scamper.settimeout(5)
        self.assertEqual(self.scamper.recv(65536), b"REJ")
