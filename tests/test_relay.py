"""
The relay between a local client and scamper, written once
(L{RelayTestsMixin}) and run over every way the two ends can be
connected (docs/protocol.rst 3.6, 3.9, 5.6 to 5.8; docs/mux.rst):

  - L{LocalClientRelayTests}: a client of the per-VP UNIX socket
    (L{sc_remoted.local}), scamper on a StringTransport;
  - L{MuxClientRelayTests}: a channel of a mux client
    (L{sc_remoted.mux.client} to L{sc_remoted.mux.server.MuxFactory},
    through iosim), scamper on a StringTransport;
  - L{TCPScamperRelayTests}: scamper over TCP (a L{PeerProtocol} through
    iosim), a per-VP socket client;
  - L{TLSScamperRelayTests}: scamper over TLS on a real 127.0.0.1
    connection, a client on the real UNIX socket.

scamper is the suite's one fake scamper (L{tests.peer.ScamperPeer}),
which checks every sequence number and ACK the daemon sends.  The first
three run on the controller's fake clock and move bytes only when told
(deterministic: a condition not met once everything has moved fails at
once); the TLS one waits, at most a few seconds, on the real reactor.
"""

import os
from typing import Callable, List, Optional

from twisted.internet import defer
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SkipTest, TestCase

from sc_remoted.controller import Controller
from sc_remoted.mux.client import MuxClientProtocol
from sc_remoted.mux.server import MuxFactory

from .fakes import FakeClient, SocketsReactor
from .peer import ChannelFinished, ScamperPeer
from .peer_twisted import IOSimScamper, MemoryScamper, PeerProtocol
from .realprocs import waitFor
from .test_tls import TLSSessionMixin

MAGIC = b"relay-01"
MONITORNAME = "vp1"
# What a real scamper sends when a channel opens and for a result
# (docs/protocol.rst 4, the direct session): lines, then uuencoded warts.
RESULT = b"DATA 52\n" + b"M" + b"x" * 60 + b"\n" + b"`\n"

# How long the real-network variant waits for one condition.
REAL_TIMEOUT = 10.0


# Local ends --------------------------------------------------------------


class _Collector(Protocol):
    """What a client reads, and whether it has read end of file."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.reason: Optional[Failure] = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure) -> None:
        self.reason = reason

    @property
    def received(self) -> bytes:
        return bytes(self.data)

    @property
    def eof(self) -> bool:
        return self.reason is not None


class LocalEnd(FakeClient):
    """A client of a vantage point's UNIX socket, on a StringTransport."""

    halfCloses = True

    def __init__(self, reactor: SocketsReactor, name: str) -> None:
        super().__init__(reactor, name)
        self.received = b""
        self._gone = False

    def halfClose(self) -> None:
        self.shutdownWrite()

    @property
    def eof(self) -> bool:
        return self.gotEOF

    def pump(self) -> bool:
        data = self.read()
        self.received += data
        if self.gotEOF and not self._gone:
            # The reactor would now tell the protocol its connection is gone.
            self._gone = True
            self.protocol.connectionLost(Failure(ConnectionDone()))
            return True
        return bool(data)


class MuxEnd:
    """
    One channel of a L{MuxClientProtocol} connected through iosim to the
    daemon's mux.  A mux channel has no half-close: its client ends it
    with C{done} (docs/mux.rst 3.5).
    """

    halfCloses = False

    def __init__(self, factory: MuxFactory, clock, vpIdentifier: int) -> None:
        server = factory.buildProtocol(None)
        self.client = MuxClientProtocol()
        self.pumper = iosim.connect(
            server, iosim.makeFakeServer(server), self.client, iosim.makeFakeClient(self.client), clock=clock
        )
        self.collector = _Collector()
        self.channel = self.client.openChannel(vpIdentifier, self.collector)
        self.pumper.flush()

    def write(self, data: bytes) -> None:
        self.channel.write(data)

    received = property(lambda self: self.collector.received)
    eof = property(lambda self: self.collector.eof)

    def pump(self) -> bool:
        return self.pumper.flush()


