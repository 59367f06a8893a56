"""
A stateful property test (hypothesis C{RuleBasedStateMachine}) of the
session logic: the controller, vantage points, scamper connections and
local channels together, over in-memory transports and the
L{SocketsReactor} clock.

Two scampers are modelled.  A is driven through random sequences of
legitimate and adversarial steps: clients opening, writing, half-closing
and closing; scamper sending, finishing channels, acknowledging late;
the link frozen, cut, resumed; time passing (keepalives, the 60-s
silence, zombie expiry); and wrong sequence numbers, unknown channels,
bad ACKs, oversized and truncated frames, control messages out of
place, garbage, MASTER_RES storms and duplicate magics.  B is a
well-behaved bystander with a client that talks throughout.

After every step: nothing raised out of the daemon; either A's session is
intact (sequence numbers agree with the model, every byte each client
wrote reached scamper once and in order, every byte scamper sent on a
channel reached its client once and in order) or A's connection was
closed and its vantage point freed, its clients told; and B and its
client are untouched.

C{$SC_REMOTED_EXAMPLES} sets the number of runs (default 100).
"""

import os
from typing import Dict, List, Optional

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from sc_remoted import wire
from sc_remoted.wire import ControlType, Frame, encodeAck, encodeFrame, encodeMasterNew, encodeMasterRes

from .fakes import FakeClient, makeController
from .peer import ScamperPeer
from .peer_twisted import MemoryScamper

ZOMBIE_TIME = 120
LOCAL = "127.0.0.1"


class ClientModel:
    """A local client: what it wrote, what it should have read."""

    def __init__(self, fake: FakeClient, channel: int) -> None:
        self.fake = fake
        self.channel = channel
        self.written = bytearray()
        self.expected = bytearray()
        self.got = bytearray()
        self.finSent = False  # shut down its writing side, or closed
        self.gone = False  # its connection is over
        self.scamperFinished = False


