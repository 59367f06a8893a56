"""
Tests for the session logic: L{Controller}, L{VantagePoint},
L{ScamperProtocol} and L{LocalChannel} together, over in-memory
transports and a fake clock.
"""

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from sc_remoted import wire
from sc_remoted.engine import KEEPALIVE_INTERVAL, REGISTRATION_TIMEOUT, SILENCE_TIMEOUT
from sc_remoted.wire import Frame, encodeAck, encodeFrame

from .fakes import FakeClient, makeController
from .peer_twisted import MemoryScamper

MAGIC = b"\x01\x02\x03\x04\x05\x06\x07\x08"
OTHER_MAGIC = b"\x11\x12\x13\x14\x15\x16\x17\x18"


class SessionTestCase(SynchronousTestCase):
    """Shared set-up: a controller and one registered scamper."""

    zombieTime = 900

    def setUp(self):
        self.controller = makeController(zombieTime=self.zombieTime)
        self.reactor = self.controller.reactor
        self.scamper = self.register(MAGIC)

    def register(self, magic, port=42694, monitorname=None):
        scamper = MemoryScamper(self.controller, port=port, magic=magic, monitorname=monitorname)
        scamper.register()
        scamper.received()
        return scamper

    def reconnect(self, port, scamper=None):
        """A new connection of the same scamper (C{self.scamper} by default)."""
        return MemoryScamper(self.controller, port=port, peer=(scamper or self.scamper).peer)

    def openClient(self, name="127.0.0.1:42694"):
        """A client connects; scamper acknowledges the CHANNEL_NEW."""
        client = FakeClient(self.reactor, name)
        [new] = self.scamper.received()
        self.assertEqual(self.scamper.peer.owed, [new.seq])
        self.scamper.ack()
        return client

    def tearDown(self):
        self.assertEqual(self.scamper.violations, [])


class RegistrationTests(SessionTestCase):
    def test_socketAndMasterId(self):
        """MASTER_NEW makes the socket, mode 0700, and gets MASTER_ID."""
        scamper = MemoryScamper(self.controller, port=50000, magic=OTHER_MAGIC)
        scamper.register()
        self.assertEqual(scamper.receivedBytes(), wire.encodeMasterId("127.0.0.1:50000"))
        self.assertEqual(scamper.peer.identity, "127.0.0.1:50000")
        port = self.reactor.sockets["/sockets/127.0.0.1:50000"]
        self.assertEqual(port.mode, 0o700)

    def test_monitorname(self):
        """With C{-M}, the socket is C{name-peer}; MASTER_ID is the peer only."""
        scamper = MemoryScamper(self.controller, port=52998, magic=OTHER_MAGIC, monitorname="testvp")
        scamper.register()
        self.assertEqual(scamper.receivedBytes(), wire.encodeMasterId("127.0.0.1:52998"))
        self.assertIn("testvp-127.0.0.1:52998", self.reactor.socketNames())

    def test_ipv6Naming(self):
        """IPv6 peers are C{address.port}, no brackets."""
        scamper = MemoryScamper(self.controller, host="2001:db8::1", port=1026, magic=OTHER_MAGIC)
        scamper.register()
        self.assertEqual(scamper.receivedBytes(), wire.encodeMasterId("2001:db8::1.1026"))
        self.assertIn("2001:db8::1.1026", self.reactor.socketNames())

    def test_registeredEvent(self):
        with capturedLogs() as events:
            self.register(OTHER_MAGIC, port=50001, monitorname="vp1")
        [event] = [e for e in events if e.get("sc_event") == "vp.registered"]
        self.assertEqual(event["vp"], "vp1-127.0.0.1:50001")
        self.assertEqual(event["monitorname"], "vp1")

    def test_socketPathTooLong(self):
        """A name that cannot be a socket path costs only that connection."""
        scamper = MemoryScamper(self.controller, port=50002, magic=OTHER_MAGIC, monitorname="x" * 120)
        with capturedLogs() as events:
            scamper.register()
        self.assertTrue(scamper.closed)
        self.assertEqual(scamper.received(), [])
        self.assertEqual([vp.name for vp in self.controller.vantagePoints()], ["127.0.0.1:42694"])
        self.assertTrue(any(e.get("sc_event") == "vp.socket_error" for e in events))

    def test_twoFramesInOneRead(self):
        """MASTER_NEW and a KEEPALIVE in one segment are both handled."""
        scamper = MemoryScamper(self.controller, port=50003, magic=OTHER_MAGIC)
        scamper.send(scamper.peer.masterNew() + scamper.peer.keepalive())
        self.assertFalse(scamper.closed)
        self.assertEqual(len(scamper.received()), 1)


