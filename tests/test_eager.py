"""
L{sc_remoted.eager.Writer} on real UNIX sockets: bytes reach the kernel
in the call that writes them when nothing is queued, and otherwise wait
their turn in Twisted's buffer, in order, with nothing lost.
"""

import socket
from typing import List

from twisted.internet import reactor
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.test.proto_helpers import StringTransport
from twisted.trial import unittest

from sc_remoted.eager import Writer


class Quiet(Protocol):
    """The daemon's side of the pair: it only writes."""


class EagerWriterTests(unittest.TestCase):
    def setUp(self) -> None:
        ours, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        built: List[Quiet] = []

        def build(addr: object) -> Quiet:
            built.append(Quiet())
            return built[-1]

        factory = Factory()
        factory.buildProtocol = build  # type: ignore[method-assign]
        ours.setblocking(False)
        # The reactor's transport gets a duplicate of the descriptor.
        reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, factory)
        ours.close()
        self.protocol = built[0]
        self.transport = built[0].transport
        self.lost: List[Failure] = []
        self.protocol.connectionLost = self.lost.append  # type: ignore[method-assign,assignment]
        self.writer = Writer(self.transport)
        self.peer.setblocking(False)
        self.addCleanup(self.peer.close)
        self.addCleanup(self.transport.abortConnection)

    def _drain(self, size: int) -> bytes:
        """
        Read C{size} bytes at the other end, letting the transport write
        what it holds (as the reactor would when the socket is writable).
        """
        chunks: List[bytes] = []
        while size > 0:
            try:
                chunk = self.peer.recv(1 << 20)
            except BlockingIOError:
                self.assertTrue(self.transport.dataBuffer or self.transport._tempDataLen, "bytes went missing")
                self.transport.doWrite()
                continue
            self.assertTrue(chunk, "the connection closed early")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def test_sentAtOnce(self) -> None:
        """
        With nothing queued, the bytes are in the kernel when write
        returns: Twisted holds none of them and the transport is never
        registered for writing.
        """
        self.writer.writeSequence([b"CHANNEL", b"_NEW ", b"1\n"])
        self.writer.write(b"second\n")
        self.assertNotIn(self.transport, reactor.getWriters())
        self.assertEqual((self.transport.dataBuffer, self.transport._tempDataLen), (b"", 0))
        self.assertEqual(self.peer.recv(100), b"CHANNEL_NEW 1\nsecond\n")

    def test_restQueuedWhenKernelFull(self) -> None:
        """
        What the kernel cannot take is left to Twisted, which sends it
        once the peer reads; a later write goes behind it, not ahead.
        """
        self.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = bytes(range(256)) * 4096
        self.writer.write(big)
        self.assertIn(self.transport, reactor.getWriters())
        queued = len(self.transport.dataBuffer) + self.transport._tempDataLen
        self.assertTrue(0 < queued < len(big), "the kernel took %d of %d bytes" % (len(big) - queued, len(big)))
        self.writer.write(b"after")
        expected = big + b"after"
        self.assertEqual(self._drain(len(expected)), expected)

    def test_behindQueued(self) -> None:
        """Bytes already in Twisted's buffer go first: the writer does not jump them."""
        self.transport.write(b"queued first ")
        self.writer.write(b"then this")
        self.assertEqual(self.transport._tempDataLen, len(b"queued first then this"))
        self.assertEqual(self._drain(len(b"queued first then this")), b"queued first then this")

    def test_partsQueuedAsParts(self) -> None:
        """
        Behind queued bytes, a sequence is queued as its parts, as
        Twisted's writeSequence queues them: joined once, when sent.
        """
        self.transport.write(b"queued ")
        self.writer.writeSequence([b"part one, ", b"part two"])
        self.assertEqual(self.transport._tempDataBuffer, [b"queued ", b"part one, ", b"part two"])
        self.assertEqual(self._drain(len(b"queued part one, part two")), b"queued part one, part two")

    def test_notWhileClosing(self) -> None:
        """
        A transport asked to close is left to Twisted: the write is
        queued, as Twisted queues it, for Twisted's own last doWrite.
        """
        self.transport.loseConnection()
        self.writer.write(b"last words")
        self.assertEqual(self.transport._tempDataLen, len(b"last words"))
        with self.assertRaises(BlockingIOError):
            self.peer.recv(100)

    def test_failedSendLeftToTwisted(self) -> None:
        """
        A send the kernel refuses (the peer has gone: EPIPE) leaves the
        bytes to Twisted, whose own attempt reports the connection lost.
        """
        self.peer.close()
        self.writer.write(b"to nobody")
        self.assertEqual(self.transport._tempDataLen, len(b"to nobody"))
        self.assertIn(self.transport, reactor.getWriters())
        self.assertIsInstance(self.transport.doWrite(), ConnectionLost)

    def test_otherTransports(self) -> None:
        """A transport that is not a file descriptor (TLS, a test double) gets the parts as they are."""
        transport = StringTransport()
        writes: List[List[bytes]] = []
        transport.writeSequence = writes.append  # type: ignore[method-assign]
        Writer(transport).writeSequence([b"a", b"b"])
        self.assertEqual(writes, [[b"a", b"b"]])

    def test_closedAtOnce(self) -> None:
        """
        With nothing queued, loseConnection closes in the call: the
        protocol has its ConnectionDone, the reactor no longer watches
        the descriptor, and the peer reads the last bytes, then EOF.
        """
        self.writer.write(b"bye\n")
        self.writer.loseConnection()
        self.assertEqual(len(self.lost), 1)
        self.lost[0].trap(ConnectionDone)
        self.assertNotIn(self.transport, reactor.getReaders() + reactor.getWriters())
        self.assertEqual(self.peer.recv(100), b"bye\n")
        self.assertEqual(self.peer.recv(100), b"")

    def test_closeWaitsForQueued(self) -> None:
        """Bytes still queued are sent first: Twisted closes after its last write."""
        self.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = bytes(range(256)) * 4096
        self.writer.write(big)
        self.writer.loseConnection()
        self.assertEqual(self.lost, [])
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self._drain(len(big)), big)

    def test_closeWithProducer(self) -> None:
        """A registered producer is Twisted's to finish: no close at once."""
        producer = StringTransport()  # an IPushProducer
        self.transport.registerProducer(producer, True)
        self.writer.loseConnection()
        self.assertEqual(self.lost, [])
        self.assertTrue(self.transport.disconnecting)

    def test_otherTransportsClose(self) -> None:
        """A transport that is not a file descriptor is asked to close as usual."""
        transport = StringTransport()
        Writer(transport).loseConnection()
        self.assertTrue(transport.disconnecting)
