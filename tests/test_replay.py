"""
Replay real sessions of Debian's scamper 20211212 with the C sc_remoted
against our implementation, and require the same bytes back.

Each fixture (made by C{tests/fixtures/convert_captures.py}) holds every
TCP segment of one capture in both directions.  scamper's segments are
fed to our L{ScamperProtocol} at their capture time on a fake clock; the
local client's actions are inferred from what the C daemon sent
(docs/protocol.rst 3.6):

  - a CHANNEL_NEW from sc_remoted means a client connected just before;
  - a new data frame from sc_remoted means the client wrote its payload;
  - a CHANNEL_FIN from sc_remoted means the client half-closed;
  - a frame whose sequence number sc_remoted had sent already is a
    retransmission after MASTER_OK, not a new action.

Then, per TCP connection, everything our code wrote to scamper must equal
what the C daemon wrote, byte for byte, at every point where the C daemon
wrote (segment boundaries themselves are not compared), each frame no
earlier than 50 ms before the C daemon sent it (so KEEPALIVEs go out 30 s
after the last send, as in the capture).  The client must receive the
concatenation of scamper's data payloads, as the real client did.
"""

import socket

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from .capture_harness import (
    CHANNEL_FIN,
    CHANNEL_NEW,
    KEEPALIVE,
    FrameReader,
    Remoted,
    loadFixture,
    splitFrames,
)

# How much earlier than the C daemon our code may send a frame.  The C
# daemon's own latency is well under a millisecond, but it sends a
# KEEPALIVE 30 s after its previous KEEPALIVE while we count from our
# last write of any kind: 22 ms apart at most in these captures.
TIMING_TOLERANCE = 0.05


def permissions(listing: str) -> int:
    """The mode bits of an C{ls -l} mode string such as C{srwx------}."""
    mode = 0
    for character in listing[1:10]:
        mode = (mode << 1) | (character != "-")
    return mode


class _Connection:
    """What the capture says about one TCP connection, and our side of it."""

    def __init__(self, index, scamper):
        self.index = index
        self.scamper = scamper
        self.expected = b""
        self.expectedTimes = []  # (offset in the stream, capture time)
        self.fromScamper = b""
        self.reader = FrameReader()


