"""
Tests for the mux: the codec, the meta-file, the daemon's sessions with
mux clients (over in-memory transports and a fake scamper), our Twisted
client, and the command line.
"""

import os
import tempfile

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from sc_remoted import wire
from sc_remoted.backlog import STALL_LIMIT
from sc_remoted.controller import Controller
from sc_remoted.mux import codec
from sc_remoted.mux.client import MuxClientProtocol, VantagePointInfo
from sc_remoted.mux.codec import (
    Attribute,
    ChannelClose,
    ChannelOpen,
    Go,
    MessageTooLarge,
    MuxDecoder,
    MuxError,
    UnknownControl,
    VpDepart,
    VpUpdate,
    encodeChannelClose,
    encodeChannelOpen,
    encodeData,
    encodeGo,
    encodeMessage,
    encodeVpDepart,
    encodeVpUpdate,
    parseControl,
)
from sc_remoted.endpoints import parseAddress
from sc_remoted.limits import Limits
from sc_remoted.mux.listen import (
    MuxPortError,
    MuxSocketService,
    checkMuxPortAddress,
)
from sc_remoted.mux.metadata import Metadata, MetadataError, parseMetadata
from sc_remoted.mux.server import MAX_MALFORMED, MuxFactory, formatArrival, vantagePointAttributes
from sc_remoted.service import ControllerService, SighupService, StartupError
from sc_remoted.tap import Options, makeService
from sc_remoted.wire import encodeFrame

from .fakes import SocketsReactor
from .peer import Acked, ChannelFinished, ChannelOpened, Data
from .peer_twisted import MemoryScamper

MAGIC = b"\x01\x02\x03\x04\x05\x06\x07\x08"
OTHER_MAGIC = b"\x11\x12\x13\x14\x15\x16\x17\x18"
THIRD_MAGIC = b"\x21\x22\x23\x24\x25\x26\x27\x28"

META = """\
# name attr value
vp1 cc US
vp1 CC NZ
vp1 place Hamilton, Waikato
vp1 tag ark
vp1 TAG  ipv6 capable
vp1 asn4 681

vp1 unknown ignored value
vp2 shortname two
"""


def writeMetadata(testCase, text):
    fd, path = tempfile.mkstemp(prefix="meta", dir="/tmp")
    os.close(fd)
    testCase.addCleanup(os.unlink, path)
    with open(path, "w") as f:
        f.write(text)
    return path


# Codec ------------------------------------------------------------------


class CodecTests(SynchronousTestCase):
    def test_layouts(self):
        """Byte for byte what libscamperctrl reads and writes."""
        self.assertEqual(encodeGo(), b"\0\0\0\0" b"\0\0\0\x02" b"\0\x02")
        self.assertEqual(
            encodeChannelOpen(7, 9),
            b"\0\0\0\0" b"\0\0\0\x0a" b"\0\x03" b"\0\0\0\x07" b"\0\0\0\x09",
        )
        self.assertEqual(encodeChannelClose(9), b"\0\0\0\0" b"\0\0\0\x06" b"\0\x04" b"\0\0\0\x09")
        self.assertEqual(encodeVpDepart(3), b"\0\0\0\0" b"\0\0\0\x06" b"\0\x01" b"\0\0\0\x03")
        self.assertEqual(
            encodeVpUpdate(1, [(Attribute.NAME, "vp1"), (Attribute.TAG, "a")]),
            b"\0\0\0\0" b"\0\0\0\x10" b"\0\x00" b"\0\0\0\x01" b"\0\x01vp1\0" b"\0\x0aa\0",
        )
        self.assertEqual(encodeData(5, b"ok\n"), b"\0\0\0\x05\0\0\0\x03ok\n")

    def test_roundTrip(self):
        for message in [
            VpUpdate(2, ((1, "vp"), (2, "1.000001"), (10, "x"), (10, "y"))),
            VpDepart(2),
            Go(),
            ChannelOpen(1, 0xFFFFFFFF),
            ChannelClose(4),
            UnknownControl(99, b"xyz"),
        ]:
            [frame] = MuxDecoder().feed(codec.encodeControl(message))
            self.assertEqual(frame.channel, 0)
            self.assertEqual(parseControl(frame.payload), message)

    def test_decoderCuts(self):
        """Messages cut anywhere, one byte at a time, come out whole and in order."""
        stream = encodeVpUpdate(1, [(1, "a")]) + encodeData(3, b"x" * 300) + encodeGo() + encodeData(4, b"")
        decoder = MuxDecoder()
        frames = []
        for i in range(len(stream)):
            frames.extend(decoder.feed(stream[i : i + 1]))
        self.assertEqual([f.channel for f in frames], [0, 3, 0, 4])
        self.assertEqual(frames[1].payload, b"x" * 300)
        self.assertEqual(decoder.buffered, 0)

    def test_tooLarge(self):
        """A header claiming more than the limit fails before buffering it."""
        decoder = MuxDecoder(1024)
        with self.assertRaises(MessageTooLarge):
            decoder.feed(codec.HEADER.pack(5, 1025))
        self.assertEqual(MuxDecoder(1024).feed(encodeData(5, b"x" * 1024))[0].payload, b"x" * 1024)

    def test_malformed(self):
        for payload, channel in [
            (b"\0", None),
            (b"\0\x03\0\0\0\x01", None),
            (b"\0\x03\0\0\0\x01\0\0\0\x05\0", 5),
            (b"\0\x02x", None),
            (b"\0\x01\0\0", None),
            (b"\0\0\0\0\0\x01\0\x01abc", None),
        ]:
            with self.assertRaises(MuxError, msg=payload) as caught:
                parseControl(payload)
            self.assertEqual(codec.optionalChannel(caught.exception), channel, payload)


