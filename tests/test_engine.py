"""
Tests of the sans-IO session engine, L{sc_remoted.engine}, and of the
vantage point lifecycle table, L{sc_remoted.lifecycle}.

The engine does no I/O, so everything here is plain bytes and numbers:
no reactor, no transports, no clock (time is a float argument).  The
first half is example-based, one behaviour per test; the second half is
property-based (hypothesis): a small model scamper drives a L{Session}
and its L{Link}s through arbitrary interleavings of client and scamper
traffic, reads cut anywhere, link losses and resumes, and checks the
protocol's invariants after every step.

The number of examples per property is 200, or C{$SC_REMOTED_EXAMPLES}
(fewer for the model run, whose examples are longer); the runs are
derandomized so that CI sees the same examples every time.
"""

import os
from collections import defaultdict, deque

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from sc_remoted.engine import (
    KEEPALIVE_INTERVAL,
    REGISTRATION_TIMEOUT,
    SILENCE_TIMEOUT,
    Channel,
    ChannelState,
    Link,
    ReadResult,
    Session,
    Timeouts,
)
from sc_remoted.lifecycle import TRANSITIONS, Input, LifecycleError, State, advance
from sc_remoted.wire import (
    HEADER,
    HEADER_SIZE,
    MAX_PAYLOAD,
    SEQ_MASK,
    Ack,
    ControlType,
    FrameDecoder,
    MasterNew,
    MasterRes,
    channelFinPayload,
    channelNewPayload,
    encodeAck,
    encodeAcks,
    encodeFrame,
    encodeKeepalive,
    encodeMasterId,
    encodeMasterNew,
    encodeMasterOk,
    encodeMasterRej,
    encodeMasterRes,
    parseControl,
)

from .peer import ChannelFinished, ChannelOpened, Data, Resumed, ScamperPeer