class CaptureReplay:
    """Drive one capture through our code, checking as it goes."""

    def __init__(self, testCase, fixture):
        self.test = testCase
        self.records = loadFixture(fixture)
        self.remoted = Remoted()
        self.connections = []
        self.byPort = {}
        self.clients = {}
        self.remotedSeqs = set()
        self.sockets = {r["conn"]: r["name"] for r in self.records if r["kind"] == "socket"}
        self.lastTime = 0.0

    def run(self):
        for record in self.records:
            handler = getattr(self, "_" + record["kind"], None)
            if handler is not None:
                if "t" in record:
                    self.test.assertGreaterEqual(record["t"], self.lastTime, "capture out of order")
                    self.lastTime = record["t"]
                handler(record)
        return self

    # Records ------------------------------------------------------------

    def _tcp(self, record):
        if record["dir"] != "s2r":
            # sc_remoted's SYN-ACK and its FIN after scamper's: our side
            # of the TCP handshake and teardown is the reactor's business.
            return
        self.remoted.advanceTo(record["t"])
        flags = record["flags"]
        if "S" in flags:
            scamper = self.remoted.connectScamper(record["port"])
            connection = _Connection(len(self.connections), scamper)
            self.connections.append(connection)
            self.byPort[record["port"]] = connection
        else:
            connection = self.byPort[record["port"]]
            reason = ConnectionLost() if "R" in flags else ConnectionDone()
            connection.scamper.peerCloses(Failure(reason))
            # The C daemon's debug log: "sc_master_zombie: <name> zombie
            # until ...": the socket is unlinked, the session kept.
            self.test.assertEqual(self.remoted.reactor.listeningNames(), [])
            vantagePoints = self.remoted.controller.vantagePoints()
            self.test.assertEqual(len(vantagePoints), 1)
            self.test.assertIsNone(vantagePoints[0].connection)

    def _segment(self, record):
        self.remoted.advanceTo(record["t"])
        connection = self.byPort[record["port"]]
        data = bytes.fromhex(record["hex"])
        if record["dir"] == "s2r":
            connection.fromScamper += data
            connection.scamper.send(data)
            return
        connection.expectedTimes.append((len(connection.expected), record["t"]))
        connection.expected += data
        for frame in connection.reader.feed(data):
            self._clientAction(connection, frame)
        self.assertSameStream(connection.scamper.output(), connection.expected, record["t"])
        self.test.assertEqual(self.remoted.reactor.listeningNames(), [self.sockets[connection.index]])

    def assertSameStream(self, ours, theirs, when):
        """
        Compare the two byte streams frame by frame, so that a failure
        names the first frame that differs; then byte for byte.
        """
        message = f"bytes to scamper differ from the C daemon's by t={when:f}"
        oursReader, theirsReader = FrameReader(), FrameReader()
        self.test.assertEqual(
            [f.raw for f in oursReader.feed(ours)] + [oursReader.pending],
            [f.raw for f in theirsReader.feed(theirs)] + [theirsReader.pending],
            message,
        )
        self.test.assertEqual(ours, theirs, message)

    def _clientAction(self, connection, frame):
        control = frame.controlType
        if frame.channel == 0 and control not in (CHANNEL_NEW, CHANNEL_FIN):
            return
        if frame.seq in self.remotedSeqs:
            return
        self.remotedSeqs.add(frame.seq)
        if control == CHANNEL_NEW:
            self.clients[frame.u32] = self.remoted.connectClient(self.sockets[connection.index])
        elif control == CHANNEL_FIN:
            self.clients[frame.u32].shutdownWrite()
        else:
            self.clients[frame.channel].write(frame.payload)

    # Checks after the replay --------------------------------------------

    def checkTiming(self):
        """Every frame went out when the C daemon sent it, or just before."""
        for connection in self.connections:
            frames = splitFrames(connection.expected)
            offset = 0
            for frame in frames:
                captured = max(t for start, t in connection.expectedTimes if start <= offset)
                ours = connection.scamper.transport.writeTimeAt(offset)
                self.test.assertTrue(
                    captured - TIMING_TOLERANCE <= ours <= captured,
                    f"frame {frame.raw!r} sent at {ours:f}, the C daemon sent it at {captured:f}",
                )
                offset += len(frame.raw)

    def scamperPayloads(self, channel):
        """scamper's data for C{channel}, each sequence number once."""
        seen = set()
        payloads = []
        for connection in self.connections:
            for frame in splitFrames(connection.fromScamper):
                if frame.channel == channel and frame.seq not in seen:
                    seen.add(frame.seq)
                    payloads.append(frame.payload)
        return b"".join(payloads)

    def clientReads(self):
        return b"".join(bytes.fromhex(r["hex"]) for r in self.records if r["kind"] == "client_rx")

    def has(self, kind):
        return [r for r in self.records if r["kind"] == kind]


class ReplayMixin:
    """The checks every capture gets; C{fixture} names the capture."""

    fixture: str

    def setUp(self):
        self.replay = CaptureReplay(self, self.fixture).run()

    def test_bytesToScamper(self):
        """
        Everything written to scamper, on every TCP connection, equals what
        the C daemon wrote: MASTER_ID, CHANNEL_NEW, ACKs carrying the next
        sequence number, the client's data frames, KEEPALIVEs, and, after
        a resume, MASTER_OK followed by the retransmitted frames.
        """
        self.assertTrue(self.replay.connections)
        for connection in self.replay.connections:
            self.assertEqual(connection.scamper.output(), connection.expected)

    def test_keepaliveAndResponseTiming(self):
        """
        Each frame went out no later than, and at most 50 ms before, the
        moment the C daemon sent it: KEEPALIVEs 30 s after the last frame
        sent, everything else in response to scamper or the client.
        """
        self.replay.checkTiming()

    def test_clientReceivesScamperPayloads(self):
        """
        The local client receives exactly the concatenation of scamper's
        data payloads for its channel, and then end of file once scamper
        has finished the channel (docs/protocol.rst 3.6).
        """
        client = self.replay.clients[1]
        self.assertEqual(client.received, self.replay.scamperPayloads(1))
        self.assertTrue(client.eof)

    def test_clientReadsAsCaptured(self):
        """
        Where the capture recorded the real client's reads (sc_attach's
        strace, the test client's log), ours gets the same bytes and the
        same end of file.
        """
        reads = self.replay.clientReads()
        if not reads:
            self.skipTest(f"{self.fixture} did not record the client's reads")
        client = self.replay.clients[1]
        self.assertEqual(client.received, reads)
        self.assertEqual(client.eof, bool(self.replay.has("client_eof")))

    def test_zombieAtTheEnd(self):
        """
        As sc_remoted's debug log shows ("sc_master_zombie"), each
        connection's end leaves a zombie: the socket is unlinked, the
        session kept for a resume, no connection attached.
        """
        zombies = self.replay.has("zombie")
        self.assertEqual(len(zombies), len(self.replay.connections))
        self.assertEqual(self.replay.remoted.reactor.listeningNames(), [])
        [vp] = self.replay.remoted.controller.vantagePoints()
        self.assertIsNone(vp.connection)
        self.assertEqual(vp.name, zombies[-1]["name"])


