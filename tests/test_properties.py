"""
Property-based tests (hypothesis) of the wire codec, L{sc_remoted.wire},
and of what the daemon does with arbitrary bytes from a scamper.

The number of examples per test is 200, or C{$SC_REMOTED_EXAMPLES}; the
coverage-guided fuzzing of the decoders is C{tools/fuzz.py} (docs/security.rst).
"""

import os
import string

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from sc_remoted import wire
from sc_remoted.wire import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    Ack,
    ChannelFin,
    ChannelNew,
    ControlType,
    Frame,
    FrameDecoder,
    Keepalive,
    MasterId,
    MasterNew,
    MasterOk,
    MasterRej,
    MasterRes,
    WireError,
    encodeFrame,
    parseControl,
)

from .fakes import FakeClient, makeController
from .peer_twisted import MemoryScamper

EXAMPLES = int(os.environ.get("SC_REMOTED_EXAMPLES", "200"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

u32 = st.integers(0, 0xFFFFFFFF)
magics = st.binary(min_size=1, max_size=255)
monitornames = st.text(alphabet=string.ascii_letters + string.digits + ".-", min_size=1, max_size=253)
# Large payloads built cheaply: drawing 64 KiB byte by byte is slow.
payloads = st.binary(max_size=300) | st.builds(
    lambda n, b: bytes([b]) * n, st.integers(MAX_PAYLOAD - 2, MAX_PAYLOAD), st.integers(0, 255)
)
frames = st.builds(Frame, u32, u32, payloads)


@st.composite
def cuts(draw, data: bytes):
    """C{data} cut into consecutive pieces at arbitrary points."""
    points = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    pieces, start = [], 0
    for point in points + [len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


def wellFormedControl():
    """(message, encoded payload) pairs for every control type."""
    return st.one_of(
        st.builds(lambda m: (MasterNew(m, None), wire.encodeMasterNew(m)[HEADER_SIZE:]), magics),
        st.builds(
            lambda m, n: (MasterNew(m, n), wire.encodeMasterNew(m, n)[HEADER_SIZE:]), magics, monitornames
        ),
        st.builds(lambda i: (MasterId(i), wire.encodeMasterId(i)[HEADER_SIZE:]), st.text(string.printable, max_size=126)),
        st.builds(lambda c: (ChannelNew(c), wire.channelNewPayload(c)), u32),
        st.builds(lambda c: (ChannelFin(c), wire.channelFinPayload(c)), u32),
        st.builds(lambda s: (Keepalive(), wire.encodeKeepalive(s)[HEADER_SIZE:]), u32),
        st.builds(lambda s, a: (Ack(a), wire.encodeAck(s, a)[HEADER_SIZE:]), u32, u32),
        st.builds(
            lambda m, r, u, n: (MasterRes(m, r, u, n), wire.encodeMasterRes(m, r, u, n)[HEADER_SIZE:]),
            magics,
            u32,
            u32,
            u32,
        ),
        st.just((MasterRej(), wire.encodeMasterRej()[HEADER_SIZE:])),
        st.builds(lambda r: (MasterOk(r), wire.encodeMasterOk(r)[HEADER_SIZE:]), u32),
    )


class DecoderProperties(SynchronousTestCase):
    @SETTINGS
    @given(st.lists(frames, max_size=8), st.data())
    def test_roundTripAnyCuts(self, sent, data):
        """Frames encoded back to back come out the same however the stream is cut."""
        stream = b"".join(encodeFrame(*f) for f in sent)
        decoder = FrameDecoder()
        got = []
        for piece in data.draw(cuts(stream)):
            got.extend(decoder.feed(piece))
        self.assertEqual(got, sent)
        self.assertEqual(decoder.buffered, 0)

    @SETTINGS
    @given(st.binary(max_size=2000), st.data())
    @example(b"\x00" * 9, None)
    @example(b"\xff" * 10, None)
    def test_arbitraryBytes(self, stream, data):
        """
        Any byte stream: the decoder never raises, and what it returns
        plus what it holds back is exactly the input, however it is cut.
        """
        pieces = data.draw(cuts(stream)) if data is not None else [stream]
        decoder = FrameDecoder()
        got = []
        for piece in pieces:
            got.extend(decoder.feed(piece))
        rebuilt = b"".join(encodeFrame(*f) for f in got)
        self.assertEqual(len(rebuilt) + decoder.buffered, len(stream))
        self.assertEqual(rebuilt, stream[: len(rebuilt)])
        self.assertEqual(got, FrameDecoder().feed(stream))

    @SETTINGS
    @given(frames, st.integers(0, HEADER_SIZE + 300))
    def test_truncatedFrame(self, frame, missing):
        """A frame short of even one byte yields nothing and is held back."""
        encoded = encodeFrame(*frame)
        missing = max(1, min(missing, len(encoded)))
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(encoded[:-missing]), [])
        self.assertEqual(decoder.buffered, len(encoded) - missing)
        self.assertEqual(decoder.feed(encoded[-missing:]), [frame])


class ControlProperties(SynchronousTestCase):
    @SETTINGS
    @given(st.binary(max_size=300))
    @example(b"")
    @example(b"\x00")
    @example(b"\x00\x00")
    @example(b"\x06\x08")
    @example(b"\x00\x01\x00\xff")
    @example(b"\x01\x01\x80")
    def test_arbitraryPayload(self, payload):
        """parseControl returns a message or raises WireError, nothing else."""
        try:
            message = parseControl(payload)
        except WireError:
            return
        self.assertIsInstance(
            message, (MasterNew, MasterId, ChannelNew, ChannelFin, Keepalive, Ack, MasterRes, MasterRej, MasterOk)
        )
        self.assertEqual(payload[0], {
            MasterNew: ControlType.MASTER_NEW,
            MasterId: ControlType.MASTER_ID,
            ChannelNew: ControlType.CHANNEL_NEW,
            ChannelFin: ControlType.CHANNEL_FIN,
            Keepalive: ControlType.KEEPALIVE,
            Ack: ControlType.ACK,
            MasterRes: ControlType.MASTER_RES,
            MasterRej: ControlType.MASTER_REJ,
            MasterOk: ControlType.MASTER_OK,
        }[type(message)])

    @SETTINGS
    @given(wellFormedControl())
    def test_encodersRoundTrip(self, pair):
        message, payload = pair
        self.assertEqual(parseControl(payload), message)

    @SETTINGS
    @given(wellFormedControl(), st.data())
    def test_truncated(self, pair, data):
        """
        Every strict prefix of a control payload is refused, except where
        the protocol allows a shorter form (MASTER_NEW without its name).
        """
        message, payload = pair
        cut = data.draw(st.integers(0, len(payload) - 1))
        try:
            parsed = parseControl(payload[:cut])
        except WireError:
            return
        self.assertIsInstance(message, MasterNew)
        self.assertIsInstance(parsed, MasterNew)
        self.assertEqual(parsed.monitorname, None)

    @SETTINGS
    @given(wellFormedControl(), st.binary(min_size=1, max_size=20))
    def test_oversized(self, pair, extra):
        """Fixed-size control messages with trailing bytes are refused."""
        message, payload = pair
        assume(not isinstance(message, (MasterNew, MasterRes, MasterId)))
        self.assertRaises(WireError, parseControl, payload + extra)

    @SETTINGS
    @given(magics, st.text(min_size=1, max_size=50).filter(lambda n: any(c not in string.ascii_letters + string.digits + ".-" for c in n)))
    def test_badMonitorname(self, magic, name):
        raw = name.encode("utf-8")[:253] + b"\0"
        payload = bytes((0, len(magic))) + magic + bytes((len(raw),)) + raw
        assume(any(c not in (string.ascii_letters + string.digits + ".-").encode() for c in raw[:-1]))
        self.assertRaises(WireError, parseControl, payload)

    @SETTINGS
    @given(frames)
    def test_describeFrame(self, frame):
        """The debug rendering never raises, whatever the frame."""
        self.assertIsInstance(wire.describeFrame(frame), str)


class SequenceProperties(SynchronousTestCase):
    @SETTINGS
    @given(u32, u32)
    def test_serialOrder(self, a, b):
        """Exactly one of a<b, b<a, a==b, except at the half-way point."""
        assume((a - b) & 0xFFFFFFFF != 0x80000000)
        self.assertEqual(wire.seqLessThan(a, b) + wire.seqLessThan(b, a) + (a == b), 1)

    @SETTINGS
    @given(u32, st.integers(1, 0x7FFFFFFF))
    def test_nextIsLater(self, a, n):
        later = a
        for _ in range(min(n, 3)):
            later = wire.seqNext(later)
        self.assertTrue(wire.seqLessThan(a, later))
        self.assertTrue(wire.seqLessThan(a, (a + n) & 0xFFFFFFFF))


MAGIC = b"bystande"


class DaemonProperties(SynchronousTestCase):
    """Arbitrary bytes from one scamper, against the whole session logic."""

    def fresh(self):
        """A new controller and bystander for each example."""
        self.controller = makeController()
        self.reactor = self.controller.reactor
        # A bystander: a registered scamper with a client mid-conversation.
        self.bystander = MemoryScamper(self.controller, port=1, magic=MAGIC)
        self.bystander.register()
        self.bystander.received()
        self.client = FakeClient(self.reactor, "127.0.0.1:1")
        self.bystander.received()
        self.bystander.ack()

    def assertBystanderIntact(self):
        vp = self.bystander.protocol.vp
        self.assertIsNotNone(vp)
        self.assertFalse(self.bystander.closed)
        self.client.write(b"ping\n")
        [sent] = [f for f in self.bystander.received() if f.channel == 1]
        self.assertEqual(sent.payload, b"ping\n")
        self.bystander.send(self.bystander.peer.ack() + self.bystander.peer.data(1, b"pong\n"))
        self.assertEqual(self.client.read(), b"pong\n")
        self.assertEqual(self.bystander.violations, [])

    def outcome(self, scamper):
        """Closed and forgotten, or still a coherent connection."""
        vps = [vp for vp in self.controller.vantagePoints() if vp.magic != MAGIC]
        if scamper.closed:
            self.assertEqual([vp for vp in vps if vp.connection is scamper.protocol], [])
            self.assertIsNone(scamper.protocol.vp)
        elif scamper.protocol.vp is not None:
            self.assertIn(scamper.protocol.vp, vps)

    @SETTINGS
    @given(st.binary(max_size=500), st.data())
    def test_garbageBeforeRegistration(self, stream, data):
        self.fresh()
        scamper = MemoryScamper(self.controller, port=2)
        for piece in data.draw(cuts(stream)):
            scamper.send(piece)
        self.outcome(scamper)
        self.reactor.advance(31)
        self.assertTrue(scamper.closed or scamper.protocol.vp is not None)
        scamper.lose()
        self.assertBystanderIntact()

    @SETTINGS
    @given(st.lists(st.one_of(st.binary(max_size=100), frames.map(lambda f: encodeFrame(*f))), max_size=6))
    def test_garbageAfterRegistration(self, pieces):
        self.fresh()
        scamper = MemoryScamper(self.controller, port=3, magic=b"attacker")
        scamper.register()
        self.assertIsNotNone(scamper.protocol.vp)
        vp = scamper.protocol.vp
        for piece in pieces:
            scamper.send(piece)
        if scamper.closed:
            self.assertNotIn(vp, self.controller.vantagePoints())
            self.assertIsNone(vp.connection)
        else:
            self.assertIs(vp.connection, scamper.protocol)
        self.assertBystanderIntact()

    @SETTINGS
    @given(wellFormedControl(), u32, u32)
    def test_controlInTheWrongState(self, pair, seq, channel):
        self.fresh()
        """
        Any control message other than MASTER_NEW/MASTER_RES before
        registration, or MASTER_* after it, costs the sender its connection.
        """
        message, payload = pair
        scamper = MemoryScamper(self.controller, port=4)
        registering = isinstance(message, (MasterNew, MasterRes))
        if not registering:
            scamper.send(encodeFrame(0, 0, payload))
            self.assertTrue(scamper.closed)
        scamper = MemoryScamper(self.controller, port=5, magic=b"attacker")
        scamper.register()
        vp = scamper.protocol.vp
        if isinstance(message, (MasterNew, MasterRes, MasterId, MasterOk, MasterRej, ChannelNew)):
            scamper.send(encodeFrame(0, 0, payload))
            self.assertTrue(scamper.closed)
            self.assertNotIn(vp, self.controller.vantagePoints())
        self.assertBystanderIntact()
