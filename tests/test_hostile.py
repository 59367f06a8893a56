"""
Hostile and broken peers over real sockets: our daemon in this process
listening on 127.0.0.1, scampers written in the test (L{WireScamper}, the
suite's one fake scamper L{tests.peer.ScamperPeer} on a real connection,
and raw bytes), local clients on the real UNIX sockets.
  Each test shows that the misbehaving peer costs only itself
and that every other vantage point and client keeps working, and each
ends within seconds: the daemon's timers are shortened by patching them.

  - a slowloris scamper: connects, dribbles bytes, never registers;
  - a flood of connections, from one address and from many;
  - local and mux clients that never read (tests/test_slow_readers.py);
  - garbage from a registered scamper;
  - a storm of MASTER_RES with unknown or stolen magics.
"""

import os
import socket
from typing import List, Optional

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, UNIXClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from sc_remoted.controller import Controller
from sc_remoted.engine import Timeouts
from sc_remoted.limits import Limits
from sc_remoted.service import makeRemotedService

from .peer import Data, Event, Rejected, ScamperPeer
from .peer_twisted import PeerProtocol
from .realprocs import LOOPBACK, PortRecordingEndpoint, makeSocketsDirectory, sleep, sockets, waitFor

STALL_LIMIT = 3.0
REGISTRATION_TIMEOUT = 2.0


class WireScamper(PeerProtocol):
    """
    A well-behaved scamper (L{tests.peer.ScamperPeer}): registers with
    C{magic}, ACKs every acked frame, echoes what a client writes
    (prefixed with C{b"echo:"}), and answers a client's CHANNEL_FIN with
    its own, as scamper does.
    """

    def __init__(self, magic: bytes, echo: bool = True) -> None:
        super().__init__(ScamperPeer(magic, autoFinish=True))
        self.echo = echo

    def eventsReceived(self, events: List[Event]) -> None:
        if self.echo:
            for event in events:
                if isinstance(event, Data):
                    self.sendData(event.channel, b"echo:" + event.payload)

    @property
    def channels(self) -> List[int]:
        """The channels the daemon opened, in order."""
        return list(self.peer.channels)


class Client(Protocol):
    """A local client of a vantage point's socket; keeps what it reads."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data.extend(data)

    def connectionLost(self, reason: Failure) -> None:
        self.closed.callback(None)


class Idle(Protocol):
    """A TCP connection that sends C{dribble} one byte every C{interval} s."""

    def __init__(self, dribble: bytes = b"", interval: float = 0.25) -> None:
        self.dribble = dribble
        self.interval = interval
        self.closedAt: Optional[float] = None
        self.openedAt: Optional[float] = None
        self.sent = 0
        self._loop: Optional[task.LoopingCall] = None

    def connectionMade(self) -> None:
        self.openedAt = reactor.seconds()
        if self.dribble:
            self._loop = task.LoopingCall(self._drip)
            self._loop.start(self.interval, now=True)

    def _drip(self) -> None:
        if self.sent < len(self.dribble):
            self.transport.write(self.dribble[self.sent : self.sent + 1])
            self.sent += 1

    def connectionLost(self, reason: Failure) -> None:
        self.closedAt = reactor.seconds()
        if self._loop is not None and self._loop.running:
            self._loop.stop()


class HostileTestCase(TestCase):
    """Our daemon on a free port of 127.0.0.1, with a private directory."""

    limits = Limits()
    registrationTimeout = REGISTRATION_TIMEOUT

    @defer.inlineCallbacks
    def setUp(self):
        self.events: List[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.directory = makeSocketsDirectory(self)
        self.controller = Controller(
            reactor,
            self.directory,
            zombieTime=60,
            limits=self.limits,
            timeouts=Timeouts(registration=self.registrationTimeout),
        )
        self.controller.budgets.stallLimit = STALL_LIMIT
        # The backlog the daemon's own listeners use (sc_remoted.listen).
        endpoint = PortRecordingEndpoint(
            TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK, backlog=socket.SOMAXCONN)
        )
        self.service = makeRemotedService(self.controller, [endpoint])
        yield self.service.startService()
        self.addCleanup(self._stop)
        self.port = endpoint.port
        self.connections: List[Protocol] = []

    @defer.inlineCallbacks
    def _stop(self):
        for protocol in self.connections:
            if protocol.transport is not None and protocol.transport.connected:
                protocol.transport.abortConnection()
        yield self.service.stopService()
        yield sleep(reactor, 0.1)

    def eventsNamed(self, name: str) -> List[dict]:
        return [e for e in self.events if e.get("sc_event") == name]

    def connect(self, protocol: Protocol, source: str = LOOPBACK) -> defer.Deferred:
        """Connect C{protocol} to the daemon from address C{source}."""
        endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, self.port, timeout=5, bindAddress=(source, 0))
        self.connections.append(protocol)
        return endpoint.connect(_Once(protocol))

    @defer.inlineCallbacks
    def scamper(self, magic: bytes, source: str = LOOPBACK, echo: bool = True):
        """A registered L{WireScamper} and the name of its socket."""
        scamper = WireScamper(magic, echo)
        yield self.connect(scamper, source)
        yield scamper.waitFor(lambda: scamper.peer.established, "MASTER_ID")
        yield waitFor(reactor, lambda: scamper.identity in sockets(self.directory), 5, "the socket")
        return scamper

    @defer.inlineCallbacks
    def client(self, name: str, client: Optional[Protocol] = None) -> defer.Deferred:
        """Connect C{client} (a new L{Client} by default) to the socket C{name}."""
        if client is None:
            client = Client()
        self.connections.append(client)
        endpoint = UNIXClientEndpoint(reactor, os.path.join(self.directory, name), timeout=5)
        yield endpoint.connect(_Once(client))
        return client

    @defer.inlineCallbacks
    def roundTrip(self, scamper: WireScamper, client: Client, payload: bytes, timeout: float = 2.0):
        """
        C{client} writes C{payload} and gets scamper's echo within
        C{timeout} s; fire with the time it took.
        """
        started = reactor.seconds()
        before = len(client.data)
        client.transport.write(payload)
        yield waitFor(
            reactor,
            lambda: bytes(client.data[before:]) == b"echo:" + payload,
            timeout,
            "the echo of %r" % (payload[:20],),
            interval=0.01,
        )
        return reactor.seconds() - started

    def assertClean(self, scamper: WireScamper) -> None:
        """The well-behaved scamper saw nothing wrong."""
        self.assertEqual(scamper.violations, [])
        self.assertFalse(scamper.lost.called)


class _Once(Factory):
    """A factory for exactly one, given, protocol."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol_ = protocol

    def buildProtocol(self, addr):
        self.protocol_.factory = self
        return self.protocol_