EXAMPLES = int(os.environ.get("SC_REMOTED_EXAMPLES", "200"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The model run: each example is up to 60 steps, so fewer of them.
MODEL_SETTINGS = settings(SETTINGS, max_examples=max(1, EXAMPLES // 2))

MAGIC = bytes.fromhex("482bd124f3447541")
TOP = SEQ_MASK  # the last sequence (and channel) number before the wrap


# Frames as scamper writes them ------------------------------------------



def joined(parts):
    """The bytes of a session's output (a list of parts), as they reach the wire."""
    return None if parts is None else b"".join(parts)

def data(seq, channel, payload):
    return encodeFrame(seq, channel, payload)


def fin(seq, channel):
    return encodeFrame(seq, 0, channelFinPayload(channel))


def control(seq, kind, body=b""):
    return encodeFrame(seq, 0, bytes((kind,)) + body)


def frames(stream):
    """Every frame of C{stream}, which must hold whole frames only."""
    decoder = FrameDecoder()
    got = decoder.feed(stream)
    assert decoder.buffered == 0, "incomplete frame at the end of %r" % (stream,)
    return got


def connect(now=0.0, timeouts=Timeouts()):
    """A session registered by a MASTER_NEW read at C{now}, and its link."""
    link = Link(now, timeouts)
    result = link.receive(encodeMasterNew(MAGIC), now)
    assert result.request == MasterNew(MAGIC, None) and result.error is None
    session = Session()
    session.advance(Input.REGISTERED)
    link.attach(session)
    return session, link


def byNumber(result):
    """C{result.deliveries} keyed by channel number, in order."""
    return [(channel.number, payloads) for channel, payloads in result.deliveries.items()]


def isEmpty(result):
    return (
        result.toScamper == b""
        and result.deliveries == {}
        and result.finished == []
        and result.request is None
        and result.error is None
    )


def framePieces(size):
    """How many frames a client read of C{size} bytes must become."""
    return -(-size // MAX_PAYLOAD)


# Registration -----------------------------------------------------------


class RegistrationTests(SynchronousTestCase):
    def test_masterNewIsARequest(self):
        link = Link(0.0)
        result = link.receive(encodeMasterNew(MAGIC, "vp1"), 1.0)
        self.assertEqual(result.request, MasterNew(MAGIC, "vp1"))
        self.assertIsNone(result.error)
        self.assertEqual((result.toScamper, result.deliveries, result.finished), (b"", {}, []))
        self.assertEqual(link.buffered, 0)
        self.assertIsNone(link.session)

    def test_masterResIsARequest(self):
        result = Link(0.0).receive(encodeMasterRes(MAGIC, 3, 10, 12), 1.0)
        self.assertEqual(result.request, MasterRes(MAGIC, 3, 10, 12))
        self.assertIsNone(result.error)

    def test_masterNewCutAnywhere(self):
        """A MASTER_NEW fed byte by byte is a request at its last byte only."""
        frame = encodeMasterNew(MAGIC, "vp1")
        link = Link(0.0)
        for i in range(len(frame) - 1):
            self.assertTrue(isEmpty(link.receive(frame[i : i + 1], 1.0)))
            self.assertEqual(link.buffered, i + 1)
        self.assertEqual(link.receive(frame[-1:], 1.0).request, MasterNew(MAGIC, "vp1"))
        self.assertEqual(link.buffered, 0)

    def test_decodingStopsAfterRequest(self):
        """Nothing after a MASTER_NEW is decoded in the read that carries it."""
        rest = data(0, 1, b"OK\n") + control(1, ControlType.KEEPALIVE)
        link = Link(0.0)
        result = link.receive(encodeMasterNew(MAGIC) + rest, 1.0)
        self.assertEqual(result.request, MasterNew(MAGIC, None))
        self.assertEqual((result.toScamper, result.deliveries, result.error), (b"", {}, None))
        self.assertEqual(link.buffered, len(rest))

    def test_heldRestDecodedOnceAttached(self):
        """
        The rest of the registration read is decoded by C{receive(b"")}
        once a session is attached, as if it had just arrived, ACKs
        included, even when it ends in an incomplete frame.
        """
        link = Link(0.0)
        session = Session()
        one, _ = session.openChannel("a")
        rest = encodeAck(0, 0) + data(0, 1, b"OK\n") + data(1, 1, b"MORE\n") + data(2, 1, b"DATA\n")[:-3]
        link.receive(encodeMasterNew(MAGIC) + rest, 1.0)
        session.advance(Input.REGISTERED)
        link.attach(session)
        result = link.receive(b"", 2.0)
        self.assertIsNone(result.error)
        self.assertEqual(byNumber(result), [(1, [b"OK\n", b"MORE\n"])])
        self.assertEqual(result.toScamper, encodeAck(1, 0) + encodeAck(1, 1))
        self.assertEqual(session.unacked, 0)
        self.assertEqual(link.buffered, HEADER_SIZE + 2)
        self.assertEqual(byNumber(link.receive(b"TA\n", 3.0)), [(1, [b"DATA\n"])])

    def test_heldHeaderCheckedOnceAttached(self):
        """
        A wrong header held back after the registration read, complete
        but with its payload incomplete, is refused by the C{receive(b"")}
        that follows the attach, as any complete header is
        (docs/protocol.rst 3.4), not once its payload is complete.
        """
        link = Link(0.0)
        bad = HEADER.pack(7, 9, 100) + b"xy"  # wrong seq, unknown channel
        link.receive(encodeMasterNew(MAGIC) + bad, 1.0)
        session = Session()
        session.advance(Input.REGISTERED)
        link.attach(session)
        self.assertEqual(link.receive(b"", 2.0).error, "got seq 7 expected 0")

    def test_wrongFirstSeq(self):
        """A first header with a sequence other than 0 is refused on its header alone."""
        result = Link(0.0).receive(HEADER.pack(1, 0, 11), 1.0)
        self.assertEqual(result.error, "got seq 1 expected 0")
        self.assertIsNone(result.request)

    def test_dataBeforeMasterNew(self):
        result = Link(0.0).receive(HEADER.pack(0, 3, 5) + b"ab", 1.0)
        self.assertEqual(result.error, "data on channel 3 before MASTER_NEW")

    def test_otherControlBeforeMasterNew(self):
        """Only MASTER_NEW or MASTER_RES may come first; any other control message is an error."""
        cases = {
            "Keepalive": control(0, ControlType.KEEPALIVE),
            "Ack": encodeAck(0, 0),
            "ChannelFin": fin(0, 1),
            "ChannelNew": encodeFrame(0, 0, channelNewPayload(1)),
            "MasterId": encodeMasterId("127.0.0.1:1"),
            "MasterOk": encodeMasterOk(0),
            "MasterRej": encodeMasterRej(),
        }
        for name, frame in cases.items():
            result = Link(0.0).receive(frame + encodeMasterNew(MAGIC), 1.0)
            self.assertEqual(result.error, "%s before MASTER_NEW" % (name,))
            self.assertIsNone(result.request)

    def test_malformedFirstControl(self):
        """An empty or broken first control message is an error, not a request."""
        for frame in [encodeFrame(0, 0, b""), control(0, ControlType.MASTER_NEW, b"\x00"), control(0, 99)]:
            result = Link(0.0).receive(frame, 1.0)
            self.assertIsInstance(result.error, str)
            self.assertIsNone(result.request)

    def test_incompleteFirstHeaderWaits(self):
        link = Link(0.0)
        self.assertTrue(isEmpty(link.receive(b"\x00" * (HEADER_SIZE - 1), 1.0)))
        self.assertEqual(link.buffered, HEADER_SIZE - 1)

    def test_closedLinkIgnoresReads(self):
        link = Link(0.0)
        link.closed = True
        self.assertTrue(isEmpty(link.receive(encodeMasterNew(MAGIC), 1.0)))
        self.assertEqual(link.buffered, 0)


# An established session -------------------------------------------------


class EstablishedTests(SynchronousTestCase):
    """A connected session with channels 1 and 2 open (CHANNEL_NEW seqs 0 and 1, unacked)."""

    def setUp(self):
        self.session, self.link = connect()
        self.one, _ = self.session.openChannel("one")
        self.two, _ = self.session.openChannel("two")

    def receive(self, stream, now=1.0):
        return self.link.receive(stream, now)

    def test_deliveriesGroupedPerChannel(self):
        """Payloads are grouped per channel, in order, channels in order of first appearance."""
        result = self.receive(data(0, 2, b"a") + data(1, 1, b"b") + data(2, 2, b"c") + data(3, 1, b""))
        self.assertEqual(list(result.deliveries), [self.two, self.one])
        self.assertEqual(byNumber(result), [(2, [b"a", b"c"]), (1, [b"b", b""])])
        self.assertEqual(self.session.rcvNxt, 4)

    def test_acksForDataAndChannelFinOnly(self):
        """
        C{toScamper} holds one ACK, carrying our C{sndNxt}, for every data
        frame and CHANNEL_FIN, in order; none for ACKs and KEEPALIVEs.
        """
        stream = (
            data(0, 1, b"x")
            + encodeAck(1, 0)
            + control(1, ControlType.KEEPALIVE)
            + data(1, 2, b"y")
            + encodeAck(2, 1)
            + fin(2, 2)
            + data(3, 1, b"z")
        )
        result = self.receive(stream)
        self.assertIsNone(result.error)
        self.assertEqual(result.toScamper, b"".join(encodeAck(self.session.sndNxt, seq) for seq in [0, 1, 2, 3]))
        self.assertEqual(result.toScamper, encodeAcks(2, [0, 1, 2, 3]))
        self.assertEqual(self.session.unacked, 0)

    def test_nothingToAck(self):
        result = self.receive(encodeAck(0, 0) + control(0, ControlType.KEEPALIVE))
        self.assertTrue(isEmpty(result))
        self.assertEqual(self.session.rcvNxt, 0)

    def test_everySplitDecodesTheSame(self):
        """A stream cut in two at any offset, or byte by byte, gives the same frames and ACKs."""
        stream = (
            data(0, 1, b"hello")
            + encodeAck(1, 0)
            + control(1, ControlType.KEEPALIVE)
            + data(1, 2, b"")
            + encodeAck(2, 1)
            + data(2, 1, b"x" * 20)
            + fin(3, 2)
        )

        def run(pieces):
            session, link = connect()
            session.openChannel("one")
            session.openChannel("two")
            delivered, acks, finished = defaultdict(list), b"", []
            for piece in pieces:
                result = link.receive(piece, 1.0)
                self.assertIsNone(result.error)
                for number, payloads in byNumber(result):
                    delivered[number] += payloads
                acks += result.toScamper
                finished += [channel.number for channel in result.finished]
            self.assertEqual(link.buffered, 0)
            return dict(delivered), acks, finished, session.rcvNxt, session.unacked

        whole = run([stream])
        self.assertEqual(whole, ({1: [b"hello", b"x" * 20], 2: [b""]}, encodeAcks(2, [0, 1, 2, 3]), [2], 4, 0))
        for cut in range(len(stream) + 1):
            self.assertEqual(run([stream[:cut], stream[cut:]]), whole, "cut at %d" % (cut,))
        self.assertEqual(run([stream[i : i + 1] for i in range(len(stream))]), whole)

    def test_heldFrameWaitsForItsPayload(self):
        frame = data(0, 1, b"0123456789")
        self.assertTrue(isEmpty(self.receive(frame[:-1])))
        self.assertEqual(self.link.buffered, len(frame) - 1)
        self.assertEqual(byNumber(self.receive(frame[-1:])), [(1, [b"0123456789"])])
        self.assertEqual(self.link.buffered, 0)

    def test_badSeqRefusedOnHeader(self):
        """A complete header with the wrong sequence is refused before its payload arrives."""
        result = self.receive(HEADER.pack(5, 1, 1000) + b"abc")
        self.assertEqual(result.error, "got seq 5 expected 0")

    def test_unknownChannelRefusedOnHeader(self):
        result = self.receive(HEADER.pack(0, 3, 1000))
        self.assertEqual(result.error, "data for unknown channel 3")

    def test_badHeaderRefusedWhenCompletedAcrossReads(self):
        header = HEADER.pack(0, 3, 1000)
        self.assertTrue(isEmpty(self.receive(header[:4])))
        self.assertEqual(self.receive(header[4:]).error, "data for unknown channel 3")

    def test_badHeaderAfterHeldFrame(self):
        """The header following a held frame is checked as soon as it is complete."""
        first = data(0, 1, b"abcd")
        self.assertTrue(isEmpty(self.receive(first[:6])))
        result = self.receive(first[6:] + HEADER.pack(9, 1, 500))
        self.assertEqual(byNumber(result), [(1, [b"abcd"])])
        self.assertEqual(result.error, "got seq 9 expected 1")

    def test_controlSeqChecked(self):
        """ACKs and KEEPALIVEs carry the next sequence too, and are refused with another."""
        self.assertEqual(self.receive(encodeAck(1, 0)).error, "got seq 1 expected 0")
        session, link = connect()
        self.assertEqual(link.receive(encodeKeepalive(3), 1.0).error, "got seq 3 expected 0")

    def test_ackOldest(self):
        """An ACK of the oldest outstanding message removes that one, and its bytes."""
        self.assertEqual(self.session.unackedSequences(), [0, 1])
        self.assertEqual(self.session.unackedBytes, 2 * 15)
        self.assertTrue(isEmpty(self.receive(encodeAck(0, 0))))
        self.assertEqual(self.session.unackedSequences(), [1])
        self.assertEqual(self.session.unackedBytes, 15)
        self.receive(encodeAck(0, 1))
        self.assertEqual((self.session.unacked, self.session.unackedBytes), (0, 0))

    def test_ackNotCumulative(self):
        """An ACK of a later message does not cover the earlier: it is an error."""
        result = self.receive(encodeAck(0, 1))
        self.assertEqual(result.error, "ACK 1, expected ACK 0")
        self.assertEqual(self.session.unackedSequences(), [0, 1])

    def test_ackTwice(self):
        result = self.receive(encodeAck(0, 0) + encodeAck(0, 0))
        self.assertEqual(result.error, "ACK 0, expected ACK 1")

    def test_ackWithNothingOutstanding(self):
        self.receive(encodeAck(0, 0) + encodeAck(0, 1))
        self.assertEqual(self.receive(encodeAck(0, 2)).error, "ACK 2 with nothing outstanding")

    def test_malformedAck(self):
        self.assertIsInstance(self.receive(control(0, ControlType.ACK, b"\x00\x00")).error, str)

    def test_unackedBytesAccounting(self):
        """C{unackedBytes} counts whole frames, headers included."""
        sent = [encodeFrame(0, 0, channelNewPayload(1)), encodeFrame(1, 0, channelNewPayload(2))]
        sent.append(joined(self.session.clientData(self.one, b"ping\n")))
        sent.append(joined(self.session.clientFinished(self.two)))
        self.assertEqual(self.session.unackedBytes, sum(map(len, sent)))
        self.assertEqual(self.session.unackedSequences(), [0, 1, 2, 3])
        self.receive(encodeAck(0, 0) + encodeAck(0, 1) + encodeAck(0, 2))
        self.assertEqual(self.session.unackedBytes, len(sent[3]))

    def test_channelFinFromScamper(self):
        """
        A CHANNEL_FIN takes the channel out of the table and lists it in
        C{finished}; its data earlier in the read is still delivered.
        """
        result = self.receive(data(0, 1, b"last") + fin(1, 1) + data(2, 2, b"other"))
        self.assertIsNone(result.error)
        self.assertEqual(byNumber(result), [(1, [b"last"]), (2, [b"other"])])
        self.assertEqual(result.finished, [self.one])
        self.assertEqual(list(self.session.channels), [2])
        self.assertIs(self.one.state, ChannelState.OPEN)  # until the caller closes it
        self.assertEqual(result.toScamper, encodeAcks(2, [0, 1, 2]))
        self.assertEqual(self.session.rcvNxt, 3)

    def test_closeFinished(self):
        result = self.receive(fin(0, 2))
        self.session.closeFinished(result)
        self.assertIs(self.two.state, ChannelState.CLOSED)
        self.assertIs(self.one.state, ChannelState.OPEN)
        self.session.closeFinished(ReadResult())
        self.assertIs(self.one.state, ChannelState.OPEN)

    def test_dataAfterChannelFin(self):
        result = self.receive(data(0, 1, b"a") + fin(1, 1) + data(2, 1, b"b"))
        self.assertEqual(result.error, "data for unknown channel 1")
        self.assertEqual(byNumber(result), [(1, [b"a"])])
        self.assertEqual(result.finished, [self.one])

    def test_channelFinUnknown(self):
        self.assertEqual(self.receive(fin(0, 7)).error, "CHANNEL_FIN for unknown channel 7")

    def test_channelFinTwice(self):
        self.assertEqual(self.receive(fin(0, 1) + fin(1, 1)).error, "CHANNEL_FIN for unknown channel 1")

    def test_clientFinishedChannelStillDelivers(self):
        """Results still flow on a channel the client finished."""
        self.session.clientFinished(self.one)
        self.assertEqual(byNumber(self.receive(data(0, 1, b"result"))), [(1, [b"result"])])

    def test_errorKeepsEarlierDeliveries(self):
        """
        On a protocol error what came before the bad frame is delivered,
        and nothing is written to scamper.
        """
        result = self.receive(data(0, 1, b"a") + data(1, 2, b"b") + data(9, 1, b"c") + data(3, 1, b"d"))
        self.assertEqual(result.error, "got seq 9 expected 2")
        self.assertEqual(byNumber(result), [(1, [b"a"]), (2, [b"b"])])
        self.assertEqual(result.toScamper, b"")
        self.assertEqual(self.link.buffered, 0)

    def test_unexpectedControl(self):
        """Registration and daemon-only messages are errors in an established session."""
        for frame in [
            encodeMasterNew(MAGIC),
            encodeMasterRes(MAGIC, 0, 0, 0),
            encodeFrame(0, 0, channelNewPayload(5)),
            encodeMasterOk(0),
            encodeMasterRej(),
        ]:
            session, link = connect()
            self.assertIsInstance(link.receive(frame, 1.0).error, str)

    def test_emptyControlFrame(self):
        self.assertEqual(self.receive(encodeFrame(0, 0, b"")).error, "empty control message")

    def test_sequenceWrapsOnReceive(self):
        self.session.rcvNxt = TOP
        result = self.receive(data(TOP, 1, b"a") + data(0, 1, b"b") + encodeKeepalive(1))
        self.assertIsNone(result.error)
        self.assertEqual(result.toScamper, encodeAcks(2, [TOP, 0]))
        self.assertEqual(self.session.rcvNxt, 1)

    def test_counters(self):
        self.receive(data(0, 1, b"abc") + encodeAck(1, 0) + data(1, 2, b"de"))
        self.assertEqual((self.session.framesIn, self.session.bytesIn), (3, 3 + 5 + 2))
        self.assertEqual((self.session.framesOut, self.session.bytesOut), (2, 10))

    def test_closeChannels(self):
        self.session.clientFinished(self.two)
        closed = self.session.closeChannels()
        self.assertEqual(closed, [self.one, self.two])
        self.assertEqual(self.session.channels, {})
        self.assertEqual({c.state for c in closed}, {ChannelState.CLOSED})


# Towards scamper --------------------------------------------------------


class ClientSideTests(SynchronousTestCase):
    def setUp(self):
        self.session, self.link = connect()
        self.channel, self.channelNew = self.session.openChannel("end")

    def test_channelNew(self):
        self.assertEqual(joined(self.channelNew), encodeFrame(0, 0, channelNewPayload(1)))
        self.assertEqual((self.channel.number, self.channel.state, self.channel.end), (1, ChannelState.OPEN, "end"))
        self.assertIs(self.session.channels[1], self.channel)
        self.assertEqual(self.session.sndNxt, 1)

    def test_clientDataOneFrame(self):
        for payload in [b"x", b"ping\n" * 100, b"y" * MAX_PAYLOAD]:
            seq = self.session.sndNxt
            self.assertEqual(joined(self.session.clientData(self.channel, payload)), encodeFrame(seq, 1, payload))

    def test_clientDataSplit(self):
        """A read over 65535 bytes becomes the fewest equal frames, none over 65535."""
        for size in [MAX_PAYLOAD + 1, 2 * MAX_PAYLOAD, 2 * MAX_PAYLOAD + 1, 256 * 1024]:
            payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
            seq = self.session.sndNxt
            got = frames(joined(self.session.clientData(self.channel, payload)))
            sizes = [len(f.payload) for f in got]
            self.assertEqual(len(got), framePieces(size), size)
            self.assertLessEqual(max(sizes), MAX_PAYLOAD)
            self.assertLess(max(sizes) - min(sizes), len(got))
            self.assertEqual(b"".join(f.payload for f in got), payload)
            self.assertEqual([f.seq for f in got], list(range(seq, seq + len(got))))
            self.assertEqual({f.channel for f in got}, {1})

    def test_clientDataEmpty(self):
        self.assertEqual(joined(self.session.clientData(self.channel, b"")), b"")
        self.assertEqual(self.session.sndNxt, 1)

    def test_clientFinished(self):
        """The first end of input makes a CHANNEL_FIN; nothing more is sent on the channel."""
        self.assertEqual(joined(self.session.clientFinished(self.channel)), fin(1, 1))
        self.assertIs(self.channel.state, ChannelState.CLIENT_FINISHED)
        self.assertIsNone(joined(self.session.clientFinished(self.channel)))
        self.assertEqual(joined(self.session.clientData(self.channel, b"late")), b"")
        self.assertEqual(self.session.sndNxt, 2)
        self.assertIn(1, self.session.channels)

    def test_nothingOnceClosed(self):
        self.session.closeFinished(self.link.receive(fin(0, 1), 1.0))
        self.assertIs(self.channel.state, ChannelState.CLOSED)
        self.assertEqual(joined(self.session.clientData(self.channel, b"late")), b"")
        self.assertIsNone(joined(self.session.clientFinished(self.channel)))
        self.assertEqual(self.session.sndNxt, 1)

    def test_keepalive(self):
        """A KEEPALIVE carries the next sequence number and does not consume it."""
        self.assertEqual(self.session.keepalive(), encodeKeepalive(1))
        self.assertEqual((self.session.sndNxt, self.session.unacked), (1, 1))

    def test_queuedWhileZombie(self):
        """
        Frames made while not connected are numbered and kept, not
        returned; a resume sends them after MASTER_OK.
        """
        self.link.receive(encodeAck(0, 0) + data(0, 1, b"r"), 1.0)
        self.session.advance(Input.LINK_LOST)
        self.assertEqual(joined(self.session.clientData(self.channel, b"while away")), b"")
        other, new = self.session.openChannel("other")
        self.assertEqual(joined(new), b"")
        self.assertEqual(joined(self.session.clientFinished(self.channel)), b"")
        self.assertEqual(self.session.unackedSequences(), [1, 2, 3])
        self.session.advance(Input.RESUME_ACCEPTED)
        self.assertEqual(
            joined(self.session.resume(1)),
            encodeMasterOk(1)
            + data(1, 1, b"while away")
            + encodeFrame(2, 0, channelNewPayload(2))
            + fin(3, 1),
        )
        self.assertEqual(self.session.resumes, 1)

    def test_resumeForgetsWhatScamperHas(self):
        sent = [joined(self.channelNew)] + [joined(self.session.clientData(self.channel, b"%d" % i)) for i in range(3)]
        self.session.advance(Input.LINK_LOST)
        self.session.advance(Input.RESUME_ACCEPTED)
        self.assertEqual(joined(self.session.resume(2)), encodeMasterOk(0) + sent[2] + sent[3])
        self.assertEqual(self.session.unackedSequences(), [2, 3])
        self.assertEqual(self.session.unackedBytes, len(sent[2]) + len(sent[3]))
        self.assertEqual(joined(self.session.resume(4)), encodeMasterOk(0))
        self.assertEqual((self.session.unacked, self.session.unackedBytes, self.session.resumes), (0, 0, 2))

    def test_resumeAcrossTheWrap(self):
        session = Session()
        session.advance(Input.REGISTERED)
        session.sndNxt = TOP - 1
        session.rcvNxt = 77
        sent = [joined(session.openChannel(i)[1]) for i in range(4)]
        self.assertEqual([f.seq for f in frames(b"".join(sent))], [TOP - 1, TOP, 0, 1])
        self.assertEqual(joined(session.resume(TOP)), encodeMasterOk(77) + b"".join(sent[1:]))
        self.assertEqual(joined(session.resume(1)), encodeMasterOk(77) + sent[3])
        self.assertEqual(session.unackedSequences(), [1])


class ChannelNumberingTests(SynchronousTestCase):
    def test_startsAtOne(self):
        session = Session()
        self.assertEqual([session.openChannel(None)[0].number for _ in range(3)], [1, 2, 3])

    def test_notReusedAfterClose(self):
        """Numbers go on counting; a closed one is not handed out again before the wrap."""
        session, link = connect()
        one, _ = session.openChannel(None)
        session.closeFinished(link.receive(fin(0, 1), 1.0))
        self.assertEqual(session.openChannel(None)[0].number, 2)

    def test_skipsOpenNumbers(self):
        session = Session()
        session.channels[2] = Channel(2, None)  # as if still open from before a wrap
        self.assertEqual([session.openChannel(None)[0].number for _ in range(2)], [1, 3])

    def test_wrapsSkippingZeroAndOpen(self):
        session = Session()
        first, _ = session.openChannel(None)
        session._nextChannel = TOP  # white box: 2**32 openings are too many
        numbers = [session.openChannel(None)[0].number for _ in range(3)]
        self.assertEqual(numbers, [TOP, 2, 3])
        self.assertIn(first.number, session.channels)
        self.assertNotIn(0, session.channels)


class ResumeProblemTests(SynchronousTestCase):
    """docs/protocol.rst 3.9, checks A and B."""

    def session(self, sndNxt=0, rcvNxt=0, sent=0):
        session = Session()
        session.advance(Input.REGISTERED)
        session.sndNxt, session.rcvNxt = sndNxt, rcvNxt
        for i in range(sent):
            session.openChannel(i)
        return session

    def problem(self, session, rcvNxt, sndUna, sndNxt):
        return session.resumeProblem(MasterRes(MAGIC, rcvNxt, sndUna, sndNxt))

    def test_checkA(self):
        """scamper's rcv_nxt must be our sndNxt or a message we still hold."""
        session = self.session(sndNxt=10, rcvNxt=5, sent=3)  # unacked 10, 11, 12; sndNxt 13
        for rcvNxt in [10, 11, 12, 13]:
            self.assertIsNone(self.problem(session, rcvNxt, 5, 5), rcvNxt)
        for rcvNxt in [9, 14, 0, TOP]:
            self.assertEqual(
                self.problem(session, rcvNxt, 5, 5), "scamper expects seq %d, which we no longer hold" % (rcvNxt,)
            )

    def test_checkB(self):
        """Our rcvNxt must lie in scamper's send window, both ends included."""
        session = self.session(rcvNxt=5)
        for una, nxt in [(5, 5), (0, 5), (5, 9), (1, 9)]:
            self.assertIsNone(self.problem(session, 0, una, nxt), (una, nxt))
        for una, nxt in [(6, 9), (0, 4), (6, 4)]:
            self.assertEqual(
                self.problem(session, 0, una, nxt),
                "scamper's send window %d:%d does not hold our next expected seq 5" % (una, nxt),
            )

    def test_checkAAcrossTheWrap(self):
        session = self.session(sndNxt=TOP - 1, sent=4)  # unacked TOP-1, TOP, 0, 1; sndNxt 2
        for rcvNxt in [TOP - 1, TOP, 0, 1, 2]:
            self.assertIsNone(self.problem(session, rcvNxt, 0, 0), rcvNxt)
        for rcvNxt in [TOP - 2, 3]:
            self.assertIsNotNone(self.problem(session, rcvNxt, 0, 0), rcvNxt)

    def test_checkBAcrossTheWrap(self):
        session = self.session(rcvNxt=2)
        for una, nxt in [(TOP - 3, 5), (TOP, 2), (2, 2), (TOP, 0x7FFFFFFF)]:
            self.assertIsNone(self.problem(session, 0, una, nxt), (una, nxt))
        for una, nxt in [(3, 5), (TOP - 3, 1), (TOP - 3, TOP)]:
            self.assertIsNotNone(self.problem(session, 0, una, nxt), (una, nxt))
        session = self.session(rcvNxt=TOP)
        self.assertIsNone(self.problem(session, 0, TOP, 0))
        self.assertIsNone(self.problem(session, 0, TOP - 5, TOP))
        self.assertIsNotNone(self.problem(session, 0, 0, 3))
        self.assertIsNotNone(self.problem(session, 0, TOP - 5, TOP - 1))

    @SETTINGS
    @given(st.integers(0, TOP), st.integers(0, 0x7FFFFFFF), st.integers(0, 0x7FFFFFFF), st.integers(1, 0x7FFFFFFE))
    def test_checkBSerial(self, rcvNxt, below, above, outside):
        """Check B compares as serial numbers wherever the window lies."""
        session = self.session(rcvNxt=rcvNxt)
        window = ((rcvNxt - below) & TOP, (rcvNxt + above) & TOP)
        self.assertIsNone(self.problem(session, 0, *window))
        self.assertIsNotNone(self.problem(session, 0, (rcvNxt + outside) & TOP, (rcvNxt + 0x7FFFFFFF) & TOP))
        self.assertIsNotNone(self.problem(session, 0, (rcvNxt - 0x7FFFFFFF) & TOP, (rcvNxt - outside) & TOP))


# Timers -----------------------------------------------------------------


class TimerTests(SynchronousTestCase):
    def test_defaults(self):
        self.assertEqual(
            Timeouts(), Timeouts(registration=REGISTRATION_TIMEOUT, silence=SILENCE_TIMEOUT, keepalive=KEEPALIVE_INTERVAL)
        )
        self.assertEqual((REGISTRATION_TIMEOUT, SILENCE_TIMEOUT, KEEPALIVE_INTERVAL), (30.0, 60.0, 30.0))

    def test_registrationTimeout(self):
        link = Link(100.0)
        self.assertEqual(link.deadline(), 130.0)
        self.assertEqual(link.timerDue(129.9), (None, b""))
        self.assertEqual(link.timerDue(130.0), ("registration", b""))

    def test_bytesDoNotExtendRegistration(self):
        link = Link(100.0)
        link.receive(encodeMasterNew(MAGIC)[:5], 120.0)
        self.assertEqual(link.deadline(), 130.0)
        self.assertEqual(link.timerDue(130.0), ("registration", b""))

    def test_keepaliveThenSilence(self):
        """After attach: a KEEPALIVE per 30 s we send nothing, silent 60 s after scamper's last byte."""
        session, link = connect(now=0.0)
        link.receive(control(0, ControlType.KEEPALIVE), 5.0)
        self.assertEqual(link.deadline(), 30.0)
        self.assertEqual(link.timerDue(29.0), (None, b""))
        self.assertEqual(link.timerDue(30.0), (None, encodeKeepalive(0)))
        self.assertEqual(link.lastSent, 30.0)
        self.assertEqual(link.deadline(), 60.0)
        session.openChannel(None)
        self.assertEqual(link.timerDue(60.0), (None, encodeKeepalive(1)))
        self.assertEqual(link.deadline(), 65.0)
        self.assertEqual(link.timerDue(64.9), (None, b""))
        self.assertEqual(link.timerDue(65.0), ("silent", b""))

    def test_writesPostponeKeepalive(self):
        """The caller records its writes in C{lastSent}."""
        session, link = connect(now=0.0)
        link.lastSent = 20.0
        self.assertEqual(link.timerDue(30.0), (None, b""))
        self.assertEqual(link.deadline(), 50.0)

    def test_readsPostponeSilence(self):
        session, link = connect(now=0.0)
        link.lastSent = 1000.0  # no keepalive in the way
        link.receive(encodeKeepalive(0)[:3], 50.0)
        self.assertEqual(link.deadline(), 110.0)
        link.receive(b"", 100.0)  # an empty read is no sign of life
        self.assertEqual(link.timerDue(109.0), (None, b""))
        self.assertEqual(link.timerDue(110.0), ("silent", b""))

    def test_shortenedTimeouts(self):
        timeouts = Timeouts(registration=1.0, silence=4.0, keepalive=2.0)
        link = Link(0.0, timeouts)
        self.assertEqual(link.timerDue(1.0), ("registration", b""))
        session, link = connect(0.0, timeouts)
        self.assertEqual(link.timerDue(2.0), (None, encodeKeepalive(0)))
        self.assertEqual(link.timerDue(4.0), ("silent", b""))


# The lifecycle ----------------------------------------------------------

R, C, Z, G = State.REGISTERING, State.CONNECTED, State.ZOMBIE, State.GONE
LEGAL = {
    (R, Input.REGISTERED): C,
    (R, Input.SOCKET_FAILED): G,
    (R, Input.FREED): G,
    (C, Input.TAKEOVER): C,
    (C, Input.RESUME_REJECTED): C,
    (C, Input.LINK_LOST): Z,
    (C, Input.RELEASED): G,
    (C, Input.PROTOCOL_ERROR): G,
    (C, Input.FREED): G,
    (Z, Input.RESUME_ACCEPTED): C,
    (Z, Input.RESUME_REJECTED): Z,
    (Z, Input.EXPIRED): G,
    (Z, Input.REPLACED): G,
    (Z, Input.EVICTED): G,
    (Z, Input.FREED): G,
}


class LifecycleTests(SynchronousTestCase):
    def test_table(self):
        self.assertEqual(TRANSITIONS, LEGAL)

    def test_legalTransitions(self):
        for (state, event), after in LEGAL.items():
            self.assertIs(advance(state, event), after, (state, event))

    def test_illegalTransitions(self):
        for state in State:
            for event in Input:
                if (state, event) not in LEGAL:
                    self.assertRaises(LifecycleError, advance, state, event)

    def test_goneIsFinal(self):
        for event in Input:
            error = self.assertRaises(LifecycleError, advance, G, event)
            self.assertEqual(str(error), "%s in state gone" % (event.value,))

    def test_sessionAdvance(self):
        session = Session()
        self.assertIs(session.state, R)
        path = [
            (Input.REGISTERED, C),
            (Input.TAKEOVER, C),
            (Input.LINK_LOST, Z),
            (Input.RESUME_REJECTED, Z),
            (Input.RESUME_ACCEPTED, C),
            (Input.PROTOCOL_ERROR, G),
        ]
        for event, after in path:
            self.assertIs(session.advance(event), after)
            self.assertIs(session.state, after)
        self.assertRaises(LifecycleError, session.advance, Input.RESUME_ACCEPTED)
        self.assertIs(session.state, G)

    def test_illegalLeavesSessionAlone(self):
        session = Session()
        self.assertRaises(LifecycleError, session.advance, Input.LINK_LOST)
        self.assertIs(session.state, R)


# Properties -------------------------------------------------------------

payloads = st.binary(max_size=40) | st.builds(lambda n, b: bytes([b]) * n, st.integers(0, 3 * MAX_PAYLOAD), st.integers(0, 255))


@st.composite
def cuts(draw, stream):
    """C{stream} cut into consecutive pieces at arbitrary points."""
    points = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=4)))
    pieces, start = [], 0
    for point in points + [len(stream)]:
        pieces.append(stream[start:point])
        start = point
    return pieces


class ModelScamper:
    """
    scamper's side of one session: the suite's fake scamper
    (L{tests.peer.ScamperPeer}, which numbers, keeps and checks every
    frame as docs/protocol.rst 1.3 and 2.6 have scamper do, with ACKs
    sent when told), and the wire between it and the engine.

    @ivar wire: the frames written towards the daemon and not yet read by
        it, each as C{[bytes, what]}; C{partial} bytes of the first are read.
    @ivar lengths: the length of every acked frame received, by sequence.
    """

    def __init__(self):
        self.peer = ScamperPeer(MAGIC, autoAck=False)
        # Registered: the engine's session was made by connect().
        self.peer.masterNew()
        self.peer.receive(encodeMasterId("127.0.0.1:1"))
        assert self.peer.established
        self.sent = defaultdict(list)  # payloads scamper sent, by channel
        self.received = defaultdict(list)  # payloads the daemon sent, by channel
        self.lengths = {}
        self.wire = deque()
        self.partial = 0

    # The peer's state, as the harness reads it -------------------------

    sndNxt = property(lambda self: self.peer.sndNxt)
    rcvNxt = property(lambda self: self.peer.rcvNxt)
    unacked = property(lambda self: self.peer.unacked)
    toAck = property(lambda self: self.peer.owed, doc="Sequence numbers received, not yet acknowledged.")

    @property
    def known(self):
        """Channel number -> can scamper still send on it?"""
        return {number: not channel.finished for number, channel in self.peer.channels.items()}

    # Sending ---------------------------------------------------------------

    def _write(self, frame, what, connected):
        if connected:
            self.wire.append([frame, what])

    def sendData(self, number, payload, connected):
        assert self.known[number]
        self.sent[number].append(payload)
        seq = self.peer.sndNxt
        self._write(self.peer.data(number, payload), ("data", seq, number, payload), connected)

    def sendFin(self, number, connected):
        seq = self.peer.sndNxt
        self._write(self.peer.finish(number), ("fin", seq, number), connected)

    def sendAck(self):
        seq = self.peer.owed[0]
        self._write(self.peer.ack(1), ("ack", seq), True)

    def sendKeepalive(self):
        self._write(self.peer.keepalive(), ("keepalive",), True)

    def pending(self):
        return sum(len(frame) for frame, _ in self.wire) - self.partial

    def take(self, count):
        """The next C{count} bytes of the wire, and what the frames they complete are."""
        chunk, done = [], []
        while count:
            frame, what = self.wire[0]
            part = frame[self.partial : self.partial + count]
            chunk.append(part)
            count -= len(part)
            self.partial += len(part)
            if self.partial == len(frame):
                done.append(what)
                self.wire.popleft()
                self.partial = 0
        return b"".join(chunk), done

    # Receiving -------------------------------------------------------------

    def read(self, stream):
        for event in self.peer.receive(stream):
            if isinstance(event, (Data, ChannelOpened, ChannelFinished)):
                self.lengths[event.frame.seq] = HEADER_SIZE + len(event.frame.payload)
            if isinstance(event, Data):
                self.received[event.channel].append(event.payload)
        assert self.peer.violations == [], self.peer.violations

    def lost(self):
        self.wire.clear()
        self.partial = 0
        self.peer.connectionLost()

    def masterRes(self):
        return parseControl(self.peer.masterRes()[HEADER_SIZE:])

    def masterOk(self, frame):
        """Resumed: the peer forgets what the daemon has; the rest goes out again."""
        [event] = self.peer.receive(frame)
        assert isinstance(event, Resumed), event
        assert self.peer.violations == [], self.peer.violations
        self.peer.takeOutput()  # the same frames, written here with what they are
        for sent in self.peer.unackedFrames():
            if sent.channel:
                what = ("data", sent.seq, sent.channel, sent.payload)
            else:
                what = ("fin", sent.seq, int.from_bytes(sent.payload[1:5], "big"))
            self._write(encodeFrame(*sent), what, True)


class Harness:
    """
    A session, its current link, a model scamper, and what the engine is
    expected to do, checked step by step.
    """

    TIMEOUTS = Timeouts(registration=30.0, silence=60.0, keepalive=30.0)

    def __init__(self, test, draw):
        self.test = test
        self.draw = draw
        self.now = 0.0
        self.scamper = ModelScamper()
        self.session, self.link = connect(self.now, self.TIMEOUTS)
        self.toScamper = bytearray()  # the engine's bytes in flight to scamper
        self.channels = {}  # number -> Channel, as opened
        self.expected = {}  # number -> the ChannelState the channel must be in
        self.clientSent = defaultdict(list)
        self.delivered = defaultdict(list)
        self.emitted = 0  # bytes of acked frames the engine made
        self.removed = 0  # ... and has since dropped (ACKed, or resumed past)
        self.una = 0  # the oldest of them the engine should still hold

    @property
    def connected(self):
        return self.session.state is State.CONNECTED

    def emit(self, out):
        if self.connected:
            self.toScamper += out
            if out:
                self.link.lastSent = self.now
        else:
            self.test.assertEqual(out, b"")

    def check(self):
        t, session, scamper = self.test, self.session, self.scamper
        t.assertEqual(session.unackedBytes, self.emitted - self.removed)
        t.assertEqual(session.unackedSequences(), [(self.una + i) & SEQ_MASK for i in range(session.unacked)])
        t.assertEqual((self.una + session.unacked) & SEQ_MASK, session.sndNxt)
        for number, payloads in self.delivered.items():
            t.assertEqual(payloads, scamper.sent[number][: len(payloads)])
        for number, channel in self.channels.items():
            t.assertIs(channel.state, self.expected[number])

    # Client operations -------------------------------------------------

    def clientOpen(self):
        seq = self.session.sndNxt
        channel, parts = self.session.openChannel(object())
        out = joined(parts)
        self.test.assertNotIn(channel.number, self.channels)
        self.channels[channel.number] = channel
        self.expected[channel.number] = ChannelState.OPEN
        self.emitted += 15
        if self.connected:
            self.test.assertEqual(out, encodeFrame(seq, 0, channelNewPayload(channel.number)))
        self.emit(out)

    def clientChannel(self):
        return self.channels[self.draw(st.sampled_from(sorted(self.channels)))]

    def clientData(self):
        channel = self.clientChannel()
        payload = self.draw(payloads)
        before = self.session.sndNxt
        out = joined(self.session.clientData(channel, payload))
        count = (self.session.sndNxt - before) & SEQ_MASK
        if self.expected[channel.number] is ChannelState.OPEN and payload:
            self.test.assertEqual(count, framePieces(len(payload)))
            self.emitted += HEADER_SIZE * count + len(payload)
            self.clientSent[channel.number].append(payload)
        else:
            self.test.assertEqual((count, out), (0, b""))
        self.emit(out)

    def clientFinish(self):
        channel = self.clientChannel()
        out = joined(self.session.clientFinished(channel))
        if self.expected[channel.number] is ChannelState.OPEN:
            self.expected[channel.number] = ChannelState.CLIENT_FINISHED
            self.emitted += 15
            self.emit(out)
        else:
            self.test.assertIsNone(out)

    # scamper operations ------------------------------------------------

    def scamperData(self):
        numbers = sorted(n for n, live in self.scamper.known.items() if live)
        if not numbers and self.toScamper:
            self.toScamperRead(len(self.toScamper))  # perhaps a CHANNEL_NEW
            numbers = sorted(n for n, live in self.scamper.known.items() if live)
        if numbers:
            number = self.draw(st.sampled_from(numbers))
            self.scamper.sendData(number, self.draw(st.binary(max_size=30)), self.connected)

    def scamperFin(self):
        numbers = sorted(n for n, live in self.scamper.known.items() if live)
        if numbers:
            self.scamper.sendFin(self.draw(st.sampled_from(numbers)), self.connected)

    def scamperAck(self):
        if self.connected and self.scamper.toAck:
            self.scamper.sendAck()

    def scamperKeepalive(self):
        if self.connected:
            self.scamper.sendKeepalive()

    # The wire ----------------------------------------------------------

    def toEngine(self, count=None):
        """Deliver some of scamper's bytes to the link, in arbitrary reads."""
        if not self.connected:
            return
        pending = self.scamper.pending()
        if count is None:
            count = self.draw(st.integers(0, pending))
        for size in self.draw(st.lists(st.integers(0, count), max_size=2)) + [count]:
            self.read(min(size, count))
            count -= min(size, count)

    def read(self, size):
        t, session = self.test, self.session
        chunk, done = self.scamper.take(size)
        result = self.link.receive(chunk, self.now)
        t.assertIsNone(result.error)
        t.assertIsNone(result.request)
        t.assertEqual(self.link.buffered, self.scamper.partial)
        deliveries, acked, finished = {}, [], []
        for what in done:
            if what[0] == "data":
                deliveries.setdefault(what[2], []).append(what[3])
                acked.append(what[1])
            elif what[0] == "fin":
                finished.append(self.channels[what[2]])
                acked.append(what[1])
            elif what[0] == "ack":
                t.assertEqual(what[1], self.una)
                self.removed += self.scamper.lengths[what[1]]
                self.una = (self.una + 1) & SEQ_MASK
        t.assertEqual(byNumber(result), list(deliveries.items()))
        t.assertEqual(result.toScamper, b"".join(encodeAck(session.sndNxt, seq) for seq in acked))
        t.assertEqual(result.finished, finished)
        for channel, payloads in result.deliveries.items():
            t.assertIs(channel, self.channels[channel.number])
            t.assertIsNot(channel.state, ChannelState.CLOSED)  # nothing after the close
            self.delivered[channel.number] += payloads
        session.closeFinished(result)
        for channel in finished:
            self.expected[channel.number] = ChannelState.CLOSED
            t.assertNotIn(channel.number, session.channels)
        self.emit(result.toScamper)

    def toScamperRead(self, count=None):
        if count is None:
            count = self.draw(st.integers(0, len(self.toScamper)))
        self.scamper.read(bytes(self.toScamper[:count]))
        del self.toScamper[:count]

    # Time, loss and resume ---------------------------------------------

    def tick(self):
        if not self.connected:
            return
        self.now += self.draw(st.sampled_from([0.5, 10.0, 29.0, 31.0]))
        deadline = self.link.deadline()
        expired, keepalive = self.link.timerDue(self.now)
        if self.now < deadline:
            self.test.assertEqual((expired, keepalive), (None, b""))
        if expired is not None:
            self.test.assertEqual(expired, "silent")
            self.test.assertGreaterEqual(self.now, self.link.lastReceived + self.TIMEOUTS.silence)
            self.lose()
        elif keepalive:
            self.test.assertEqual(keepalive, encodeKeepalive(self.session.sndNxt))
            self.emit(keepalive)

    def lose(self):
        if self.connected:
            self.session.advance(Input.LINK_LOST)
            self.scamper.lost()
            self.toScamper.clear()

    def resume(self):
        """scamper reconnects with MASTER_RES (a takeover if the old link is still up)."""
        t, session, scamper = self.test, self.session, self.scamper
        event = Input.RESUME_ACCEPTED
        if self.connected:
            event = Input.TAKEOVER
            scamper.lost()
            self.toScamper.clear()
        link = Link(self.now, self.TIMEOUTS)
        message = scamper.masterRes()
        stream = encodeMasterRes(MAGIC, message.rcv_nxt, message.snd_una, message.snd_nxt)
        pieces = self.draw(cuts(stream))
        while len(pieces) > 1 and not pieces[-1]:
            pieces.pop()  # the request comes with the piece that completes it
        for piece in pieces[:-1]:
            t.assertTrue(isEmpty(link.receive(piece, self.now)))
        result = link.receive(pieces[-1], self.now)
        t.assertEqual(result.request, message)
        t.assertIsNone(session.resumeProblem(message))
        session.advance(event)
        self.link = link
        link.attach(session)
        out = joined(session.resume(message.rcv_nxt))
        t.assertTrue(isEmpty(link.receive(b"", self.now)))
        while self.una != message.rcv_nxt:
            self.removed += scamper.lengths[self.una]
            self.una = (self.una + 1) & SEQ_MASK
        t.assertEqual(out[:15], encodeMasterOk(session.rcvNxt))
        scamper.masterOk(out[:15])
        self.toScamper = bytearray(out[15:])
        link.lastSent = self.now

    def settle(self):
        """Resume if need be, and exchange everything until nothing is left to say."""
        if not self.connected:
            self.resume()
        while self.toScamper or self.scamper.toAck or self.scamper.wire:
            self.toScamperRead(len(self.toScamper))
            while self.scamper.toAck:
                self.scamper.sendAck()
            self.toEngine(self.scamper.pending())
            self.check()

    # Names, repeated for weight: traffic more often than losses.
    OPERATIONS = (
        ["clientOpen", "clientFinish", "scamperFin", "scamperKeepalive", "tick", "lose", "resume"]
        + ["clientData", "scamperAck"] * 2
        + ["scamperData", "toEngine", "toScamperRead"] * 3
    )

    def run(self, steps):
        self.clientOpen()
        for _ in range(steps):
            name = self.draw(st.sampled_from(self.OPERATIONS))
            live = sum(state is not ChannelState.CLOSED for state in self.expected.values())
            if name == "clientOpen" and live >= 4:
                continue
            getattr(self, name)()
            self.check()
        self.settle()
        t, session, scamper = self.test, self.session, self.scamper
        for number in set(scamper.sent) | set(self.delivered):
            t.assertEqual(self.delivered[number], scamper.sent[number], number)
        for number in set(scamper.received) | set(self.clientSent):
            t.assertEqual(b"".join(scamper.received[number]), b"".join(self.clientSent[number]), number)
        t.assertEqual((session.unacked, session.unackedBytes, len(scamper.unacked)), (0, 0, 0))
        t.assertEqual((session.rcvNxt, scamper.rcvNxt), (scamper.sndNxt, session.sndNxt))


class SessionProperties(SynchronousTestCase):
    @MODEL_SETTINGS
    @given(st.integers(0, 60), st.data())
    def test_modelScamper(self, steps, data):
        """
        Any interleaving of client and scamper traffic, reads cut
        anywhere, losses and resumes: every acked message is delivered
        exactly once and in order, each way; the sequence numbers and
        ACKs are exact; C{unackedBytes} is exact at every step.
        """
        Harness(self, data.draw).run(steps)

    @SETTINGS
    @given(st.lists(payloads, max_size=6), st.data())
    def test_clientDataFrames(self, reads, data):
        """Client reads become consecutive frames whose payloads, joined, are the reads."""
        session, link = connect()
        channel, _ = session.openChannel(None)
        out = b"".join(joined(session.clientData(channel, read)) for read in reads)
        got = frames(out)
        self.assertEqual([f.seq for f in got], list(range(1, 1 + len(got))))
        self.assertEqual(b"".join(f.payload for f in got), b"".join(reads))
        self.assertEqual(len(got), sum(framePieces(len(read)) for read in reads))
        self.assertTrue(all(len(f.payload) <= MAX_PAYLOAD for f in got))
        self.assertEqual(session.unackedBytes, len(out) + 15)


@st.composite
def afterRegistration(draw):
    """
    Valid frames for a session that has sent CHANNEL_NEW 1 and 2 (seqs 0
    and 1), and what the engine must make of them: (stream, deliveries
    by channel number, ACKed seqs, finished channel numbers).
    """
    stream, delivered, acked, finished = [], defaultdict(list), [], []
    seq, outstanding, live = 0, [0, 1], [1, 2]
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["data", "data", "keepalive", "ack", "fin"]))
        if kind == "data" and live:
            number, payload = draw(st.sampled_from(live)), draw(st.binary(max_size=20))
            stream.append(data(seq, number, payload))
            delivered[number].append(payload)
        elif kind == "fin" and live:
            number = draw(st.sampled_from(live))
            live.remove(number)
            stream.append(fin(seq, number))
            finished.append(number)
        elif kind == "ack" and outstanding:
            stream.append(encodeAck(seq, outstanding.pop(0)))
            continue
        else:
            stream.append(encodeKeepalive(seq))
            continue
        acked.append(seq)
        seq += 1
    return b"".join(stream), dict(delivered), acked, finished, seq


