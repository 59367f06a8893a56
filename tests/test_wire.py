"""
Tests for L{sc_remoted.wire}: framing and control messages, checked
against bytes captured between Debian's scamper and the C sc_remoted.
"""

from twisted.trial.unittest import SynchronousTestCase

from sc_remoted import wire
from sc_remoted.wire import (
    Ack,
    ChannelFin,
    ChannelNew,
    Frame,
    FrameDecoder,
    Keepalive,
    MasterId,
    MasterNew,
    MasterOk,
    MasterRej,
    MasterRes,
    WireError,
    parseControl,
)

# Frames exactly as captured (docs/protocol.rst 1.2, 4).
MASTER_NEW = bytes.fromhex("0000000000000000000b0008482bd124f344754100")
MASTER_NEW_TESTVP = bytes.fromhex("00000000000000000012000865419660e3042e6f0774657374767000")
MASTER_ID = bytes.fromhex("0000000000000000001201103132372e302e302e313a343236393400")
KEEPALIVE = bytes.fromhex("0000000300000000000104")
ACK = bytes.fromhex("000000000000000000050500000000")
CHANNEL_NEW = bytes.fromhex("000000000000000000050200000001")
CHANNEL_FIN = bytes.fromhex("0000000c0000000000050300000001")
DATA = bytes.fromhex("000000000000000100054d4f52450a")


class FrameDecoderTests(SynchronousTestCase):
    """L{FrameDecoder} reassembles frames however the stream is cut."""

    def test_wholeFrames(self):
        stream = MASTER_NEW + CHANNEL_NEW + DATA
        frames = FrameDecoder().feed(stream)
        self.assertEqual(
            frames,
            [
                Frame(0, 0, MASTER_NEW[10:]),
                Frame(0, 0, CHANNEL_NEW[10:]),
                Frame(0, 1, b"MORE\n"),
            ],
        )

    def test_everySplit(self):
        """Cutting the stream at any byte yields the same frames."""
        stream = MASTER_NEW + CHANNEL_NEW + DATA + KEEPALIVE
        expected = FrameDecoder().feed(stream)
        for cut in range(len(stream) + 1):
            decoder = FrameDecoder()
            frames = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
            self.assertEqual(frames, expected, "cut at %d" % (cut,))
            self.assertEqual(decoder.buffered, 0)

    def test_byteAtATime(self):
        decoder = FrameDecoder()
        frames = []
        for i in range(len(DATA)):
            frames += decoder.feed(DATA[i : i + 1])
        self.assertEqual(frames, [Frame(0, 1, b"MORE\n")])

    def test_largestAndEmptyPayloads(self):
        """Any length from 0 to 65535 is framed."""
        big = b"x" * wire.MAX_PAYLOAD
        stream = wire.encodeFrame(7, 3, big) + wire.encodeFrame(8, 3, b"")
        self.assertEqual(FrameDecoder().feed(stream), [Frame(7, 3, big), Frame(8, 3, b"")])

    def test_partialHeld(self):
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(DATA[:12]), [])
        self.assertEqual(decoder.buffered, 12)


