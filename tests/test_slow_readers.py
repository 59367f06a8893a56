"""
Readers that do not read, over real sockets: a fake scamper floods two
channels of one vantage point, one reader never reads, the other does
(docs/security.rst, "Flow budgets").  The reader's data must keep
coming (no gap of a second), what the daemon queues must stay within the
budgets, and the reader that does not read must lose its channel (or,
through the mux, its connection) with one log line, and nothing else.
"""

import os
import socket
from typing import List, Tuple

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from sc_remoted.flow import TRANSPORT_BUFFER
from sc_remoted.limits import Limits
from sc_remoted.mux.codec import MuxDecoder, encodeChannelOpen
from sc_remoted.mux.server import MuxFactory

from .realprocs import waitFor
from .test_hostile import HostileTestCase, magic

MiB = 1024 * 1024
BUDGET = 1 * MiB
# The flood: every 10 ms, 60000 bytes for the reader that does not read
# and one numbered line for the one that does, for 4 s (24 MB in all,
# far more than the budget and the kernel's socket buffers together).
INTERVAL = 0.01
SINK_CHUNK = 60000
FLOOD_SECONDS = 4.0
MAX_GAP = 1.0


class TimedReader(Protocol):
    """Keeps what it reads and when, as (time, bytes)."""

    def __init__(self) -> None:
        self.arrivals: List[Tuple[float, bytes]] = []
        self.closed: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.arrivals.append((reactor.seconds(), data))

    def connectionLost(self, reason: Failure) -> None:
        self.closed.callback(None)

    @property
    def data(self) -> bytes:
        return b"".join(data for _, data in self.arrivals)


class MuxReader(TimedReader):
    """A mux client that opens one channel and keeps what comes on it."""

    def __init__(self, vpIdentifier: int, channel: int) -> None:
        super().__init__()
        self.vpIdentifier = vpIdentifier
        self.channel = channel
        self._decoder = MuxDecoder()

    def connectionMade(self) -> None:
        self.transport.write(encodeChannelOpen(self.vpIdentifier, self.channel))

    def dataReceived(self, data: bytes) -> None:
        for channel, payload in self._decoder.feed(data):
            if channel == self.channel:
                super().dataReceived(payload)


def sinkSocket(test, path: str, first: bytes = b"") -> socket.socket:
    """A client of C{path} with a tiny receive buffer that never reads."""
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    test.addCleanup(sink.close)
    sink.connect(path)
    if first:
        sink.sendall(first)
    sink.setblocking(False)
    return sink


def largestGap(arrivals: List[Tuple[float, bytes]], start: float, end: float) -> float:
    """The longest time between two arrivals, or from C{start} or to C{end}."""
    times = [start] + [t for t, _ in arrivals if start <= t <= end] + [end]
    return max(b - a for a, b in zip(times, times[1:]))


class SlowReaderTests(HostileTestCase):
    limits = Limits(channelBudget=BUDGET, muxClientBudget=BUDGET)

    @defer.inlineCallbacks
    def flood(self, scamper, sinkChannel: int, readerChannel: int):
        """
        Run the flood; fire with the lines the reader must get, when the
        flood started and ended, and the most the daemon queued.
        """
        lines: List[bytes] = []
        queued = [0]
        chunk = b"s" * SINK_CHUNK

        def tick() -> None:
            if not scamper.peer.channels[sinkChannel].daemonFinished:
                scamper.sendData(sinkChannel, chunk)
            line = b"line %d\n" % (len(lines),)
            lines.append(line)
            scamper.sendData(readerChannel, line)
            queued[0] = max(queued[0], self.controller.budgets.process.used)

        loop = task.LoopingCall(tick)
        started = reactor.seconds()
        done = loop.start(INTERVAL)
        yield task.deferLater(reactor, FLOOD_SECONDS, lambda: None)
        loop.stop()
        yield done
        return b"".join(lines), started, reactor.seconds(), queued[0]

    @defer.inlineCallbacks
    def floodAndCheck(self, scamper, reader: TimedReader, event: str, budget: str):
        """
        Flood scamper's first channel (the sink's) and its second (the
        reader's); the reader must get every line with no gap of
        L{MAX_GAP}, the sink must go with one C{event} over C{budget}, and
        the daemon must never have queued more than the budget plus the
        one read that crossed it.
        """
        sinkChannel, readerChannel = scamper.channels
        expected, started, ended, queued = yield self.flood(scamper, sinkChannel, readerChannel)
        yield waitFor(reactor, lambda: reader.data == expected, 5, "the reader's lines", interval=0.02)
        self.assertLess(largestGap(reader.arrivals, started, ended), MAX_GAP)
        [logged] = self.eventsNamed(event)
        self.assertEqual((logged["budget"], logged["limit"]), (budget, BUDGET))
        self.assertGreater(logged["queued"], BUDGET)
        self.assertTrue(scamper.peer.channels[sinkChannel].daemonFinished)
        self.assertGreater(queued, 0)
        self.assertLessEqual(queued, BUDGET + TRANSPORT_BUFFER)
        self.assertEqual(self.controller.budgets.process.used, 0)

    @defer.inlineCallbacks
    def test_localReaderNotStalled(self):
        """
        Two local clients of one VP; the one that never reads loses its
        channel over its budget (CHANNEL_FIN to scamper, one log line),
        the other gets every line, in order, with no gap of a second; a
        client of another VP is never slowed down.
        """
        a = yield self.scamper(magic(1), echo=False)
        b = yield self.scamper(magic(2))
        sinkSocket(self, os.path.join(self.directory, a.identity))
        yield waitFor(reactor, lambda: len(a.channels) == 1, 5, "the sink's channel")
        reader = TimedReader()
        yield self.client(a.identity, reader)
        yield waitFor(reactor, lambda: len(a.channels) == 2, 5, "the reader's channel")
        other = yield self.client(b.identity)
        yield self.floodAndCheck(a, reader, "channel.over_budget", "channel")
        took = yield self.roundTrip(b, other, b"b is fine\n")
        self.assertLess(took, MAX_GAP)
        self.assertEqual(len(self.controller.vantagePoints()), 2)
        self.assertClean(a)
        self.assertClean(b)

    test_localReaderNotStalled.timeout = 30  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_muxReaderNotStalled(self):
        """
        The same through the mux socket: the mux client that never reads
        loses its connection over its budget, and its channel is finished;
        the mux client that reads gets every line with no gap of a second.
        """
        muxPath = os.path.join(self.directory, "mux")
        port = reactor.listenUNIX(muxPath, MuxFactory(self.controller))
        self.addCleanup(port.stopListening)
        a = yield self.scamper(magic(1), echo=False)
        [vp] = self.controller.vantagePoints()
        sinkSocket(self, muxPath, encodeChannelOpen(vp.identifier, 5))
        yield waitFor(reactor, lambda: len(a.channels) == 1, 5, "the sink's channel")
        reader = MuxReader(vp.identifier, 7)
        yield self.client("mux", reader)
        yield waitFor(reactor, lambda: len(a.channels) == 2, 5, "the reader's channel")
        yield self.floodAndCheck(a, reader, "mux.over_budget", "mux client")
        self.assertClean(a)

    test_muxReaderNotStalled.timeout = 30  # type: ignore[attr-defined]