# Metadata ---------------------------------------------------------------


class MetadataTests(SynchronousTestCase):
    def test_parse(self):
        """Case-insensitive names, last value wins, tags repeat, unknown skipped."""
        entries = parseMetadata(META)
        self.assertEqual(
            entries["vp1"],
            (
                (Attribute.ASN4, "681"),
                (Attribute.CC, "NZ"),
                (Attribute.PLACE, "Hamilton, Waikato"),
                (Attribute.TAG, "ark"),
                (Attribute.TAG, "ipv6 capable"),
            ),
        )
        self.assertEqual(entries["vp2"], ((Attribute.SHORTNAME, "two"),))

    def test_everyAttribute(self):
        text = "".join("v %s x%s\n" % (name, name) for name in ["asn4", "asn6", "cc", "st", "place", "latlong", "shortname", "iata", "tag"])
        numbers = [attr for attr, _ in parseMetadata(text)["v"]]
        self.assertEqual(numbers, [4, 5, 6, 7, 8, 9, 11, 13, 10])

    def test_tooFewFields(self):
        with self.assertRaises(MetadataError) as caught:
            parseMetadata("vp1 cc US\nvp2 cc\n", "meta")
        self.assertIn("meta line 2", str(caught.exception))

    def test_missingFile(self):
        with self.assertRaises(MetadataError):
            Metadata("/nonexistent/meta")

    def test_noName(self):
        metadata = Metadata(writeMetadata(self, META))
        self.assertEqual(metadata.attributesFor(None), ())
        self.assertEqual(metadata.attributesFor("other"), ())
        self.assertEqual(Metadata().attributesFor("vp1"), ())

    def test_reload(self):
        """A bad file keeps the old data (and is logged); a changed one tells listeners."""
        path = writeMetadata(self, META)
        metadata = Metadata(path)
        calls = []
        metadata.addListener(lambda: calls.append(1))
        with open(path, "w") as f:
            f.write("vp1 cc\n")
        with capturedLogs() as events:
            self.assertFalse(metadata.reload())
        self.assertEqual([e["sc_event"] for e in events if "sc_event" in e], ["mux.metadata_reload_failed"])
        self.assertEqual(metadata.attributesFor("vp2"), ((Attribute.SHORTNAME, "two"),))
        self.assertEqual(calls, [])
        with open(path, "w") as f:
            f.write(META)
        self.assertTrue(metadata.reload())
        self.assertEqual(calls, [])
        with open(path, "w") as f:
            f.write("vp2 shortname deux\n")
        self.assertTrue(metadata.reload())
        self.assertEqual(calls, [1])
        self.assertEqual(metadata.attributesFor("vp1"), ())


class AttributeHelperTests(SynchronousTestCase):
    def test_addressAttributes(self):
        """
        The address attribute comes from the connection's address, IPv4 or
        IPv6 (without a scope), not from re-parsing the peer string.
        """

        class Stub:
            monitorname = None
            connectedAt = 5.0

        def attributes(address):
            vp = Stub()
            vp.address = address
            return dict(vantagePointAttributes(vp, None))

        self.assertEqual(attributes(IPv4Address("TCP", "192.0.2.1", 4000))[int(Attribute.IPV4)], "192.0.2.1")
        v6 = attributes(IPv6Address("TCP", "fe80::1%eth0", 1026))
        self.assertEqual(v6[int(Attribute.IPV6)], "fe80::1")
        self.assertNotIn(int(Attribute.IPV4), v6)
        self.assertEqual(attributes(None), {int(Attribute.ARRIVAL): "5.000000"})

    def test_arrival(self):
        self.assertEqual(formatArrival(1700000000.25), "1700000000.250000")
        self.assertEqual(formatArrival(5.0000004), "5.000000")