class ParseControlTests(SynchronousTestCase):
    """L{parseControl} decodes every control type and refuses malformed ones."""

    def control(self, frame: bytes):
        return parseControl(frame[10:])

    def test_masterNew(self):
        self.assertEqual(
            self.control(MASTER_NEW), MasterNew(bytes.fromhex("482bd124f3447541"), None)
        )

    def test_masterNewMonitorname(self):
        self.assertEqual(
            self.control(MASTER_NEW_TESTVP),
            MasterNew(bytes.fromhex("65419660e3042e6f"), "testvp"),
        )

    def test_masterNewWithoutNameByte(self):
        """Probe case 1: no monitorname length byte is 'no name'."""
        self.assertEqual(parseControl(b"\x00\x08AAAAAAAA"), MasterNew(b"A" * 8, None))

    def test_masterNewRefused(self):
        """Probe cases 3 to 5 are malformed."""
        for payload, reason in [
            (b"\x00\x08CCCCCCCC\x09bad_name\x00", "character"),
            (b"\x00\x08DDDDDDDD\x03abc", "NUL"),
            (b"\x00\x00\x00", "magic length is 0"),
            (b"\x00\x09AAAAAAAA", "exceeds"),
            (b"\x00\x08AAAAAAAA\x09abc\x00", "exceeds"),
            (b"\x00", "truncated"),
        ]:
            with self.assertRaises(WireError) as caught:
                parseControl(payload)
            self.assertIn(reason, str(caught.exception))

    def test_masterRes(self):
        payload = bytes.fromhex("0608eb4e1551a2504e54000000030000000a0000000c")
        self.assertEqual(
            parseControl(payload), MasterRes(bytes.fromhex("eb4e1551a2504e54"), 3, 10, 12)
        )
        with self.assertRaises(WireError):
            parseControl(payload[:-1])

    def test_simpleTypes(self):
        self.assertEqual(self.control(ACK), Ack(0))
        self.assertEqual(self.control(CHANNEL_NEW), ChannelNew(1))
        self.assertEqual(self.control(CHANNEL_FIN), ChannelFin(1))
        self.assertEqual(self.control(KEEPALIVE), Keepalive())
        self.assertEqual(self.control(MASTER_ID), MasterId("127.0.0.1:42694"))
        self.assertEqual(parseControl(b"\x07"), MasterRej())
        self.assertEqual(parseControl(b"\x08\x00\x00\x00\x0a"), MasterOk(10))

    def test_wrongLengths(self):
        """Probe case 8 and docs/protocol.rst 2.9: lengths are exact."""
        for payload in [b"", b"\x04\x00", b"\x05\x00\x00\x00", b"\x03\x00\x00\x00\x01\x00", b"\x07\x00"]:
            self.assertRaises(WireError, parseControl, payload)

    def test_unknownType(self):
        with self.assertRaises(WireError) as caught:
            parseControl(b"\x09")
        self.assertIn("unknown control type 9", str(caught.exception))


class EncodeTests(SynchronousTestCase):
    """The encoders produce the captured bytes."""

    def test_masterId(self):
        self.assertEqual(wire.encodeMasterId("127.0.0.1:42694"), MASTER_ID)

    def test_sequencedControl(self):
        self.assertEqual(wire.encodeFrame(0, 0, wire.channelNewPayload(1)), CHANNEL_NEW)
        self.assertEqual(wire.encodeFrame(12, 0, wire.channelFinPayload(1)), CHANNEL_FIN)

    def test_unsequenced(self):
        self.assertEqual(wire.encodeKeepalive(3), KEEPALIVE)
        self.assertEqual(wire.encodeAck(0, 0), ACK)
        self.assertEqual(wire.encodeMasterRej(), bytes.fromhex("0000000000000000000107"))
        self.assertEqual(wire.encodeMasterOk(10), bytes.fromhex("00000000000000000005080000000a"))

    def test_scamperSide(self):
        self.assertEqual(wire.encodeMasterNew(bytes.fromhex("482bd124f3447541")), MASTER_NEW)
        self.assertEqual(
            wire.encodeMasterNew(bytes.fromhex("65419660e3042e6f"), "testvp"), MASTER_NEW_TESTVP
        )
        self.assertEqual(
            wire.encodeMasterRes(bytes.fromhex("eb4e1551a2504e54"), 3, 10, 12),
            bytes.fromhex("000000000000000000160608eb4e1551a2504e54000000030000000a0000000c"),
        )


class SequenceTests(SynchronousTestCase):
    """Serial-number arithmetic across the 2**32 wrap."""

    def test_next(self):
        self.assertEqual(wire.seqNext(5), 6)
        self.assertEqual(wire.seqNext(0xFFFFFFFF), 0)

    def test_lessThan(self):
        self.assertTrue(wire.seqLessThan(1, 2))
        self.assertFalse(wire.seqLessThan(2, 2))
        self.assertFalse(wire.seqLessThan(3, 2))
        self.assertTrue(wire.seqLessThan(0xFFFFFFFF, 0))
        self.assertFalse(wire.seqLessThan(0, 0xFFFFFFFF))