class UNIXEnd(_Collector):
    """A client on the vantage point's real UNIX socket."""

    halfCloses = True

    def __init__(self) -> None:
        super().__init__()
        self.lost: defer.Deferred = defer.Deferred()

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self.lost.callback(None)

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def halfClose(self) -> None:
        self.transport.loseWriteConnection()


# The tests ---------------------------------------------------------------


class RelayTestsMixin:
    """
    The relay's behaviour.  A concrete class provides:

      - C{startDaemon()}: C{self.controller}, listening for scamper;
      - C{connectScamper(peer, opening)}: a new connection of C{peer}
        (a Deferred firing with the link: C{send}, C{frozen}), and
        C{dropScamper()} to lose it (a Deferred);
      - C{openClient()}: a Deferred firing with a local end
        (C{write}, C{halfClose}, C{received}, C{eof}, C{halfCloses});
      - C{until(condition, what)}: a Deferred that fires once
        C{condition()} holds, or fails.
    """

    controller: Controller
    until: Callable[[Callable[[], object], str], defer.Deferred]

    @defer.inlineCallbacks
    def setUp(self):
        yield self.startDaemon()
        self.peer = ScamperPeer(MAGIC, MONITORNAME)
        self.link = yield self.connectScamper(self.peer, "new")
        yield self.until(lambda: self.peer.established, "MASTER_ID")
        [self.vp] = self.controller.vantagePoints()
        self.client = yield self.openClient()
        yield self.until(lambda: self.peer.channels, "CHANNEL_NEW")
        self.channel = self.peer.lastChannel()
        self.addCleanup(self.assertNoViolations)

    def assertNoViolations(self):
        self.assertEqual(self.peer.violations, [])

    def scamperSends(self, *frames: bytes) -> None:
        """scamper writes C{frames} (from its peer) in one write."""
        self.link.send(b"".join(frames))

    def scamperGot(self, data: bytes) -> Callable[[], bool]:
        return lambda: self.peer.received(self.channel) == data

    def clientGot(self, data: bytes) -> Callable[[], bool]:
        return lambda: self.client.received == data

    @defer.inlineCallbacks
    def test_bothWays(self):
        """
        A client's bytes reach scamper on its channel, in order and
        unchanged, however large the write; scamper's data frames reach
        the client; every frame either side sent is acknowledged.
        """
        peer, channel = self.peer, self.channel
        self.client.write(b"ping -c 1 192.0.2.1\n")
        yield self.until(self.scamperGot(b"ping -c 1 192.0.2.1\n"), "the command at scamper")
        big = b"".join(b"trace 192.0.2.%d\n" % (n % 250,) for n in range(8000))
        self.client.write(big)
        yield self.until(self.scamperGot(b"ping -c 1 192.0.2.1\n" + big), "the large write at scamper")
        self.scamperSends(peer.data(channel, b"OK id-1\n"))
        self.scamperSends(peer.data(channel, b"MORE\n"), peer.data(channel, RESULT))
        yield self.until(self.clientGot(b"OK id-1\nMORE\n" + RESULT), "scamper's replies at the client")
        yield self.until(lambda: not peer.unacked and self.vp.session.unacked == 0, "every ACK")
        self.assertFalse(self.client.eof)

    @defer.inlineCallbacks
    def test_clientHalfClose(self):
        """
        The client's half-close becomes CHANNEL_FIN; results keep flowing
        to it; scamper's CHANNEL_FIN then ends it, and no second
        CHANNEL_FIN comes back (docs/protocol.rst 3.6, 5.8).
        """
        if not self.client.halfCloses:
            raise SkipTest("a mux channel has no half-close; its client sends done (docs/mux.rst 3.5)")
        peer, channel = self.peer, self.channel
        self.client.write(b"ping -c 1 192.0.2.1\n")
        self.client.halfClose()
        yield self.until(lambda: peer.channels[channel].daemonFinished, "CHANNEL_FIN at scamper")
        self.assertEqual(peer.received(channel), b"ping -c 1 192.0.2.1\n")
        self.scamperSends(peer.data(channel, b"OK id-1\n"))
        self.scamperSends(peer.data(channel, RESULT))
        yield self.until(self.clientGot(b"OK id-1\n" + RESULT), "the results after the half-close")
        self.assertFalse(self.client.eof)
        self.scamperSends(peer.finish(channel))
        yield self.until(lambda: self.client.eof, "end of file at the client")
        self.assertEqual(self.client.received, b"OK id-1\n" + RESULT)
        yield self.until(lambda: not peer.unacked, "the ACK of scamper's CHANNEL_FIN")
        finished = [e for e in peer.events if isinstance(e, ChannelFinished)]
        self.assertEqual(len(finished), 1)

    @defer.inlineCallbacks
    def test_scamperFinishes(self):
        """
        scamper's CHANNEL_FIN, after its data in writes of their own,
        gives the client all of the data, then end of file; no
        CHANNEL_FIN goes back to scamper.
        """
        peer, channel = self.peer, self.channel
        lines = [b"OK id-1\n", b"MORE\n", RESULT, b"DATA 28\n", b"M" + b"y" * 26 + b"\n"]
        for line in lines:
            self.scamperSends(peer.data(channel, line))
        yield self.until(self.clientGot(b"".join(lines)), "the data at the client")
        self.assertFalse(self.client.eof)
        self.scamperSends(peer.finish(channel))
        yield self.until(lambda: self.client.eof, "end of file at the client")
        self.assertEqual(self.client.received, b"".join(lines))
        yield self.until(lambda: not peer.unacked, "every ACK")
        self.assertFalse(peer.channels[channel].daemonFinished)

    @defer.inlineCallbacks
    def test_dataAndFinInOneRead(self):
        """
        Data and the CHANNEL_FIN that follows it, in one write from
        scamper (one read at the daemon): the client gets every byte,
        then end of file.
        """
        peer, channel = self.peer, self.channel
        self.scamperSends(
            peer.data(channel, b"OK id-1\n"),
            peer.data(channel, RESULT),
            peer.data(channel, b"DATA 28\n"),
            peer.finish(channel),
        )
        yield self.until(lambda: self.client.eof, "end of file at the client")
        self.assertEqual(self.client.received, b"OK id-1\n" + RESULT + b"DATA 28\n")
        yield self.until(lambda: not peer.unacked, "every ACK")
        self.assertFalse(peer.channels[channel].daemonFinished)

    @defer.inlineCallbacks
    def test_resume(self):
        """
        The scamper connection drops with frames in flight both ways,
        and the client writes while its vantage point is a zombie; after
        scamper resumes, both sides send what the other is missing again,
        and nothing is lost or duplicated (docs/protocol.rst 3.9, 5.6).
        """
        peer, channel = self.peer, self.channel
        self.client.write(b"ping -c 1 192.0.2.1\n")
        yield self.until(self.scamperGot(b"ping -c 1 192.0.2.1\n"), "the first command at scamper")
        yield self.until(lambda: self.vp.session.unacked == 0, "its ACK")
        # The link stops passing bytes: the daemon's next frame and
        # scamper's reply are lost in it.
        self.link.frozen = True
        self.client.write(b"ping -c 1 192.0.2.2\n")
        yield self.until(lambda: self.vp.session.unacked == 1, "the daemon to send the second command")
        self.scamperSends(peer.data(channel, b"OK id-1\n"))
        self.assertEqual(peer.unacked, [0])
        yield self.dropScamper()
        yield self.until(lambda: self.vp.connection is None, "the vantage point to become a zombie")
        # Queued by the zombie.
        self.client.write(b"ping -c 1 192.0.2.3\n")
        self.link = yield self.connectScamper(peer, "resume")
        yield self.until(lambda: peer.established and peer.resumes == 1, "MASTER_OK")
        commands = b"ping -c 1 192.0.2.1\nping -c 1 192.0.2.2\nping -c 1 192.0.2.3\n"
        yield self.until(self.scamperGot(commands), "every command at scamper, once")
        yield self.until(self.clientGot(b"OK id-1\n"), "the lost reply at the client")
        self.scamperSends(peer.data(channel, b"OK id-2\n"), peer.data(channel, b"OK id-3\n"))
        yield self.until(self.clientGot(b"OK id-1\nOK id-2\nOK id-3\n"), "the replies after the resume")
        yield self.until(lambda: not peer.unacked and self.vp.session.unacked == 0, "every ACK")
        self.assertEqual(peer.received(channel), commands)
        self.assertEqual(self.vp.session.resumes, 1)
        self.assertEqual(self.controller.vantagePoints(), [self.vp])
        self.assertFalse(self.client.eof)


