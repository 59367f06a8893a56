"""
Adapters that put the one fake scamper (L{tests.peer.ScamperPeer}) on a
connection to the daemon:

  - L{MemoryScamper}: straight onto a protocol of
    C{Controller.scamperFactory()} over a L{StringTransport}, the test
    driving every byte (deterministic, for the session tests);
  - L{PeerProtocol}: a Twisted L{Protocol} around a peer, for a real TCP
    or TLS connection (with a Deferred-based L{PeerProtocol.waitFor}),
    and for L{IOSimScamper}, the same protocol connected to a daemon
    protocol through L{twisted.test.iosim} (deterministic, with the
    controller's clock).

Every adapter feeds what the daemon writes to the peer and writes what
the peer sends of its own accord (ACKs, retransmissions after
MASTER_OK, CHANNEL_FIN in return), so the ACK and sequence logic exists
once, in the peer.
"""

from typing import Callable, List, Optional

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

from sc_remoted.wire import Frame

from .peer import DEFAULT_MAGIC, Event, ScamperPeer


def tcpAddress(host: str, port: int):
    """The address of a TCP end: IPv6 if C{host} has a colon."""
    if ":" in host:
        return IPv6Address("TCP", host, port)
    return IPv4Address("TCP", host, port)


class _PeerSender:
    """
    What every adapter offers on top of C{send}: the peer's frames, sent.
    Subclasses define C{send(data)} and C{peer}.
    """

    peer: ScamperPeer
    _connection: Optional[int] = None

    def send(self, data: bytes) -> None:  # pragma: no cover (abstract)
        raise NotImplementedError()

    def register(self, monitorname: object = "default", magic: Optional[bytes] = None) -> None:
        """MASTER_NEW, as scamper opens a session."""
        data = self.peer.masterNew(monitorname, magic)
        self._connection = self.peer.connections
        self.send(data)

    def resume(self, rcvNxt: Optional[int] = None, sndUna: Optional[int] = None, sndNxt: Optional[int] = None) -> None:
        """MASTER_RES, with the peer's window unless told otherwise."""
        data = self.peer.masterRes(rcvNxt, sndUna, sndNxt)
        self._connection = self.peer.connections
        self.send(data)

    def _peerLost(self) -> None:
        """
        This connection ended: the peer is told, unless it has already
        opened a newer one (a takeover, or a resume before the old
        connection's end was noticed).
        """
        if self._connection is None or self._connection == self.peer.connections:
            self.peer.connectionLost()

    def sendData(self, channel: int, payload: bytes) -> None:
        self.send(self.peer.data(channel, payload))

    def sendFin(self, channel: int) -> None:
        self.send(self.peer.finish(channel))

    def sendKeepalive(self) -> None:
        self.send(self.peer.keepalive())

    def ack(self, count: Optional[int] = None) -> None:
        """Send the ACKs owed (with C{autoAck} off)."""
        self.send(self.peer.ack(count))

    @property
    def violations(self) -> List[str]:
        return self.peer.violations


class MemoryScamper(_PeerSender):
    """
    The scamper end of one TCP connection to the controller, over a
    L{StringTransport}: bytes in through L{send}, the daemon's bytes out
    through L{received} (frames) or L{receivedBytes}.  Both hand the
    daemon's bytes to the peer first and then write whatever the peer
    answers of its own accord.

    @param peer: the scamper this connection belongs to (a resume passes
        the peer of the lost connection); a new L{ScamperPeer} made with
        C{magic}, C{monitorname} and C{autoAck} otherwise.  C{autoAck} is
        off by default here: the session tests say when ACKs go.
    @ivar frozen: while true, the link passes nothing either way: what
        the daemon writes is lost, and so is what the peer sends.
    """

    def __init__(
        self,
        controller,
        host: str = "127.0.0.1",
        port: int = 42694,
        peer: Optional[ScamperPeer] = None,
        magic: bytes = DEFAULT_MAGIC,
        monitorname: Optional[str] = None,
        autoAck: bool = False,
        factory=None,
    ) -> None:
        self.peer = peer if peer is not None else ScamperPeer(magic, monitorname, autoAck=autoAck)
        address = tcpAddress(host, port)
        self.transport = StringTransport(peerAddress=address)
        factory = factory if factory is not None else controller.scamperFactory()
        self.protocol = factory.buildProtocol(address)
        self.protocol.makeConnection(self.transport)
        self.lost = False
        self.frozen = False

    def send(self, data: bytes) -> None:
        """scamper's bytes reach the daemon (one read)."""
        if not self.frozen:
            self.protocol.dataReceived(data)

    def receivedBytes(self) -> bytes:
        """What the daemon wrote since the last call, also given to the peer."""
        data = self.transport.value()
        self.transport.clear()
        self._deliver(data)
        return data

    def receivedEvents(self) -> List[Event]:
        """What the daemon wrote since the last call, as the peer's events."""
        data = self.transport.value()
        self.transport.clear()
        return self._deliver(data)

    def pump(self) -> bool:
        """Hand the daemon's bytes to the peer; whether there were any."""
        data = self.transport.value()
        self.receivedEvents()
        return bool(data)

    def received(self) -> List[Frame]:
        """The frames the daemon wrote since the last call."""
        return [event.frame for event in self.receivedEvents()]

    def _deliver(self, data: bytes) -> List[Event]:
        if self.frozen:
            return []
        events = self.peer.receive(data)
        answer = self.peer.takeOutput()
        if answer and not self.closed:
            self.send(answer)
        return events

    def discard(self) -> bytes:
        """
        Lose what the daemon wrote since the last read, as a link that
        dies with bytes in flight does: the peer never sees them.
        """
        data = self.transport.value()
        self.transport.clear()
        return data

    @property
    def closed(self) -> bool:
        """The daemon closed (or aborted) the connection."""
        return bool(self.transport.disconnecting)

    def lose(self, reset: bool = False) -> None:
        """The TCP connection ends (FIN, or RST with C{reset})."""
        if self.lost:
            return
        self.lost = True
        self.transport.disconnecting = True
        self._peerLost()
        reason = ConnectionLost() if reset else ConnectionDone()
        self.protocol.connectionLost(Failure(reason))