# Sessions ---------------------------------------------------------------


class FakeMuxClient:
    """A mux client over a StringTransport: raw bytes in, decoded messages out."""

    def __init__(self, factory):
        self.transport = StringTransport()
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        self._decoder = MuxDecoder()

    def send(self, data):
        self.protocol.dataReceived(data)

    def received(self):
        """Control messages decoded, data as (channel, bytes)."""
        data = self.transport.value()
        self.transport.clear()
        out = []
        for channel, payload in self._decoder.feed(data):
            out.append(parseControl(payload) if channel == 0 else (channel, payload))
        return out

    def open(self, vp, channel):
        self.send(encodeChannelOpen(vp, channel))

    def close(self):
        self.transport.disconnecting = True
        self.protocol.connectionLost(Failure(ConnectionDone()))


class MuxSessionTestCase(SynchronousTestCase):
    """A controller (no sockets directory), a mux factory, VPs on demand."""

    metadataText = META

    def setUp(self):
        self.reactor = SocketsReactor()
        self.reactor.advance(1700000000.5)
        self.controller = Controller(self.reactor, None)
        self.metadata = Metadata(writeMetadata(self, self.metadataText))
        self.factory = MuxFactory(self.controller, self.metadata)

    def register(self, magic=MAGIC, port=42694, monitorname="vp1", host="127.0.0.1"):
        scamper = MemoryScamper(self.controller, host=host, port=port, magic=magic, monitorname=monitorname)
        scamper.register()
        scamper.received()
        self.addCleanup(lambda: self.assertEqual(scamper.violations, []))
        return scamper

    def sendData(self, scamper, channel, payload):
        scamper.sendData(channel, payload)

    def sendFin(self, scamper, number):
        scamper.sendFin(number)

    def vp(self, scamper):
        return scamper.protocol.vp

    def channelNews(self, scamper):
        """
        The channels scamper was told of, and the other frames (data as
        C{(channel, payload)}, control messages decoded); scamper then
        acknowledges them all.
        """
        news, others = [], []
        for event in scamper.receivedEvents():
            if isinstance(event, ChannelOpened):
                news.append(event.channel)
            elif isinstance(event, Data):
                others.append((event.channel, event.payload))
            elif isinstance(event, ChannelFinished):
                others.append(wire.ChannelFin(event.channel))
            elif not isinstance(event, Acked):
                others.append(wire.parseControl(event.frame.payload))
        scamper.ack()
        return news, others


class AcceptTests(MuxSessionTestCase):
    def test_updatesThenGo(self):
        """VP_UPDATE for each connected VP (with its metadata), then GO."""
        self.register()
        self.register(OTHER_MAGIC, port=42695, monitorname=None)
        client = FakeMuxClient(self.factory)
        messages = client.received()
        self.assertEqual(
            messages,
            [
                VpUpdate(
                    1,
                    (
                        (1, "vp1"),
                        (2, "1700000000.500000"),
                        (3, "127.0.0.1"),
                        (4, "681"),
                        (5, "NZ"),
                        (7, "Hamilton, Waikato"),
                        (10, "ark"),
                        (10, "ipv6 capable"),
                    ),
                ),
                VpUpdate(2, ((2, "1700000000.500000"), (3, "127.0.0.1"))),
                Go(),
            ],
        )
        self.assertEqual(len(client.transport.value()), 0)

    def test_ipv6(self):
        self.register(host="2001:db8::7", monitorname="vp2")
        [update, go] = FakeMuxClient(self.factory).received()
        self.assertEqual(update.attributes, ((1, "vp2"), (2, "1700000000.500000"), (12, "2001:db8::7"), (9, "two")))

    def test_zombieNotListed(self):
        """A disconnected VP is not listed to a new client."""
        scamper = self.register()
        scamper.lose()
        self.assertEqual(FakeMuxClient(self.factory).received(), [Go()])

    def test_arrivalAndDeparture(self):
        client = FakeMuxClient(self.factory)
        client.received()
        scamper = self.register(monitorname="vp2")
        [update] = client.received()
        self.assertEqual(update.vp_id, 1)
        self.controller.free(self.vp(scamper), "test")
        self.assertEqual(client.received(), [VpDepart(1)])

    def test_idsFromOneCounter(self):
        self.register()
        self.register(OTHER_MAGIC, port=2)
        self.register(THIRD_MAGIC, port=3)
        ids = [m.vp_id for m in FakeMuxClient(self.factory).received()[:-1]]
        self.assertEqual(ids, [1, 2, 3])