# Deterministic transports -------------------------------------------------


class DeterministicMixin:
    """
    The controller on a L{SocketsReactor} (a fake clock that records the
    UNIX sockets); C{until} moves every byte, then checks once.
    """

    def startDaemon(self):
        self.reactor = SocketsReactor()
        self.controller = Controller(self.reactor, "/sockets")
        self.addCleanup(self.controller.stopService)
        self.ends: List = []

    def pump(self) -> None:
        for _ in range(1000):
            if not any([end.pump() for end in self.ends]):
                return
        raise AssertionError("the ends keep talking")  # pragma: no cover

    def until(self, condition, what):
        self.pump()
        if condition():
            return defer.succeed(None)
        return defer.fail(AssertionError("no %s once every byte had moved" % (what,)))

    def attach(self, end):
        """One more end to move bytes for (a scamper link, a client)."""
        self.ends.append(end)
        self.pump()
        return defer.succeed(end)

    def openClient(self):
        return self.attach(LocalEnd(self.reactor, self.vp.name))


class MemoryScamperMixin(DeterministicMixin):
    """scamper on a StringTransport straight to the daemon's protocol."""

    _ports = iter(range(42000, 43000))

    def connectScamper(self, peer, opening):
        link = MemoryScamper(self.controller, port=next(self._ports), peer=peer)
        if opening == "new":
            link.register()
        else:
            link.resume()
        return self.attach(link)

    def dropScamper(self):
        self.ends.remove(self.link)
        self.link.lose(reset=True)
        return defer.succeed(None)