class RegistrationProperties(SynchronousTestCase):
    @SETTINGS
    @given(afterRegistration(), st.one_of(st.none(), st.integers(0, 99)), st.data())
    @example((b"", {}, [], [], 0), 2, None)
    def test_registrationReadCutAnywhere(self, frames, bad, data):
        """
        MASTER_NEW and what follows it, cut anywhere: once the session is
        attached the rest decodes as if it came in one read after it;
        a wrong header at the end, its payload incomplete, is refused.

        Against the engine as committed (bda87cf) this fails with C{bad}
        set and nothing between the MASTER_NEW and the wrong header: see
        L{RegistrationTests.test_heldHeaderCheckedOnceAttached}.
        """
        stream, expected, acked, finished, rcvNxt = frames
        if bad is not None:
            stream += HEADER.pack(rcvNxt + 5, 1, 100) + b"x" * bad
        stream = encodeMasterNew(MAGIC) + stream
        session = Session()
        for end in ["one", "two"]:
            session.openChannel(end)
        link = Link(0.0)
        delivered, toScamper, done, error = defaultdict(list), b"", [], None
        for piece in data.draw(cuts(stream)) if data is not None else [stream]:
            results = [link.receive(piece, 1.0)]
            if results[0].request is not None:
                self.assertIsNone(link.session)
                session.advance(Input.REGISTERED)
                link.attach(session)
                results.append(link.receive(b"", 1.0))
            for result in results:
                for number, payloads in byNumber(result):
                    delivered[number] += payloads
                toScamper += result.toScamper
                done += [channel.number for channel in result.finished]
                error = error or result.error
            if error is not None:
                break
        self.assertIs(link.session, session)
        self.assertEqual((dict(delivered), done), (expected, finished))
        if bad is None:
            self.assertIsNone(error)
            self.assertEqual(toScamper, encodeAcks(2, acked))
            self.assertEqual((session.rcvNxt, link.buffered), (rcvNxt, 0))
        else:
            self.assertEqual(error, "got seq %d expected %d" % (rcvNxt + 5, rcvNxt))