class DirectSessionReplayTests(ReplayMixin, SynchronousTestCase):
    """
    C{ab_direct_session}: scamper straight to sc_remoted; sc_attach runs
    one ping and C{done}; scamper finishes the channel; 75 s idle with
    two rounds of KEEPALIVE each way; scamper ends with a FIN.
    """

    fixture = "ab_direct_session.jsonl"

    def test_keepalivesCarryNextSequence(self):
        """
        The C daemon's two KEEPALIVEs were idle-time frames carrying its
        next sequence number, not consuming it; ours are the same bytes.
        """
        ours = [
            f for f in splitFrames(self.replay.connections[0].scamper.output())
            if f.controlType == KEEPALIVE
        ]
        theirs = [
            f for f in splitFrames(self.replay.connections[0].expected)
            if f.controlType == KEEPALIVE
        ]
        self.assertEqual(len(theirs), 2)
        self.assertEqual([f.raw for f in ours], [f.raw for f in theirs])


class MonitornameReplayTests(ReplayMixin, SynchronousTestCase):
    """
    C{c_monitorname}: as C{ab_direct_session}, with C{scamper -M testvp}:
    the socket is named C{testvp-<peer>} while MASTER_ID stays the bare
    peer.
    """

    fixture = "c_monitorname.jsonl"

    def test_socketNameAndMode(self):
        """
        The socket is created as C{testvp-127.0.0.1:52998} with the mode
        the C daemon gave it by default (C{srwx------} in its directory
        listing), and a backlog of SOMAXCONN (C{listen(fd, -1)}).
        """
        [listed] = self.replay.has("socket")
        [(path, _factory, backlog, mode, _wantPID)] = self.replay.remoted.reactor.unixServers
        self.assertEqual(path.rsplit("/", 1)[1], listed["name"])
        self.assertEqual(mode, permissions(listed["listing"]))
        self.assertEqual(backlog, socket.SOMAXCONN)


class CutAndResumeReplayTests(ReplayMixin, SynchronousTestCase):
    """
    C{d_cut}, the relay <-> sc_remoted leg: the first connection is reset
    while sc_remoted holds an unacknowledged command (seq 3); 43 s later
    scamper resumes on a new connection with C{MASTER_RES rcv_nxt=3
    snd_una=10 snd_nxt=12}; the client that connected before the cut
    keeps working, half-closes, and gets the last result and EOF.
    """

    fixture = "d_cut.jsonl"

    def test_twoConnections(self):
        """
        The capture holds the first session and the resumed one, on two
        different scamper ports.
        """
        ports = [c.scamper.peer.port for c in self.replay.connections]
        self.assertEqual(len(set(ports)), 2)

    def test_socketRenamedOnResume(self):
        """
        The UNIX socket was C{127.0.0.1:50978} before the cut and is
        re-created as C{127.0.0.1:50958}, after the new peer, on resume;
        the client that connected to the old name is still served.
        """
        names = [port.name for port in self.replay.remoted.reactor.unixPorts]
        self.assertEqual(names, [self.replay.sockets[0], self.replay.sockets[1]])
        self.assertFalse(any(port.listening for port in self.replay.remoted.reactor.unixPorts))

    def test_retransmissionAfterMasterOk(self):
        """
        The resumed connection starts with MASTER_OK and the verbatim
        retransmission of the command scamper never received, which is
        byte for byte the frame first sent on the old connection.
        """
        first, second = self.replay.connections
        resumed = splitFrames(second.scamper.output())
        firstFrames = {f.seq: f.raw for f in splitFrames(first.scamper.output()) if f.channel}
        retransmitted = resumed[1]
        self.assertEqual(retransmitted.raw, firstFrames[retransmitted.seq])
        self.assertEqual(resumed[:2], splitFrames(second.expected)[:2])