def magic(n: int) -> bytes:
    return n.to_bytes(8, "big")


class SlowlorisTests(HostileTestCase):
    @defer.inlineCallbacks
    def test_slowloris(self):
        """
        Thirty connections that dribble a MASTER_NEW one byte at a time
        never hold a slot past the registration timeout (the dribble does
        not extend it); a registered vantage point and its client work
        throughout, promptly.
        """
        good = yield self.scamper(magic(1))
        client = yield self.client(good.identity)
        slow = [Idle(ScamperPeer(magic(100 + n)).masterNew(), interval=0.25) for n in range(30)]
        yield defer.gatherResults([self.connect(s, "127.0.0.2") for s in slow])
        yield waitFor(reactor, lambda: self.controller._connections.get("127.0.0.2") == 30, 5, "30 accepts")
        for n in range(10):
            took = yield self.roundTrip(good, client, b"ping %d\n" % (n,))
            self.assertLess(took, 1.0)
            yield sleep(reactor, 0.1)
        yield waitFor(
            reactor, lambda: all(s.closedAt is not None for s in slow), REGISTRATION_TIMEOUT + 3, "the slowloris to be cut"
        )
        for s in slow:
            self.assertLess(s.closedAt - s.openedAt, REGISTRATION_TIMEOUT + 1.5)
            # Still dribbling when it was cut: no MASTER_NEW ever completed.
            self.assertLess(s.sent, len(s.dribble))
        self.assertEqual(len(self.eventsNamed("scamper.registration_timeout")), 30)
        self.assertEqual(self.controller._connections, {LOOPBACK: 1})
        self.assertEqual([vp.magic for vp in self.controller.vantagePoints()], [magic(1)])
        yield self.roundTrip(good, client, b"after\n")
        self.assertClean(good)

    test_slowloris.timeout = 30  # type: ignore[attr-defined]