@implementer(IHandshakeListener)
class PeerProtocol(Protocol, _PeerSender):
    """
    A peer on a Twisted connection: TCP or TLS on a real reactor, or
    iosim.  On C{connectionMade} it opens the session as C{opening} says:
    C{"new"}, MASTER_NEW; C{"resume"}, MASTER_RES; L{None}, nothing; or a
    callable, called with the protocol.

    @ivar lost: fires (with L{None}) when the connection is gone.
    @ivar lostReason: why, once it is.
    @ivar frozen: while true, the link passes nothing either way: what
        the daemon sends is lost, and so is what the peer sends.
    @ivar serverCertificate: the daemon's certificate, after a TLS handshake.
    """

    def __init__(self, peer: Optional[ScamperPeer] = None, opening: object = "new", clock=None) -> None:
        self.peer = peer if peer is not None else ScamperPeer()
        self.opening = opening
        self.frozen = False
        self.lost: defer.Deferred = defer.Deferred()
        self.lostReason: Optional[Failure] = None
        self.serverCertificate = None
        self.address: object = None
        self._clock = clock
        self._waiters: List[tuple] = []

    # Connection --------------------------------------------------------

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.address = self.transport.getHost()
        if self.opening == "new":
            self.register()
        elif self.opening == "resume":
            self.resume()
        elif callable(self.opening):
            self.opening(self)

    @property
    def identity(self) -> Optional[str]:
        """The MASTER_ID string, once registered."""
        return self.peer.identity

    def handshakeCompleted(self) -> None:
        self.serverCertificate = self.transport.getPeerCertificate().to_cryptography()  # type: ignore[union-attr]

    def send(self, data: bytes) -> None:
        if data and not self.frozen and self.transport is not None:
            self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        if self.frozen:
            return
        events = self.peer.receive(data)
        self.send(self.peer.takeOutput())
        self.eventsReceived(events)
        self._check()

    def eventsReceived(self, events: List[Event]) -> None:
        """A hook: what one read from the daemon meant."""

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self._peerLost()
        self.lostReason = reason
        self._check()
        waiters, self._waiters = self._waiters, []
        for _, _, d in waiters:
            d.errback(reason)
        self.lost.callback(None)

    # Waiting -----------------------------------------------------------

    def waitFor(self, condition: Callable[[], object], what: str = "a condition", timeout: float = 10) -> defer.Deferred:
        """
        Fire once C{condition()} holds, checked now and after every read;
        fail if the connection is lost first, or after C{timeout} seconds
        on the reactor (0: no timeout, for iosim).
        """
        if condition():
            return defer.succeed(None)
        if self.lostReason is not None:
            return defer.fail(self.lostReason)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((condition, what, d))
        if timeout:
            clock = self._clock
            if clock is None:
                from twisted.internet import reactor as clock
            d.addTimeout(timeout, clock)
        return d

    def _check(self) -> None:
        for waiter in list(self._waiters):
            condition, _, d = waiter
            if not d.called and condition():
                self._waiters.remove(waiter)
                d.callback(None)
        self._waiters = [w for w in self._waiters if not w[2].called]


class IOSimScamper(_PeerSender):
    """
    A L{PeerProtocol} connected through L{iosim} to a daemon protocol that
    C{factory} (a scamper factory, perhaps wrapped in TLS) builds, as if
    over TCP from C{host:port}.  L{flush} moves bytes both ways until
    neither side has more (L{pump} says whether anything moved); the
    controller's C{clock} runs in step.
    """

    def __init__(
        self,
        factory,
        clock,
        peer: Optional[ScamperPeer] = None,
        opening: object = "new",

        host: str = "127.0.0.1",
        port: int = 42694,
        protocol: Optional[PeerProtocol] = None,
    ) -> None:
        self.protocol = protocol if protocol is not None else PeerProtocol(peer, opening, clock)
        self.peer = self.protocol.peer
        address = tcpAddress(host, port)
        daemonAddress = tcpAddress("127.0.0.1", 41001)
        self.server = factory.buildProtocol(address)
        self.serverTransport = iosim.FakeTransport(self.server, True, daemonAddress, address)
        self.clientTransport = iosim.FakeTransport(self.protocol, False, address, daemonAddress)
        self.iopump = iosim.connect(self.server, self.serverTransport, self.protocol, self.clientTransport, clock=clock)

    def send(self, data: bytes) -> None:
        self.protocol.send(data)
        self.flush()

    def flush(self) -> None:
        self.iopump.flush()

    def pump(self) -> bool:
        """Move bytes both ways until both sides are quiet; whether any moved."""
        return self.iopump.flush()

    @property
    def frozen(self) -> bool:
        return self.protocol.frozen

    @frozen.setter
    def frozen(self, value: bool) -> None:
        self.protocol.frozen = value

    @property
    def closed(self) -> bool:
        return self.protocol.lostReason is not None

    def lose(self) -> None:
        """The peer drops the connection; the daemon sees it at once."""
        self.clientTransport.loseConnection()
        self.flush()