class ChannelTests(MuxSessionTestCase):
    def setUp(self):
        super().setUp()
        self.scamper = self.register()
        self.client = FakeMuxClient(self.factory)
        self.client.received()

    def openChannel(self, channel=5):
        self.client.open(1, channel)
        [number], others = self.channelNews(self.scamper)
        self.assertEqual(others, [])
        return number

    def test_relay(self):
        """CHANNEL_OPEN makes a scamper channel; bytes flow both ways; FIN -> CHANNEL_CLOSE."""
        number = self.openChannel(5)
        self.client.send(encodeData(5, b"ping -c 1 127.0.0.1\n"))
        [frame] = self.scamper.received()
        self.assertEqual((frame.channel, frame.payload), (number, b"ping -c 1 127.0.0.1\n"))
        self.scamper.ack()
        self.sendData(self.scamper, number, b"OK id-1\n")
        self.assertEqual(self.client.received(), [(5, b"OK id-1\n")])
        self.sendFin(self.scamper, number)
        self.assertEqual(self.client.received(), [ChannelClose(5)])
        self.assertEqual(self.client.protocol.channels, {})

    def test_largeWriteSplit(self):
        """A 200000-byte data frame reaches scamper in frames of at most 65535 bytes."""
        number = self.openChannel(5)
        self.client.send(encodeData(5, b"x" * 200000))
        frames = self.scamper.received()
        self.assertTrue(all(f.channel == number and len(f.payload) <= 65535 for f in frames))
        self.assertEqual(sum(len(f.payload) for f in frames), 200000)

    def test_oneWritePerVantagePointPerRead(self):
        """
        The data frames of one mux read reach scamper in one write, in
        order; a CHANNEL_OPEN in the middle of the read keeps its place.
        """
        first = self.openChannel(5)
        second = self.openChannel(6)
        writes = []
        transport = self.scamper.protocol.transport
        original = transport.writeSequence
        self.patch(transport, "writeSequence", lambda parts: (writes.append(b"".join(parts)), original(parts)))
        self.client.send(encodeData(5, b"a\n") + encodeData(6, b"b\n") + encodeData(5, b"c\n"))
        self.assertEqual(len(writes), 1)
        self.assertEqual(
            [(f.channel, f.payload) for f in self.scamper.received()],
            [(first, b"a\n"), (second, b"b\n"), (first, b"c\n")],
        )
        self.scamper.ack()
        del writes[:]
        self.client.send(encodeData(5, b"d\n") + encodeChannelOpen(1, 7) + encodeData(5, b"e\n"))
        self.assertEqual(len(writes), 3)
        news, others = self.channelNews(self.scamper)
        self.assertEqual(len(news), 1)
        self.assertEqual(others, [(first, b"d\n"), (first, b"e\n")])
        frames = wire.FrameDecoder().feed(b"".join(writes))
        self.assertEqual([f.seq for f in frames], [5, 6, 7])
        self.assertEqual(wire.parseControl(frames[1].payload), wire.ChannelNew(news[0]))

    def test_unknownChannelDropped(self):
        self.client.send(encodeData(77, b"hello\n"))
        self.assertEqual(self.scamper.received(), [])
        self.assertFalse(self.client.transport.disconnecting)

    def test_tooLargeCostsOnlyThatClient(self):
        other = FakeMuxClient(self.factory)
        other.received()
        number = self.openChannel(5)
        with capturedLogs() as events:
            self.client.send(codec.HEADER.pack(5, codec.MAX_CLIENT_MESSAGE + 1))
        self.assertTrue(self.client.transport.disconnecting)
        self.assertIn("mux.message_too_large", [e.get("sc_event") for e in events])
        self.client.close()
        self.assertEqual(self.channelNews(self.scamper)[1], [wire.ChannelFin(number)])
        self.assertFalse(other.transport.disconnecting)

    def test_clientGoneFinishesChannels(self):
        """A client that disconnects: CHANNEL_FIN for each of its channels."""
        first = self.openChannel(5)
        second = self.openChannel(6)
        self.client.close()
        news, others = self.channelNews(self.scamper)
        self.assertEqual(sorted(m.channel for m in others), sorted([first, second]))
        self.sendData(self.scamper, first, b"late\n")
        self.assertEqual(self.client.received(), [])

    def test_clientCloseIgnored(self):
        """CHANNEL_CLOSE from a client changes nothing (docs/mux.rst)."""
        number = self.openChannel(5)
        self.client.send(encodeChannelClose(5))
        self.assertEqual(self.scamper.received(), [])
        self.sendData(self.scamper, number, b"data\n")
        self.assertEqual(self.client.received(), [(5, b"data\n")])

    def test_channelLimit(self):
        for vp in self.controller.vantagePoints():
            vp.maxChannels = 1
        self.openChannel(5)
        self.client.open(1, 6)
        self.assertEqual(self.client.received(), [ChannelClose(6)])