class RelayTests(SessionTestCase):
    def test_clientToScamper(self):
        """Client bytes become acked data frames, numbered after CHANNEL_NEW."""
        client = FakeClient(self.reactor, "127.0.0.1:42694")
        client.write(b"ping -c 1 127.0.0.1\n")
        self.assertEqual(
            self.scamper.received(),
            [
                Frame(0, 0, wire.channelNewPayload(1)),
                Frame(1, 1, b"ping -c 1 127.0.0.1\n"),
            ],
        )

    def test_scamperToClient(self):
        """scamper's data is ACKed with our next seq and relayed unchanged."""
        client = self.openClient()
        peer = self.scamper.peer
        self.scamper.send(peer.data(1, b"MORE\n") + peer.data(1, b"DATA 52\n"))
        self.assertEqual(client.read(), b"MORE\nDATA 52\n")
        self.assertEqual(
            self.scamper.receivedBytes(), encodeAck(1, 0) + encodeAck(1, 1)
        )
        self.assertEqual(peer.unacked, [])

    def test_largeWriteSplit(self):
        """A write larger than a frame holds is cut into equal frames."""
        client = self.openClient()
        data = bytes(range(256)) * 300
        client.write(data)
        frames = self.scamper.received()
        self.assertEqual([len(f.payload) for f in frames], [38400, 38400])
        self.assertEqual([f.seq for f in frames], [1, 2])
        client.write(data[:65536])
        self.assertEqual([len(f.payload) for f in self.scamper.received()], [32768, 32768])
        self.assertEqual(b"".join(f.payload for f in frames), data)

    def test_twoClients(self):
        """Each client gets its own channel and only its own data."""
        first = self.openClient()
        second = FakeClient(self.reactor, "127.0.0.1:42694")
        self.assertEqual(self.scamper.received(), [Frame(1, 0, wire.channelNewPayload(2))])
        self.scamper.ack()
        peer = self.scamper.peer
        self.scamper.send(peer.data(2, b"two") + peer.data(1, b"one"))
        self.assertEqual(first.read(), b"one")
        self.assertEqual(second.read(), b"two")

    def test_clientHalfClose(self):
        """
        Client EOF sends CHANNEL_FIN; results still reach the client; on
        scamper's CHANNEL_FIN the client is closed and we send no FIN.
        """
        client = self.openClient()
        client.shutdownWrite()
        self.assertEqual(self.scamper.received(), [Frame(1, 0, wire.channelFinPayload(1))])
        self.scamper.ack()
        self.scamper.sendData(1, b"late\n")
        self.assertEqual(client.read(), b"late\n")
        self.assertFalse(client.gotEOF)
        self.scamper.received()
        self.scamper.sendFin(1)
        self.assertEqual(self.scamper.received(), [Frame(2, 0, encodeAck(2, 1)[10:])])
        self.assertTrue(client.gotEOF)
        self.assertEqual(self.controller.vantagePoints()[0].session.channels, {})

    def test_scamperFinFirst(self):
        """scamper's FIN alone closes the client; no FIN goes back."""
        client = self.openClient()
        self.scamper.sendFin(1)
        self.assertTrue(client.gotEOF)
        client.close()
        self.assertEqual(self.scamper.received(), [Frame(1, 0, encodeAck(1, 0)[10:])])

    def test_clientGoneDataDropped(self):
        """After a client vanishes, data for its channel is ACKed and dropped."""
        client = self.openClient()
        client.close()
        self.assertEqual(self.scamper.received(), [Frame(1, 0, wire.channelFinPayload(1))])
        self.scamper.sendData(1, b"result")
        self.assertFalse(self.scamper.closed)
        self.assertEqual(client.read(), b"")
        self.assertEqual(self.scamper.receivedBytes(), encodeAck(2, 0))