class Peer:
    """
    A scamper process as the model sees it: a L{ScamperPeer}, whose state
    outlives its TCP connections as the real one's does (docs/protocol.rst
    2.6), plus what the model expects of the daemon.  The peer checks every
    frame the daemon sends and acknowledges when told (C{autoAck} off).
    """

    def __init__(self, machine: "SessionMachine", magic: bytes, wellBehaved: bool) -> None:
        self.machine = machine
        self.magic = magic
        self.wellBehaved = wellBehaved
        self.peer = ScamperPeer(magic, autoAck=False)
        self.conn: Optional[MemoryScamper] = None
        self.port = 0
        self.vp = None
        self.frozen = False
        self.daemonHas = 0  # sequenced frames delivered, in order
        self.clients: Dict[int, ClientModel] = {}

    @property
    def openAtScamper(self) -> List[int]:
        """The channels scamper may still send on."""
        return self.peer.openChannels()

    # Connections ---------------------------------------------------------

    def connect(self) -> MemoryScamper:
        self.port = self.machine.nextPort()
        self.conn = MemoryScamper(self.machine.controller, port=self.port, peer=self.peer)
        self.frozen = False
        return self.conn

    def register(self) -> None:
        conn = self.connect()
        conn.register()
        frames = conn.received()
        assert frames == [Frame(0, 0, wire.encodeMasterId("%s:%d" % (LOCAL, self.port))[10:])], frames
        assert self.peer.identity == "%s:%d" % (LOCAL, self.port)
        self.vp = conn.protocol.vp
        assert self.vp is not None

    def resume(self) -> None:
        """Reconnect with MASTER_RES; expect MASTER_OK and retransmissions."""
        conn = self.connect()
        conn.resume()
        # The peer handles MASTER_OK and the daemon's retransmissions, and
        # sends its own unacknowledged frames again.
        frames = conn.received()
        alive = self.vp in self.machine.controller.vantagePoints()
        if not alive:
            assert [wire.parseControl(f.payload) for f in frames] == [wire.MasterRej()], frames
            assert conn.closed
            conn.lose()
            self.conn = None
            self.reset()
            self.register()
            return
        ok = wire.parseControl(frames[0].payload)
        assert ok == wire.MasterOk(self.daemonHas), (ok, self.daemonHas)
        assert conn.protocol.vp is self.vp
        for frame in self.peer.unackedFrames():
            self.arrived(frame)

    def lost(self) -> None:
        """The TCP connection ended (either side)."""
        if self.conn is not None:
            self.conn.lose()
            self.conn = None
        self.frozen = False

    def reset(self) -> None:
        """The daemon freed our session: start afresh (new channels)."""
        for client in self.clients.values():
            assert client.gone or client.fake.gotEOF, "a client of a freed session was not closed"
        self.clients = {}
        self.daemonHas = 0
        self.peer = ScamperPeer(self.magic, autoAck=False)
        self.vp = None

    # Sending -------------------------------------------------------------

    def sendData(self, channel: int, payload: bytes) -> None:
        self.transmit(self.peer.data(channel, payload))

    def sendFin(self, channel: int) -> None:
        self.transmit(self.peer.finish(channel))

    def transmit(self, raw: bytes) -> None:
        """A frame the peer just made, unless the link loses it."""
        if self.frozen or self.conn is None:
            return
        self.conn.send(raw)
        self.arrived(self.peer.unackedFrames()[-1])

    def arrived(self, frame: Frame) -> None:
        """The daemon has one more of our frames: what its clients should get."""
        assert frame.seq == self.daemonHas, (frame.seq, self.daemonHas)
        self.daemonHas += 1
        if frame.channel != 0:
            client = self.clients.get(frame.channel)
            if client is not None and not client.gone:
                client.expected.extend(frame.payload)
        else:
            client = self.clients.get(int.from_bytes(frame.payload[1:5], "big"))
            if client is not None:
                client.scamperFinished = True

    def sendRaw(self, data: bytes) -> None:
        if not self.frozen and self.conn is not None:
            self.conn.send(data)

    def ackAll(self) -> None:
        if not self.frozen and self.conn is not None:
            self.conn.ack()

    # Receiving -----------------------------------------------------------

    def settle(self) -> None:
        """Read what the daemon wrote; let closed connections end."""
        conn = self.conn
        if conn is not None:
            if self.frozen:
                conn.discard()
            else:
                conn.received()
                if self.wellBehaved:
                    self.ackAll()
            if conn.closed:
                self.lost()
        for client in self.clients.values():
            client.got.extend(client.fake.read())
            if client.fake.gotEOF and not client.gone:
                client.gone = True
                client.finSent = True
                client.fake.protocol.connectionLost(Failure(ConnectionDone()))
        if self.conn is not None and not self.frozen and self.wellBehaved:
            # The client's FIN and CHANNEL_FIN may follow from the above.
            self.conn.received()
            self.ackAll()

    @property
    def registered(self) -> bool:
        return self.vp is not None and self.vp in self.machine.controller.vantagePoints()

    def check(self) -> None:
        controller = self.machine.controller
        assert self.peer.violations == [], self.peer.violations
        if self.conn is not None:
            assert not self.conn.closed
            assert self.conn.protocol.vp is self.vp
            assert self.vp in controller.vantagePoints()
            assert self.vp.connection is self.conn.protocol
            assert self.vp.name == "%s:%d" % (LOCAL, self.port), self.vp.name
            assert "/sockets/" + self.vp.name in self.machine.reactor.sockets
        if self.registered:
            vp = self.vp
            assert vp.session.rcvNxt == self.daemonHas, (vp.session.rcvNxt, self.daemonHas)
            if self.conn is not None and not self.frozen:
                assert vp.session.sndNxt == self.peer.rcvNxt, (vp.session.sndNxt, self.peer.rcvNxt)
                assert vp.session.unacked == len(self.peer.owed), (vp.session.unacked, self.peer.owed)
            if self.conn is None:
                assert vp.connection is None
                assert "/sockets/" + vp.name not in self.machine.reactor.sockets
        for channel, client in self.clients.items():
            assert bytes(client.got) == bytes(client.expected), (channel, client.got, client.expected)
            received = self.peer.received(channel)
            assert bytes(client.written).startswith(received), (channel, client.written, received)
            if self.conn is not None and not self.frozen:
                assert received == bytes(client.written), (channel, client.written, received)