class BacklogTests(MuxSessionTestCase):
    """
    A mux client that falls behind costs only itself: no vantage point
    stops reading from scamper for it, and what it has not taken is
    bounded by its budget and the stall limit (sc_remoted.backlog).
    """

    limits = Limits(muxClientBudget=3000)

    def setUp(self):
        super().setUp()
        self.controller = Controller(self.reactor, None, limits=self.limits)
        self.factory = MuxFactory(self.controller, self.metadata)
        self.scamper = self.register()
        self.slow = FakeMuxClient(self.factory)
        self.slow.received()

    def openChannel(self, client, channel):
        client.open(self.vp(self.scamper).identifier, channel)
        [number], others = self.channelNews(self.scamper)
        return number

    def test_congestedDoesNotPauseScamper(self):
        """
        While the client's transport is full scamper is still read, the
        other mux client of the VP gets its data at once, and the slow
        one gets its own, in order, once it drains.
        """
        slowChannel = self.openChannel(self.slow, 5)
        other = FakeMuxClient(self.factory)
        other.received()
        otherChannel = self.openChannel(other, 6)
        self.slow.transport.producer.pauseProducing()
        self.assertEqual(self.scamper.transport.producerState, "producing")
        self.sendData(self.scamper, slowChannel, b"one ")
        self.sendData(self.scamper, otherChannel, b"for the other")
        self.sendFin(self.scamper, slowChannel)
        self.assertEqual(other.received(), [(6, b"for the other")])
        self.assertEqual(self.slow.received(), [])
        self.assertEqual(self.controller.budgets.process.used, codec.HEADER.size + 4 + len(codec.encodeChannelClose(5)))
        self.slow.transport.producer.resumeProducing()
        self.assertEqual(self.slow.received(), [(5, b"one "), ChannelClose(5)])
        self.assertEqual(self.controller.budgets.process.used, 0)

    def test_overBudget(self):
        """
        Past its budget the client loses its connection, with one log
        line; its channels get CHANNEL_FIN; the other client carries on.
        """
        slowChannel = self.openChannel(self.slow, 5)
        other = FakeMuxClient(self.factory)
        other.received()
        otherChannel = self.openChannel(other, 6)
        self.slow.transport.producer.pauseProducing()
        with capturedLogs() as events:
            self.sendData(self.scamper, slowChannel, b"x" * 2000)
            self.assertFalse(self.slow.transport.disconnected)
            self.sendData(self.scamper, slowChannel, b"x" * 1000)
        self.assertTrue(self.slow.transport.disconnected)
        [event] = [e for e in events if e.get("sc_event") == "mux.over_budget"]
        self.assertEqual((event["budget"], event["limit"], event["queued"]), ("mux client", 3000, 3000 + 2 * codec.HEADER.size))
        self.assertEqual(self.controller.budgets.process.used, 0)
        self.slow.close()
        news, others = self.channelNews(self.scamper)
        self.assertEqual(others, [wire.ChannelFin(slowChannel)])
        self.sendData(self.scamper, otherChannel, b"still here")
        self.assertEqual(other.received(), [(6, b"still here")])

    def test_announcementsBounded(self):
        """
        A client that never reads and has no channel is told of vantage
        points only up to its budget: then it goes.
        """
        self.slow.transport.producer.pauseProducing()
        for n in range(200):
            if self.slow.transport.disconnected:
                break
            self.register((1000 + n).to_bytes(8, "big"), port=40000 + n, monitorname="vp%d" % (n,))
        self.assertTrue(self.slow.transport.disconnected)
        self.assertGreater(n, 10)
        self.assertEqual(self.controller.budgets.process.used, 0)

    def test_stalled(self):
        """A client that takes nothing for the stall limit goes."""
        self.openChannel(self.slow, 5)
        self.slow.transport.producer.pauseProducing()
        with capturedLogs() as events:
            self.reactor.advance(STALL_LIMIT - 1)
            self.assertFalse(self.slow.transport.disconnected)
            self.reactor.advance(1)
        self.assertTrue(self.slow.transport.disconnected)
        self.assertEqual([e["limit"] for e in events if e.get("sc_event") == "mux.stalled"], [STALL_LIMIT])