class ProtocolErrorTests(SessionTestCase):
    def test_errorCostsOnlyThatSession(self):
        """
        A sequence error frees that VP at once (no zombie) and closes its
        clients; another VP and its client carry on.
        """
        other = self.register(OTHER_MAGIC, port=50000)
        otherClient = FakeClient(self.reactor, "127.0.0.1:50000")
        client = self.openClient()
        with capturedLogs() as events:
            self.scamper.send(encodeFrame(5, 1, b"x"))
        self.assertTrue(self.scamper.closed)
        self.assertTrue(client.gotEOF)
        self.assertNotIn("127.0.0.1:42694", self.reactor.socketNames())
        [error] = [e for e in events if e.get("sc_event") == "scamper.protocol_error"]
        self.assertEqual(error["peer"], "127.0.0.1:42694")
        self.assertEqual(error["reason"], "got seq 5 expected 0")
        self.assertEqual([vp.magic for vp in self.controller.vantagePoints()], [OTHER_MAGIC])
        otherClient.write(b"still here\n")
        self.assertEqual(other.received()[-1], Frame(1, 1, b"still here\n"))
        self.assertFalse(otherClient.gotEOF)

    def test_resumeAfterErrorRejected(self):
        """No zombie is kept after a protocol error: MASTER_RES gets REJ."""
        self.scamper.send(encodeAck(0, 0))  # nothing is outstanding
        self.assertTrue(self.scamper.closed)
        self.scamper.lose()
        again = self.reconnect(50000)
        again.resume()
        self.assertEqual(again.receivedBytes(), wire.encodeMasterRej())
        self.assertTrue(again.closed)
        self.assertFalse(again.peer.established)