def garbageFrames():
    """Frames that are nearly right: sequences, channels and control messages close to valid."""
    controls = st.sampled_from(
        [
            encodeAck(0, 0)[HEADER_SIZE:],
            encodeAck(0, 1)[HEADER_SIZE:],
            encodeAck(0, 2)[HEADER_SIZE:],
            encodeKeepalive(0)[HEADER_SIZE:],
            channelFinPayload(1),
            channelFinPayload(2),
            channelFinPayload(9),
            channelNewPayload(3),
            encodeMasterNew(MAGIC)[HEADER_SIZE:],
            encodeMasterOk(1)[HEADER_SIZE:],
            b"",
            b"\x09",
            b"\x05\x00",
        ]
    )
    frame = st.builds(
        encodeFrame,
        st.integers(0, 4) | st.integers(0, TOP),
        st.sampled_from([0, 0, 1, 2, 3]) | st.integers(0, TOP),
        controls | st.binary(max_size=20),
    )
    return st.lists(frame, max_size=8).map(b"".join)


class GarbageProperties(SynchronousTestCase):
    @SETTINGS
    @given(st.binary(max_size=400) | garbageFrames(), st.data())
    @example(HEADER.pack(0, 1, MAX_PAYLOAD), None)
    @example(encodeFrame(0, 0, b""), None)
    def test_garbageAfterRegistration(self, stream, data):
        """
        Whatever bytes follow registration, cut however: C{receive} never
        raises; it returns an error (a string, with nothing for scamper)
        or results that are valid.
        """
        session, link = connect()
        channels = [session.openChannel(None)[0] for _ in range(2)]
        sent = [15, 15, len(joined(session.clientData(channels[0], b"abc")))]
        pieces = data.draw(cuts(stream)) if data is not None else [stream]
        for piece in pieces:
            before = session.rcvNxt
            result = link.receive(piece, 1.0)
            self.assertIsInstance(result, ReadResult)
            self.assertEqual(session.unackedBytes, sum(sent[len(sent) - session.unacked :]))
            self.assertIsNone(result.request)
            for channel, payloads in result.deliveries.items():
                self.assertIn(channel, channels)
                self.assertTrue(all(isinstance(p, bytes) for p in payloads))
            self.assertTrue(set(result.finished) <= set(channels))
            if result.error is not None:
                self.assertIsInstance(result.error, str)
                self.assertEqual(result.toScamper, b"")
                return
            acks = frames(result.toScamper)
            self.assertEqual([parseControl(f.payload) for f in acks], [Ack(s & TOP) for s in range(before, session.rcvNxt)])
            self.assertTrue(all(f.seq == session.sndNxt for f in acks))
            session.closeFinished(result)

    @SETTINGS
    @given(st.binary(max_size=400) | garbageFrames(), st.data())
    def test_garbageBeforeRegistration(self, stream, data):
        """Before registration any bytes give nothing yet, a request, or an error; never an exception."""
        link = Link(0.0)
        for piece in data.draw(cuts(stream)):
            result = link.receive(piece, 1.0)
            self.assertEqual((result.toScamper, result.deliveries, result.finished), (b"", {}, []))
            if result.error is not None:
                self.assertIsInstance(result.error, str)
                self.assertIsNone(result.request)
                return
            if result.request is not None:
                self.assertIsInstance(result.request, (MasterNew, MasterRes))
                return