class BetterThanUpstreamTests(MuxSessionTestCase):
    """Each place docs/mux.rst says upstream falls short, done better."""

    def test_resumeAnnouncedToNewClients(self):
        """
        A client that connected while the VP was disconnected learns of it
        when it resumes; a client that knew it is not told again.
        """
        scamper = self.register()
        before = FakeMuxClient(self.factory)
        before.received()
        vp = self.vp(scamper)
        scamper.lose()
        during = FakeMuxClient(self.factory)
        self.assertEqual(during.received(), [Go()])
        back = MemoryScamper(self.controller, port=50000, peer=scamper.peer)
        back.resume()
        self.assertIs(back.protocol.vp, vp)
        [update] = during.received()
        self.assertEqual(update.vp_id, vp.identifier)
        self.assertIn((1, "vp1"), update.attributes)
        self.assertEqual(before.received(), [])

    def test_resumeFromNewAddressReannounced(self):
        """A client that knew the VP under another address gets DEPART then UPDATE."""
        scamper = self.register()
        client = FakeMuxClient(self.factory)
        client.received()
        scamper.lose()
        back = MemoryScamper(self.controller, host="127.0.0.2", port=50000, peer=scamper.peer)
        back.resume()
        depart, update = client.received()
        self.assertEqual(depart, VpDepart(1))
        self.assertIn((3, "127.0.0.2"), update.attributes)

    def test_malformedOpenCostsOnlyThatChannel(self):
        scamper = self.register()
        client = FakeMuxClient(self.factory)
        client.received()
        client.open(1, 5)
        [number], _ = self.channelNews(scamper)
        client.send(encodeMessage(0, b"\0\x03\0\0\0\x01\0\0\0\x06extra"))
        client.send(encodeMessage(0, b"\0\x03\0\0"))
        client.open(99, 7)
        client.open(1, 0)
        self.assertEqual(client.received(), [ChannelClose(6), ChannelClose(7)])
        self.assertFalse(client.transport.disconnecting)
        self.assertEqual(self.channelNews(scamper), ([], []))
        self.sendData(scamper, number, b"still here\n")
        self.assertEqual(client.received(), [(5, b"still here\n")])

    def test_malformedThreshold(self):
        """
        Past MAX_MALFORMED malformed messages the client is closed, once,
        with one log line; its channels get CHANNEL_FIN.  Opens that can
        come from a race (no such vantage point) do not count.
        """
        scamper = self.register()
        client = FakeMuxClient(self.factory)
        client.received()
        client.open(1, 5)
        [number], _ = self.channelNews(scamper)
        garbage = [encodeMessage(0, b"\x63xyz"), encodeMessage(0, b"\0\x03\0\0"), encodeGo(), encodeChannelOpen(1, 0)]
        for n in range(MAX_MALFORMED):
            client.send(garbage[n % len(garbage)])
        for n in range(20):
            client.open(99, 100 + n)
        self.assertEqual(client.protocol.malformed, MAX_MALFORMED)
        self.assertFalse(client.transport.disconnected)
        with capturedLogs() as events:
            client.send(garbage[0] * 3 + encodeData(5, b"never sent"))
        self.assertTrue(client.transport.disconnected)
        self.assertEqual(len([e for e in events if e.get("sc_event") == "mux.too_many_malformed"]), 1)
        client.close()
        self.assertEqual(self.channelNews(scamper), ([], [wire.ChannelFin(number)]))

    def test_duplicateOpenCostsOnlyThatChannel(self):
        """
        A second CHANNEL_OPEN on an open channel: that channel is finished
        (CHANNEL_FIN to scamper, CHANNEL_CLOSE to the client); the others
        carry on, and the number may be opened again.
        """
        scamper = self.register()
        client = FakeMuxClient(self.factory)
        client.received()
        client.open(1, 5)
        client.open(1, 6)
        [five, six], _ = self.channelNews(scamper)
        client.open(1, 5)
        self.assertEqual(client.received(), [ChannelClose(5)])
        self.assertFalse(client.transport.disconnecting)
        self.assertEqual(self.channelNews(scamper), ([], [wire.ChannelFin(five)]))
        self.sendData(scamper, five, b"late\n")
        self.sendData(scamper, six, b"six\n")
        self.assertEqual(client.received(), [(6, b"six\n")])
        client.open(1, 5)
        [again], _ = self.channelNews(scamper)
        self.assertNotIn(again, (five, six))

    def test_departureClosesChannels(self):
        """A VP that departs: CHANNEL_CLOSE for each channel to it, then VP_DEPART."""
        scamper = self.register()
        other = self.register(OTHER_MAGIC, port=2, monitorname="vp2")
        client = FakeMuxClient(self.factory)
        client.received()
        client.open(1, 5)
        client.open(1, 6)
        client.open(2, 7)
        scamper.send(encodeFrame(99, 0, b""))  # a sequence gap: the VP is freed
        messages = client.received()
        self.assertEqual(sorted(messages[:2], key=lambda m: m.channel_id), [ChannelClose(5), ChannelClose(6)])
        self.assertEqual(messages[2:], [VpDepart(1)])
        self.assertEqual(list(client.protocol.channels), [7])
        self.assertIsNotNone(self.vp(other).connection)

    def test_zombieExpiryClosesChannels(self):
        scamper = self.register()
        client = FakeMuxClient(self.factory)
        client.received()
        client.open(1, 5)
        scamper.lose()
        self.assertEqual(client.received(), [])
        self.reactor.advance(self.controller.zombieTime + 1)
        self.assertEqual(client.received(), [ChannelClose(5), VpDepart(1)])

    def test_reloadReannouncesChangedVantagePoints(self):
        """After a reload, changed VPs are sent again (DEPART, UPDATE); others are not."""
        self.register()
        self.register(OTHER_MAGIC, port=2, monitorname="vp2")
        self.register(THIRD_MAGIC, port=3, monitorname="vp3")
        client = FakeMuxClient(self.factory)
        client.received()
        with open(self.metadata.path, "w") as f:
            f.write(META.replace("vp2 shortname two", "vp2 shortname deux\nvp3 iata AKL"))
        self.assertTrue(self.metadata.reload())
        messages = client.received()
        self.assertEqual([type(m).__name__ for m in messages], ["VpDepart", "VpUpdate"] * 2)
        self.assertEqual([m.vp_id for m in messages], [2, 2, 3, 3])
        self.assertIn((9, "deux"), messages[1].attributes)
        self.assertIn((11, "AKL"), messages[3].attributes)
        # A failed reload changes nothing.
        with open(self.metadata.path, "w") as f:
            f.write("broken\n")
        self.assertFalse(self.metadata.reload())
        self.assertEqual(client.received(), [])