class ZombieTests(SessionTestCase):
    zombieTime = 20

    def test_zombieQueuesAndResumes(self):
        """
        While a zombie, the socket is gone, clients stay and their writes
        are queued; after MASTER_OK they are retransmitted in order and the
        socket reappears under the new peer name.
        """
        client = self.openClient()
        client.write(b"ping -c 1 127.0.0.1\n")
        self.scamper.discard()  # lost with the connection
        self.scamper.lose(reset=True)
        self.assertEqual(self.reactor.socketNames(), [])
        client.write(b"ping -c 1 127.0.0.2\n")
        self.assertFalse(client.gotEOF)
        resumed = self.reconnect(50958)
        resumed.resume()
        self.assertEqual(
            resumed.received(),
            [
                Frame(0, 0, wire.encodeMasterOk(0)[10:]),
                Frame(1, 1, b"ping -c 1 127.0.0.1\n"),
                Frame(2, 1, b"ping -c 1 127.0.0.2\n"),
            ],
        )
        self.assertEqual(self.reactor.socketNames(), ["127.0.0.1:50958"])
        peer = resumed.peer
        resumed.send(peer.ack() + peer.data(1, b"OK id-1\n"))
        self.assertEqual(client.read(), b"OK id-1\n")
        self.assertEqual(self.controller.vantagePoints()[0].session.resumes, 1)

    def test_expiry(self):
        """An unresumed zombie is freed after the zombie time; clients get EOF."""
        client = self.openClient()
        self.scamper.lose()
        self.reactor.advance(self.zombieTime - 0.5)
        self.assertFalse(client.gotEOF)
        self.reactor.advance(0.5)
        self.assertTrue(client.gotEOF)
        self.assertEqual(self.controller.vantagePoints(), [])

    def test_resumeCancelsExpiry(self):
        self.scamper.lose()
        resumed = self.reconnect(50958)
        resumed.resume()
        self.reactor.advance(self.zombieTime * 2)
        self.assertEqual(len(self.controller.vantagePoints()), 1)
        self.assertFalse(resumed.closed)

    def test_takeover(self):
        """A MASTER_RES while the old connection lives replaces it."""
        resumed = self.reconnect(50958)
        resumed.resume()
        self.assertEqual(resumed.receivedBytes(), wire.encodeMasterOk(0))
        self.assertTrue(self.scamper.closed)
        self.scamper.lose()
        self.assertEqual(self.reactor.socketNames(), ["127.0.0.1:50958"])
        self.assertIs(self.controller.vantagePoints()[0].connection, resumed.protocol)

    def test_newSessionReplacesZombie(self):
        """
        Deliberate deviation from C: MASTER_NEW with a zombie's magic
        (the 20211212 scamper after MASTER_REJ) replaces the zombie.
        """
        client = self.openClient()
        self.scamper.lose()
        again = self.reconnect(50958)
        again.register()
        self.assertEqual(again.receivedBytes(), wire.encodeMasterId("127.0.0.1:50958"))
        self.assertTrue(client.gotEOF)
        [vp] = self.controller.vantagePoints()
        self.assertEqual((vp.name, vp.session.sndNxt, vp.session.rcvNxt), ("127.0.0.1:50958", 0, 0))

    def test_liveMagicRefused(self):
        """MASTER_NEW with a live session's magic is closed silently, as in C."""
        again = MemoryScamper(self.controller, port=50958, magic=MAGIC)
        again.register()
        self.assertTrue(again.closed)
        self.assertEqual(again.received(), [])
        self.assertFalse(self.scamper.closed)


class NoZombieTests(SessionTestCase):
    zombieTime = 0

    def test_freedAtOnce(self):
        client = self.openClient()
        self.scamper.lose()
        self.assertTrue(client.gotEOF)
        self.assertEqual(self.controller.vantagePoints(), [])


class TimerTests(SessionTestCase):
    def test_keepaliveAfterSendSilence(self):
        """KEEPALIVE 30 s after our last send, carrying snd_nxt."""
        self.reactor.advance(KEEPALIVE_INTERVAL - 1)
        self.scamper.sendKeepalive()
        self.assertEqual(self.scamper.received(), [])
        self.reactor.advance(1)
        self.assertEqual(self.scamper.receivedBytes(), wire.encodeKeepalive(0))
        self.reactor.advance(KEEPALIVE_INTERVAL)
        self.assertEqual(self.scamper.receivedBytes(), wire.encodeKeepalive(0))

    def test_sendingDelaysKeepalive(self):
        client = self.openClient()
        self.reactor.advance(20)
        client.write(b"x")
        self.scamper.received()
        self.reactor.advance(KEEPALIVE_INTERVAL - 1)
        self.assertEqual(self.scamper.received(), [])
        self.reactor.advance(1)
        self.assertEqual(self.scamper.receivedBytes(), wire.encodeKeepalive(2))

    def test_silenceMakesZombie(self):
        """60 s without a byte from scamper drops the connection; VP kept."""
        self.reactor.advance(SILENCE_TIMEOUT - 1)
        self.assertFalse(self.scamper.closed)
        self.scamper.sendKeepalive()
        self.reactor.advance(SILENCE_TIMEOUT - 1)
        self.assertFalse(self.scamper.closed)
        with capturedLogs() as events:
            self.reactor.advance(1)
        self.assertTrue(self.scamper.closed)
        self.assertEqual(self.reactor.socketNames(), [])
        [vp] = self.controller.vantagePoints()
        self.assertIsNone(vp.connection)
        self.assertTrue(any(e.get("sc_event") == "vp.zombie" for e in events))
        self.scamper.lose()
        self.assertEqual(len(self.controller.vantagePoints()), 1)

    def test_registrationDeadline(self):
        """A connection that has not registered 30 s after accept is closed."""
        idle = MemoryScamper(self.controller, port=50000)
        idle.send(b"\x00\x00\x00")  # a third of a header
        self.reactor.advance(REGISTRATION_TIMEOUT - 0.1)
        self.assertFalse(idle.closed)
        self.reactor.advance(0.1)
        self.assertTrue(idle.closed)
        self.assertEqual(len(self.controller.vantagePoints()), 1)

    def test_timerStopsWithConnection(self):
        self.scamper.lose()
        self.assertEqual(
            [c for c in self.reactor.getDelayedCalls() if c.active() and "Protocol" in repr(c.func)],
            [],
        )