class LocalClientRelayTests(RelayTestsMixin, MemoryScamperMixin, TestCase):
    """A client of the vantage point's UNIX socket (L{sc_remoted.local})."""


class MuxClientRelayTests(RelayTestsMixin, MemoryScamperMixin, TestCase):
    """A channel of a mux client (L{sc_remoted.mux})."""

    def openClient(self):
        factory = MuxFactory(self.controller)
        return self.attach(MuxEnd(factory, self.reactor, self.vp.identifier))


class TCPScamperRelayTests(RelayTestsMixin, DeterministicMixin, TestCase):
    """scamper's connection as a Twisted protocol over TCP, simulated by iosim."""

    _ports = iter(range(43000, 44000))

    def connectScamper(self, peer, opening):
        link = IOSimScamper(
            self.controller.scamperFactory(), self.reactor, peer=peer, opening=opening, port=next(self._ports)
        )
        return self.attach(link)

    def dropScamper(self):
        self.ends.remove(self.link)
        self.link.lose()
        return defer.succeed(None)


# TLS on the real reactor ---------------------------------------------------


class TLSScamperRelayTests(RelayTestsMixin, TLSSessionMixin, TestCase):
    """
    scamper over TLS (no SNI, the daemon's certificate checked) on
    127.0.0.1, a client on the real UNIX socket.
    """

    timeout = 60
    zombieTime = 900

    def startDaemon(self):
        from twisted.internet import reactor

        self.reactor = reactor
        self.startServer()

    def until(self, condition, what):
        return waitFor(self.reactor, condition, REAL_TIMEOUT, what, interval=0.005)

    @defer.inlineCallbacks
    def connectScamper(self, peer, opening):
        protocol = PeerProtocol(peer, opening)
        yield self.connect(protocol)
        return protocol

    def dropScamper(self):
        """An abort (RST) from scamper's side."""
        self.link.transport.abortConnection()
        return self.link.lost

    @defer.inlineCallbacks
    def openClient(self):
        end = UNIXEnd()
        self.connections.append(end)
        path = os.path.join(self.sockets, self.vp.name)
        yield connectProtocol(UNIXClientEndpoint(self.reactor, path, timeout=5), end)
        return end

    def test_overTLS(self):
        """The session really is TLS: scamper checked the daemon's certificate."""
        self.assertEqual(self.link.serverCertificate, self.files.server.certificate)