# Our client -------------------------------------------------------------


class Collector(Protocol):
    def __init__(self):
        self.data = b""
        self.reason = None

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.reason = reason


class ClientTests(MuxSessionTestCase):
    def connect(self):
        server = self.factory.buildProtocol(None)
        client = MuxClientProtocol()
        pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client))
        return client, pump

    def test_listAndChannel(self):
        scamper = self.register()
        client, pump = self.connect()
        ready = self.successResultOf(client.ready)
        self.assertIs(ready, client)
        [vp] = client.listVantagePoints()
        self.assertEqual((vp.identifier, vp.name, vp.ipv4, vp.cc, vp.place), (1, "vp1", "127.0.0.1", "NZ", "Hamilton, Waikato"))
        self.assertEqual(vp.tags, ("ark", "ipv6 capable"))
        self.assertEqual(vp.arrival, "1700000000.500000")
        self.assertIs(client.find("vp1"), vp)

        collector = Collector()
        transport = client.openChannel(vp, collector)
        transport.write(b"ping 127.0.0.1\n")
        pump.flush()
        [number], [data] = self.channelNews(scamper)
        self.assertEqual(data, (number, b"ping 127.0.0.1\n"))
        self.sendData(scamper, number, b"OK id-1\n")
        pump.flush()
        self.assertEqual(collector.data, b"OK id-1\n")
        transport.loseConnection()
        pump.flush()
        self.assertEqual(self.channelNews(scamper)[1], [(number, b"done\n")])
        self.assertIsNone(collector.reason)
        self.sendFin(scamper, number)
        pump.flush()
        collector.reason.trap(ConnectionDone)

    def test_waitAndDepart(self):
        client, pump = self.connect()
        self.successResultOf(client.ready)
        self.assertEqual(client.listVantagePoints(), [])
        waiting = client.waitForVantagePoint("two")
        scamper = self.register(monitorname="vp2")
        pump.flush()
        vp = self.successResultOf(waiting)
        self.assertEqual(vp.shortname, "two")
        self.controller.free(self.vp(scamper), "test")
        pump.flush()
        self.assertEqual(client.listVantagePoints(), [])

    def test_connectionLostEndsChannels(self):
        self.register()
        client, pump = self.connect()
        collector = Collector()
        client.openChannel(1, collector)
        pump.flush()
        closed = client.close()
        pump.flush()
        self.successResultOf(closed)
        self.assertIsNotNone(collector.reason)

    def test_info(self):
        info = VantagePointInfo(3, ((Attribute.IPV6, "::1"), (Attribute.ASN6, "7"), (Attribute.CC, "a"), (Attribute.CC, "b")))
        self.assertEqual((info.ipv6, info.asn6, info.cc, info.name, info.tags), ("::1", "7", "b", None, ()))