class RecordingObserver:
    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        if name.startswith("vantagePoint"):
            return lambda vp: self.events.append((name[len("vantagePoint"):], vp.name))
        raise AttributeError(name)


class ObserverTests(SessionTestCase):
    zombieTime = 10

    def test_lifecycleEvents(self):
        """Observers see arrival, disconnection, resume and departure in order."""
        observer = RecordingObserver()
        self.controller.addObserver(observer)
        scamper = self.register(OTHER_MAGIC, port=50000, monitorname="vp2")
        scamper.lose()
        resumed = self.reconnect(50001, scamper)
        resumed.resume()
        resumed.lose()
        self.reactor.advance(self.zombieTime)
        self.assertEqual(
            observer.events,
            [
                ("Arrived", "vp2-127.0.0.1:50000"),
                ("Disconnected", "vp2-127.0.0.1:50000"),
                ("Resumed", "vp2-127.0.0.1:50001"),
                ("Disconnected", "vp2-127.0.0.1:50001"),
                ("Departed", "vp2-127.0.0.1:50001"),
            ],
        )

    def test_failingObserverIsolated(self):
        """An observer that raises is logged; the others are still told."""

        class Broken:
            def vantagePointArrived(self, vp):
                raise RuntimeError("broken observer")

        observer = RecordingObserver()
        self.controller.addObserver(Broken())
        self.controller.addObserver(observer)
        self.register(OTHER_MAGIC, port=50000)
        self.assertEqual(observer.events, [("Arrived", "127.0.0.1:50000")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_counters(self):
        client = self.openClient()
        client.write(b"abc")
        self.scamper.sendData(1, b"hello")
        vp = self.controller.vantagePoints()[0]
        self.assertEqual((vp.session.framesOut, vp.session.bytesOut), (2, 5 + 3))
        self.assertEqual((vp.session.framesIn, vp.session.bytesIn), (2, 5 + 5))


class EarlyHeaderTests(SessionTestCase):
    """A frame is refused as soon as its header is wrong, as in C."""

    def test_wrongSeqBeforePayload(self):
        self.scamper.send(encodeFrame(9, 0, b"x" * 1000)[:10])
        self.assertTrue(self.scamper.closed)

    def test_unknownChannelBeforePayload(self):
        self.scamper.send(encodeFrame(0, 7, b"x" * 1000)[:12])
        self.assertTrue(self.scamper.closed)

    def test_goodHeaderWaits(self):
        self.openClient()
        self.scamper.send(encodeFrame(0, 1, b"x" * 1000)[:12])
        self.assertFalse(self.scamper.closed)

    def test_beforeRegistration(self):
        scamper = MemoryScamper(self.controller, port=50000, magic=OTHER_MAGIC)
        scamper.send(scamper.peer.masterNew()[:10].replace(b"\0\0\0\0", b"\0\0\0\1", 1))
        self.assertTrue(scamper.closed)