class FloodTests(HostileTestCase):
    limits = Limits(maxConnections=40, maxPerAddress=10)
    # The flood's accepted connections must stay for the whole test.
    registrationTimeout = 30.0

    @defer.inlineCallbacks
    def test_connectionFlood(self):
        """
        A flood of 200 connections from one address gets 10 slots and the
        rest are closed at once (max-per-address); a flood from ten more
        addresses fills the remaining slots and is refused past 40
        (max-connections).  The registered vantage point and its client
        keep working throughout; once the flood ends its slots are free.
        """
        good = yield self.scamper(magic(1))
        client = yield self.client(good.identity)

        flood = [Idle() for _ in range(200)]
        yield defer.gatherResults([self.connect(p, "127.0.0.2") for p in flood], consumeErrors=True)
        yield self.roundTrip(good, client, b"during the flood\n")
        yield waitFor(
            reactor, lambda: sum(p.closedAt is not None for p in flood) == 190, 5, "190 refusals"
        )
        refused = self.eventsNamed("limit.refused")
        self.assertEqual({e["limit"] for e in refused}, {"max-per-address"})
        self.assertEqual(len(refused), 190)

        many = [Idle() for _ in range(100)]
        sources = ["127.0.0.%d" % (3 + n % 10,) for n in range(100)]
        yield defer.gatherResults([self.connect(p, s) for p, s in zip(many, sources)], consumeErrors=True)
        # 1 + 10 + 29 = 40 slots; the other 71 are refused.
        yield waitFor(reactor, lambda: sum(p.closedAt is not None for p in many) == 71, 5, "71 refusals")
        self.assertEqual(self.controller._connectionCount, 40)
        self.assertEqual(
            len([e for e in self.eventsNamed("limit.refused") if e["limit"] == "max-connections"]), 71
        )
        for n in range(5):
            took = yield self.roundTrip(good, client, b"still there %d\n" % (n,))
            self.assertLess(took, 1.0)

        # The flood goes; a new scamper can register again.
        for p in flood + many:
            if p.closedAt is None:
                p.transport.loseConnection()
        yield waitFor(reactor, lambda: self.controller._connectionCount == 1, 5, "the flood to be uncounted")
        other = yield self.scamper(magic(2), "127.0.0.2")
        otherClient = yield self.client(other.identity)
        yield self.roundTrip(other, otherClient, b"new\n")
        yield self.roundTrip(good, client, b"old\n")
        self.assertClean(good)
        self.assertClean(other)

    test_connectionFlood.timeout = 30  # type: ignore[attr-defined]


class BadPeerTests(HostileTestCase):
    @defer.inlineCallbacks
    def test_garbageFromRegisteredScamper(self):
        """
        A registered scamper that sends garbage loses its connection and
        its session (socket removed, clients get EOF); the other vantage
        point and its client carry on.
        """
        bad = yield self.scamper(magic(1))
        good = yield self.scamper(magic(2))
        badClient = yield self.client(bad.identity)
        goodClient = yield self.client(good.identity)
        # A whole frame (the header announces 7 bytes) with a wrong seq.
        bad.send(b"\xff" * 8 + b"\x00\x07" + b"GET / H")
        yield bad.lost
        yield badClient.closed
        yield waitFor(reactor, lambda: sockets(self.directory) == [good.identity], 5, "the socket to go")
        self.assertEqual(len(self.eventsNamed("scamper.protocol_error")), 1)
        self.assertEqual([vp.magic for vp in self.controller.vantagePoints()], [magic(2)])
        yield self.roundTrip(good, goodClient, b"fine\n")
        self.assertClean(good)

    test_garbageFromRegisteredScamper.timeout = 20  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_resumeStorm(self):
        """
        A hundred connections each sending MASTER_RES, with unknown magics
        or with the live session's magic and windows that do not fit, are
        each answered MASTER_REJ and closed; the live session is not
        touched.
        """
        good = yield self.scamper(magic(1))
        client = yield self.client(good.identity)
        yield self.roundTrip(good, client, b"before\n")
        storm: List[PeerProtocol] = []
        for n in range(100):
            stolen = n % 2 == 0
            # The daemon's sndNxt for good is 2 (CHANNEL_NEW, data); a
            # rcv_nxt of 1000 is nothing it holds.
            s = PeerProtocol(
                ScamperPeer(magic(1) if stolen else magic(1000 + n)),
                opening=lambda p: p.resume(rcvNxt=1000, sndUna=0, sndNxt=0),
            )
            storm.append(s)
        yield defer.gatherResults([self.connect(s, "127.0.0.%d" % (2 + n % 50,)) for n, s in enumerate(storm)])
        yield waitFor(reactor, lambda: all(s.lost.called for s in storm), 5, "every MASTER_RES to be answered")
        for s in storm:
            self.assertEqual([type(e) for e in s.peer.events], [Rejected])
            self.assertEqual(s.violations, [])
        self.assertEqual(len(self.eventsNamed("vp.resume_rejected")), 100)
        self.assertEqual(self.eventsNamed("vp.takeover"), [])
        yield self.roundTrip(good, client, b"after\n")
        self.assertClean(good)

    test_resumeStorm.timeout = 20  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_duplicateMagic(self):
        """
        MASTER_NEW with the magic of a live session is closed; the live
        session keeps its socket and its client.
        """
        good = yield self.scamper(magic(1))
        client = yield self.client(good.identity)
        copycats = [WireScamper(magic(1)) for _ in range(20)]
        yield defer.gatherResults([self.connect(c, "127.0.0.3") for c in copycats])
        yield defer.gatherResults([c.lost for c in copycats])
        self.assertEqual([c.identity for c in copycats], [None] * 20)
        self.assertEqual(len(self.eventsNamed("vp.duplicate_magic")), 20)
        self.assertEqual(sockets(self.directory), [good.identity])
        yield self.roundTrip(good, client, b"mine\n")
        self.assertClean(good)

    test_duplicateMagic.timeout = 20  # type: ignore[attr-defined]