# Command line -----------------------------------------------------------


class MuxOptionsTests(SynchronousTestCase):
    def setUp(self):
        self.directory = tempfile.mkdtemp(dir="/tmp", prefix="scm")
        self.addCleanup(os.rmdir, self.directory)
        self.mux = os.path.join(self.directory, "mux")

    def parse(self, *argv):
        options = Options()
        options.reactor = MemoryReactorClock()
        options.parseOptions(list(argv))
        return options

    def test_muxAlone(self):
        """--mux without --sockets: a controller with no sockets directory."""
        options = self.parse("--port", "1", "--mux", self.mux, "--allow-group")
        top = makeService(options)
        [controllerService] = [s for s in top if isinstance(s, ControllerService)]
        self.assertIsNone(controllerService.controller.socketsDirectory)
        [muxService] = [s for s in top if isinstance(s, MuxSocketService)]
        self.assertEqual((muxService.path, muxService.endpoint._mode), (self.mux, 0o770))

    def test_metadataReloadOnSighup(self):
        meta = writeMetadata(self, META)
        options = self.parse("--port", "1", "-M", self.mux, "-m", meta)
        top = makeService(options)
        [sighup] = [s for s in top if isinstance(s, SighupService)]
        [muxService] = [s for s in top if isinstance(s, MuxSocketService)]
        self.assertIn(muxService.muxFactory.metadata.reload, sighup._reloads)

    def test_usageErrors(self):
        bad = writeMetadata(self, "vp1 cc\n")
        for argv, message in [
            (["--port", "1"], "--sockets is required"),
            (["--port", "1", "--sockets", self.directory, "--metadata", bad], "needs --mux"),
            (["--port", "1", "--mux", "/tmp/" + "m" * 110], "107"),
            (["--port", "1", "--mux-port", "tcp:7000"], "loopback"),
            (["--port", "1", "--mux-port", "tcp:7000:interface=192.0.2.1"], "loopback"),
            (["--port", "1", "--mux-port", "7000", "--mux-tls-ca", bad], "--tls-cert"),
            (["--port", "1", "--mux", self.mux, "--mux-tls-ca", bad], "only with --mux-port"),
            (["--port", "1", "--mux", self.mux, "--mux-port-insecure"], "only with --mux-port"),
            (["--port", "1", "--mux-port", "nonsense:x"], "bad endpoint"),
        ]:
            with self.assertRaises(UsageError, msg=argv) as caught:
                self.parse(*argv)
            self.assertIn(message, str(caught.exception), argv)

    def test_startupErrors(self):
        """What needs the file system is checked when the service starts."""
        bad = writeMetadata(self, "vp1 cc\n")
        for argv, message in [
            (["--port", "1", "--mux", self.mux, "--metadata", bad], "line 1"),
            (["--port", "1", "--mux", self.mux, "--metadata", "/nonexistent"], "cannot read"),
            (["--port", "1", "--mux", "/nonexistent/mux"], "no such directory"),
        ]:
            top = makeService(self.parse(*argv))
            with self.assertRaises(StartupError, msg=argv) as caught:
                top.privilegedStartService()
            self.assertIn(message, str(caught.exception), argv)

    def test_muxPort(self):
        options = self.parse("--port", "1", "--mux-port", "7000")
        self.assertEqual((options.config.muxPort.host, options.config.muxPort.port), ("127.0.0.1", 7000))
        options = self.parse("--port", "1", "--mux-port", "tcp:7000", "--mux-port-insecure")
        self.assertEqual(options.config.muxPort.host, "")

    def test_loopback(self):
        checkMuxPortAddress(parseAddress(r"tcp6:7000:interface=\:\:1"))
        checkMuxPortAddress(parseAddress("unix:/tmp/x"))
        with self.assertRaises(MuxPortError):
            checkMuxPortAddress(parseAddress(r"tcp6:7000:interface=\:\:"))
        checkMuxPortAddress(parseAddress("tcp:7000"), tls=True)


class NoSocketsDirectoryTests(SynchronousTestCase):
    def test_noSocketMade(self):
        """Without a sockets directory VPs register but get no UNIX socket."""
        reactor = SocketsReactor()
        controller = Controller(reactor, None)
        scamper = MemoryScamper(controller, magic=MAGIC, monitorname="vp1")
        scamper.register()
        self.assertEqual(scamper.receivedBytes(), wire.encodeMasterId("127.0.0.1:42694"))
        self.assertEqual(reactor.sockets, {})
        self.assertEqual(scamper.protocol.vp.name, "vp1-127.0.0.1:42694")
        ControllerService(controller).startService()