payloadsSmall = st.binary(min_size=1, max_size=64)


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.controller = makeController(zombieTime=ZOMBIE_TIME)
        self.reactor = self.controller.reactor
        self._port = 20000
        self._magic = 0
        self.b = Peer(self, self.newMagic(), wellBehaved=True)
        self.b.register()
        self.bClient = self.openClient(self.b)
        self.bTalks = 0
        self.a = Peer(self, self.newMagic(), wellBehaved=False)
        self.a.register()

    def nextPort(self) -> int:
        self._port += 1
        return self._port

    def newMagic(self) -> bytes:
        self._magic += 1
        return b"magic%03d" % (self._magic,)

    def openClient(self, peer: Peer) -> ClientModel:
        fake = FakeClient(self.reactor, peer.vp.name)
        channel = fake.protocol.number
        client = ClientModel(fake, channel)
        peer.clients[channel] = client
        peer.settle()
        return client

    def settle(self) -> None:
        self.b.settle()
        self.a.settle()
        if self.a.conn is None and not self.a.registered and self.a.vp is not None:
            # Freed while disconnected (zombie expired, or replaced).
            self.a.reset()

    def expectFatal(self) -> None:
        """The last step must have cost A its connection and its session."""
        a = self.a
        vp = a.vp
        self.settle()
        assert a.conn is None, "A's connection is still open"
        assert vp not in self.controller.vantagePoints(), "A's session survived"
        assert vp.connection is None
        assert "/sockets/" + vp.name not in self.reactor.sockets
        a.reset()
        a.register()

    # Legitimate steps ----------------------------------------------------

    @precondition(lambda self: self.a.conn is not None and len(self.a.clients) < 6)
    @rule()
    def clientOpens(self):
        self.openClient(self.a)

    def _liveClients(self):
        return [c for c in self.a.clients.values() if not c.finSent and not c.scamperFinished]

    @precondition(lambda self: self._liveClients())
    @rule(data=st.data(), payload=st.binary(min_size=1, max_size=300))
    def clientWrites(self, data, payload):
        client = data.draw(st.sampled_from(self._liveClients()))
        client.fake.write(payload)
        client.written.extend(payload)
        self.settle()

    @precondition(lambda self: self._liveClients())
    @rule(data=st.data(), close=st.booleans())
    def clientFinishes(self, data, close):
        client = data.draw(st.sampled_from(self._liveClients()))
        client.finSent = True
        if close:
            client.gone = True
            client.fake.close()
        else:
            client.fake.shutdownWrite()
        self.settle()

    @precondition(lambda self: self.a.openAtScamper)
    @rule(data=st.data(), payload=payloadsSmall)
    def scamperSends(self, data, payload):
        channel = data.draw(st.sampled_from(sorted(self.a.openAtScamper)))
        self.a.sendData(channel, payload)
        self.settle()

    @precondition(lambda self: self.a.openAtScamper)
    @rule(data=st.data())
    def scamperFinishes(self, data):
        channel = data.draw(st.sampled_from(sorted(self.a.openAtScamper)))
        self.a.sendFin(channel)
        self.settle()

    @precondition(lambda self: self.a.conn is not None)
    @rule()
    def scamperAcks(self):
        self.a.ackAll()
        self.settle()

    @precondition(lambda self: self.a.conn is not None)
    @rule()
    def scamperKeepalive(self):
        self.a.sendRaw(self.a.peer.keepalive())
        self.settle()

    @precondition(lambda self: self.a.conn is not None and not self.a.frozen)
    @rule()
    def freeze(self):
        """The link stops passing bytes, both ways, until it is cut."""
        self.a.frozen = True

    @precondition(lambda self: self.a.conn is not None)
    @rule(reset=st.booleans())
    def cut(self, reset):
        self.a.conn.lose(reset=reset)
        self.a.conn = None
        self.a.lost()
        self.settle()

    @precondition(lambda self: self.a.conn is None)
    @rule()
    def scamperReconnects(self):
        if self.a.vp is None:
            self.a.register()
        else:
            self.a.resume()
        self.settle()

    @rule(seconds=st.floats(0, 40), keepalive=st.booleans())
    def timePasses(self, seconds, keepalive):
        """B stays in touch; A only if C{keepalive}."""
        self.b.sendRaw(self.b.peer.keepalive())
        if keepalive and self.a.conn is not None:
            self.a.sendRaw(self.a.peer.keepalive())
        self.reactor.advance(seconds)
        self.settle()

    @rule(payload=payloadsSmall)
    def bystanderTalks(self, payload):
        """B's client and scamper exchange data, whatever A does."""
        client = self.bClient
        client.fake.write(payload)
        client.written.extend(payload)
        self.b.settle()
        self.b.sendData(client.channel, b"echo:" + payload)
        self.settle()
        self.bTalks += 1

    # Adversarial steps: each costs A its session -------------------------

    def _aLive(self):
        return self.a.conn is not None and not self.a.frozen

    @precondition(_aLive)
    @rule(offset=st.integers(1, 0xFFFFFFFF), payload=st.binary(max_size=20))
    def wrongSequence(self, offset, payload):
        a = self.a
        channel = min(a.openAtScamper) if a.openAtScamper else 0
        body = payload if channel else wire.encodeKeepalive(0)[10:]
        a.sendRaw(encodeFrame((a.daemonHas + offset) & 0xFFFFFFFF, channel, body))
        self.expectFatal()

    @precondition(_aLive)
    @rule(channel=st.integers(1, 0xFFFFFFFF), payload=st.binary(max_size=20), fin=st.booleans())
    def unknownChannel(self, channel, payload, fin):
        a = self.a
        if channel in a.vp.session.channels:
            channel = max(a.vp.session.channels) + 1
        if fin:
            a.sendRaw(encodeFrame(a.daemonHas, 0, wire.channelFinPayload(channel)))
        else:
            a.sendRaw(encodeFrame(a.daemonHas, channel, payload))
        self.expectFatal()

    @precondition(_aLive)
    @rule(acked=st.integers(0, 0xFFFFFFFF))
    def badAck(self, acked):
        a = self.a
        if a.peer.owed and acked == a.peer.owed[0]:
            acked = (acked + 1) & 0xFFFFFFFF
        a.sendRaw(encodeAck(a.daemonHas, acked))
        self.expectFatal()

    @precondition(_aLive)
    @rule(
        kind=st.sampled_from(
            [ControlType.ACK, ControlType.KEEPALIVE, ControlType.CHANNEL_FIN, ControlType.MASTER_REJ]
        ),
        extra=st.binary(min_size=1, max_size=100),
    )
    def oversizedControl(self, kind, extra):
        a = self.a
        if kind == ControlType.ACK:
            body = encodeAck(0, a.peer.owed[0] if a.peer.owed else 0)[10:]
        elif kind == ControlType.CHANNEL_FIN:
            body = wire.channelFinPayload(min(a.openAtScamper) if a.openAtScamper else 1)
        else:
            body = bytes((kind,))
        a.sendRaw(encodeFrame(a.daemonHas, 0, body + extra))
        self.expectFatal()

    @precondition(_aLive)
    @rule(
        message=st.sampled_from(["new", "res", "id", "ok", "rej", "channel_new", "empty", "unknown"]),
    )
    def controlInTheWrongState(self, message):
        a = self.a
        body = {
            "new": encodeMasterNew(b"another!")[10:],
            "res": encodeMasterRes(a.magic, a.peer.rcvNxt, a.peer.sndNxt, a.peer.sndNxt)[10:],
            "id": wire.encodeMasterId("x")[10:],
            "ok": wire.encodeMasterOk(0)[10:],
            "rej": wire.encodeMasterRej()[10:],
            "channel_new": wire.channelNewPayload(99),
            "empty": b"",
            "unknown": b"\x09",
        }[message]
        a.sendRaw(encodeFrame(a.daemonHas, 0, body))
        self.expectFatal()

    @precondition(_aLive)
    @rule(header=st.binary(min_size=10, max_size=10), tail=st.binary(max_size=200))
    def garbage(self, header, tail):
        """Bytes whose first header has a wrong sequence number."""
        a = self.a
        seq = int.from_bytes(header[:4], "big")
        if seq == a.daemonHas:
            header = ((seq + 1) & 0xFFFFFFFF).to_bytes(4, "big") + header[4:]
        length = min(int.from_bytes(header[8:10], "big"), len(tail))
        header = header[:8] + length.to_bytes(2, "big")
        a.sendRaw(header + tail)
        self.expectFatal()

    @precondition(lambda self: self.a.conn is not None)
    @rule(cutAt=st.integers(1, 30), payload=payloadsSmall, reset=st.booleans())
    def truncatedThenCut(self, cutAt, payload, reset):
        """
        Half a frame, then the link goes: the half is dropped with the
        connection, and the resume starts clean.
        """
        a = self.a
        frame = encodeFrame(a.daemonHas, 0, wire.encodeKeepalive(0)[10:] + payload)
        a.sendRaw(frame[: min(cutAt, len(frame) - 1)])
        self.settle()
        if a.conn is not None:
            self.cut(reset)

    # Other connections: they must cost nobody else anything -------------

    @rule(count=st.integers(1, 20), stolen=st.sampled_from(["a", "b", "none"]), data=st.data())
    def resumeStorm(self, count, stolen, data):
        """MASTER_RES from new connections, with windows nobody holds."""
        for _ in range(count):
            magic = {"a": self.a.magic, "b": self.b.magic, "none": self.newMagic()}[stolen]
            rcvNxt = data.draw(st.integers(0, 0xFFFFFFFF))
            peer = {"a": self.a, "b": self.b}.get(stolen)
            if peer is not None and peer.vp is not None and peer.registered:
                vp = peer.vp
                if rcvNxt == vp.session.sndNxt or any(seq == rcvNxt for seq in vp.session.unackedSequences()):
                    rcvNxt = (vp.session.sndNxt + 0x40000000) & 0xFFFFFFFF
            intruder = MemoryScamper(self.controller, port=self.nextPort(), magic=magic)
            intruder.resume(rcvNxt, 0, 0)
            frames = intruder.received()
            assert [wire.parseControl(f.payload) for f in frames] == [wire.MasterRej()], frames
            assert intruder.closed
            intruder.lose()
        self.settle()

    @rule(which=st.sampled_from(["a", "b"]))
    def duplicateMagic(self, which):
        """
        MASTER_NEW with a live session's magic is closed; with a zombie's
        it replaces the zombie (a deliberate deviation from C, README).
        """
        peer = self.a if which == "a" else self.b
        zombie = peer.conn is None and peer.registered
        intruder = MemoryScamper(self.controller, port=self.nextPort(), magic=peer.magic)
        intruder.register()
        if not zombie:
            if peer.conn is not None:
                assert intruder.closed
                intruder.lose()
            else:
                # Nobody holds the magic: a fresh registration; let it go.
                if intruder.protocol.vp is not None:
                    self.controller.free(intruder.protocol.vp, "test")
                intruder.lose()
            self.settle()
            return
        # A is a zombie: the intruder replaces it; the old clients get EOF.
        assert not intruder.closed
        old = peer.vp
        assert old not in self.controller.vantagePoints()
        # The intruder's own session goes too, so that nobody holds the magic.
        self.controller.free(intruder.protocol.vp, "test")
        intruder.lose()
        self.settle()
        peer.reset()

    @rule(stream=st.binary(max_size=100))
    def unregisteredGarbage(self, stream):
        """A stranger's bytes: it is closed or kept waiting, nothing else."""
        stranger = MemoryScamper(self.controller, port=self.nextPort())
        stranger.send(stream)
        if stranger.protocol.vp is not None:
            # By chance a valid MASTER_NEW: a new vantage point; free it.
            self.controller.free(stranger.protocol.vp, "test")
        stranger.lose()
        self.settle()

    # Invariants ----------------------------------------------------------

    @invariant()
    def bystanderUntouched(self):
        b = self.b
        assert b.conn is not None and not b.conn.closed
        assert b.registered
        assert not self.bClient.gone
        b.check()

    @invariant()
    def sessionIntactOrGone(self):
        self.a.check()

    @invariant()
    def connectionsCounted(self):
        live = sum(1 for peer in (self.a, self.b) if peer.conn is not None)
        assert self.controller._connectionCount == live, (self.controller._connectionCount, live)

    def teardown(self):
        self.controller.stopService()


SETTINGS = settings(
    max_examples=int(os.environ.get("SC_REMOTED_EXAMPLES", "100")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class StatefulSessionTests(SynchronousTestCase):
    def test_sessions(self):
        """Random and adversarial step sequences keep every invariant."""
        run_state_machine_as_test(SessionMachine, settings=SETTINGS)
