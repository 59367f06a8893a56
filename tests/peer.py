"""
The one fake scamper of the test suite: the scamper end of the
remote-control protocol (docs/protocol.rst), with no I/O.

L{ScamperPeer} behaves as scamper does (docs/protocol.rst 1.3, 2.3 to
2.6):

  - it numbers its own acked frames (data, CHANNEL_FIN) from 0 with its
    C{sndNxt}, keeps each until the daemon acknowledges it, and puts its
    C{sndNxt} in the header of everything else (ACK, KEEPALIVE);
  - it checks the header sequence of every frame from the daemon against
    its C{rcvNxt}, and that each ACK names the head of its list of
    unacknowledged frames (ACKs are not cumulative);
  - it acknowledges every data frame, CHANNEL_NEW and CHANNEL_FIN from
    the daemon, at once (C{autoAck}) or when told to (L{ScamperPeer.ack});
  - it keeps the channels the daemon opened, with the bytes received on
    each, and whether either side has finished them;
  - a resume: L{ScamperPeer.masterRes} gives the window scamper gives;
    on MASTER_OK it forgets what the daemon already has and sends the
    rest again, in order, with the original sequence numbers.

Whatever breaks the protocol is appended to C{violations}, never raised,
so that hostile tests can go on and well-behaved ones assert the list is
empty.  Nothing here imports Twisted: methods return the bytes to send,
L{ScamperPeer.receive} takes the bytes that arrived and returns what
they meant, and what the peer sends of its own accord in answer (ACKs,
retransmissions, a CHANNEL_FIN in return) waits in an outbox for
L{ScamperPeer.takeOutput}.  The adapters that move those bytes over a
StringTransport, iosim or a real TCP/TLS connection are in
L{tests.peer_twisted}.
"""

import enum
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple

from sc_remoted.wire import (
    CONTROL_CHANNEL,
    SEQ_MASK,
    Ack,
    ChannelFin,
    ChannelNew,
    Frame,
    FrameDecoder,
    Keepalive,
    MasterId,
    MasterOk,
    MasterRej,
    WireError,
    channelFinPayload,
    encodeAck,
    encodeFrame,
    encodeKeepalive,
    encodeMasterNew,
    encodeMasterRes,
    parseControl,
    seqLessThan,
)

DEFAULT_MAGIC = b"\x01\x02\x03\x04\x05\x06\x07\x08"


class PeerState(enum.Enum):
    """Where the fake scamper is (docs/protocol.rst 2.3)."""

    IDLE = "idle"  # nothing sent yet
    REGISTERING = "registering"  # MASTER_NEW sent, CONNECT mode
    RESUMING = "resuming"  # MASTER_RES sent, CONNECT mode
    ESTABLISHED = "established"  # GO mode
    REJECTED = "rejected"  # MASTER_REJ received
    DISCONNECTED = "disconnected"  # the connection ended; state kept for a resume


# Events: what one frame from the daemon meant --------------------------


@dataclass(frozen=True)
class Event:
    """Something the daemon sent; C{frame} is the frame it came in."""

    frame: Frame


@dataclass(frozen=True)
class Registered(Event):
    """MASTER_ID: the session is established."""

    identity: str


@dataclass(frozen=True)
class Resumed(Event):
    """MASTER_OK: the session goes on; the daemon expects C{rcvNxt}."""

    rcvNxt: int


@dataclass(frozen=True)
class Rejected(Event):
    """MASTER_REJ."""


@dataclass(frozen=True)
class ChannelOpened(Event):
    """CHANNEL_NEW: a local client connected."""

    channel: int


@dataclass(frozen=True)
class ChannelFinished(Event):
    """The daemon's CHANNEL_FIN: its client will send nothing more."""

    channel: int


@dataclass(frozen=True)
class Data(Event):
    """A client's bytes."""

    channel: int
    payload: bytes


@dataclass(frozen=True)
class Acked(Event):
    """An ACK of one of our frames."""

    seq: int


@dataclass(frozen=True)
class KeepaliveReceived(Event):
    """A KEEPALIVE."""


@dataclass(frozen=True)
class Unexpected(Event):
    """A frame that broke the protocol (also recorded in C{violations})."""

    reason: str


# The channels ----------------------------------------------------------


class PeerChannel:
    """
    A channel the daemon opened, as scamper sees it.

    @ivar data: every byte the daemon sent on it, in order.
    @ivar daemonFinished: the daemon sent CHANNEL_FIN (its client is done).
    @ivar finished: we sent CHANNEL_FIN: scamper will send nothing more.
    @ivar finAcked: the daemon acknowledged that CHANNEL_FIN, so it knew
        of it when it sent anything that follows the ACK.
    """

    def __init__(self, number: int) -> None:
        self.number = number
        self.data = bytearray()
        self.daemonFinished = False
        self.finished = False
        self.finAcked = False

    def __repr__(self) -> str:
        return "<PeerChannel %d %r%s%s>" % (
            self.number,
            bytes(self.data[-40:]),
            " daemon-finished" if self.daemonFinished else "",
            " finished" if self.finished else "",
        )


# The peer ---------------------------------------------------------------


class ScamperPeer:
    """
    The scamper end of one session, across its connections.

    @param magic: the bytes of MASTER_NEW and MASTER_RES.
    @param monitorname: scamper's C{-M} name, or L{None}.
    @param autoAck: acknowledge each acked frame as it arrives (into the
        outbox); otherwise the sequence numbers owed an ACK wait in
        C{owed} until L{ack}.
    @param autoFinish: answer the daemon's CHANNEL_FIN with our own, as
        scamper does once the channel's last result is out.

    @ivar sndNxt: the sequence number of our next acked frame.
    @ivar rcvNxt: the sequence number we expect on the daemon's next frame.
    @ivar identity: the MASTER_ID string, once registered.
    @ivar channels: every channel the daemon opened, by number.
    @ivar owed: sequence numbers received and not yet acknowledged.
    @ivar violations: what the daemon did wrong, in words.
    @ivar events: every event, in order, since the peer was made.
    @ivar resumes: how many MASTER_OKs were received.
    @ivar connections: how many connections were opened (MASTER_NEW or
        MASTER_RES sent), so that an adapter can tell whether the peer
        has moved on to a newer connection than its own.
    """

    def __init__(
        self,
        magic: bytes = DEFAULT_MAGIC,
        monitorname: Optional[str] = None,
        autoAck: bool = True,
        autoFinish: bool = False,
    ) -> None:
        self.magic = magic
        self.monitorname = monitorname
        self.autoAck = autoAck
        self.autoFinish = autoFinish
        self.state = PeerState.IDLE
        self.identity: Optional[str] = None
        self.violations: List[str] = []
        self.events: List[Event] = []
        self.resumes = 0
        self.connections = 0
        self._decoder = FrameDecoder()
        self._outbox: List[bytes] = []
        self._newSession()

    def _newSession(self) -> None:
        self.sndNxt = 0
        self.rcvNxt = 0
        self.channels: Dict[int, PeerChannel] = {}
        self.owed: List[int] = []
        self._unacked: Deque[Tuple[Frame, bytes]] = deque()  # and its bytes

    def __repr__(self) -> str:
        return "<ScamperPeer %r %s snd_nxt=%d rcv_nxt=%d unacked=%r>" % (
            self.magic,
            self.state.value,
            self.sndNxt,
            self.rcvNxt,
            self.unacked,
        )

    # What we know ------------------------------------------------------

    @property
    def established(self) -> bool:
        return self.state is PeerState.ESTABLISHED

    @property
    def unacked(self) -> List[int]:
        """The sequence numbers we sent that the daemon has not acknowledged."""
        return [frame.seq for frame, _ in self._unacked]

    def unackedFrames(self) -> List[Frame]:
        """Those frames themselves, oldest first."""
        return [frame for frame, _ in self._unacked]

    @property
    def sndUna(self) -> int:
        """The oldest unacknowledged sequence number, or C{sndNxt}."""
        return self._unacked[0][0].seq if self._unacked else self.sndNxt

    def received(self, channel: int) -> bytes:
        """What the daemon sent on C{channel}, or C{b""} for no such channel."""
        found = self.channels.get(channel)
        return bytes(found.data) if found is not None else b""

    def openChannels(self) -> List[int]:
        """Channels we may still send on (not finished by us), in order."""
        return sorted(n for n, c in self.channels.items() if not c.finished)

    def lastChannel(self) -> Optional[int]:
        """The channel the daemon opened last."""
        return max(self.channels) if self.channels else None

    # Registration ------------------------------------------------------

    def masterNew(self, monitorname: object = "default", magic: Optional[bytes] = None) -> bytes:
        """
        Open a new session on a new connection: both counters back to 0,
        no channels, nothing unacknowledged (scamper from 2022 on).
        C{monitorname} overrides the peer's own (L{None} for none).
        """
        if magic is not None:
            self.magic = magic
        if monitorname != "default":
            self.monitorname = monitorname  # type: ignore[assignment]
        self._newConnection()
        self._newSession()
        self.identity = None
        self.state = PeerState.REGISTERING
        return encodeMasterNew(self.magic, self.monitorname)

    def masterRes(
        self, rcvNxt: Optional[int] = None, sndUna: Optional[int] = None, sndNxt: Optional[int] = None
    ) -> bytes:
        """
        Resume the session on a new connection: MASTER_RES with the window
        scamper sends (docs/protocol.rst 2.6), or the values given.
        """
        self._newConnection()
        self.state = PeerState.RESUMING
        return encodeMasterRes(
            self.magic,
            self.rcvNxt if rcvNxt is None else rcvNxt,
            self.sndUna if sndUna is None else sndUna,
            self.sndNxt if sndNxt is None else sndNxt,
        )

    def _newConnection(self) -> None:
        self.connections += 1
        self._decoder = FrameDecoder()
        self._outbox = []
        # ACKs not sent are not owed on the next connection: MASTER_RES
        # tells the daemon what we have.
        self.owed = []

    def connectionLost(self) -> None:
        """The connection ended; the session is kept for a resume."""
        self._decoder = FrameDecoder()
        self._outbox = []
        self.owed = []
        if self.state is not PeerState.REJECTED:
            self.state = PeerState.DISCONNECTED

    # Sending -----------------------------------------------------------

    def _sequenced(self, channel: int, payload: bytes) -> bytes:
        seq = self.sndNxt
        raw = encodeFrame(seq, channel, payload)
        self._unacked.append((Frame(seq, channel, payload), raw))
        self.sndNxt = (seq + 1) & SEQ_MASK
        return raw

    def data(self, channel: int, payload: bytes) -> bytes:
        """A data frame on C{channel}, numbered and kept until acknowledged."""
        return self._sequenced(channel, payload)

    def finish(self, channel: int) -> bytes:
        """Our CHANNEL_FIN: scamper is done with C{channel}."""
        found = self.channels.get(channel)
        if found is not None:
            found.finished = True
        return self._sequenced(CONTROL_CHANNEL, channelFinPayload(channel))

    def keepalive(self) -> bytes:
        """A KEEPALIVE, carrying C{sndNxt}."""
        return encodeKeepalive(self.sndNxt)

    def ack(self, count: Optional[int] = None) -> bytes:
        """The ACKs owed (the first C{count} of them), in order."""
        if count is None:
            count = len(self.owed)
        acked, self.owed = self.owed[:count], self.owed[count:]
        return b"".join(encodeAck(self.sndNxt, seq) for seq in acked)

    def takeOutput(self) -> bytes:
        """What the peer sends of its own accord, since the last call."""
        out, self._outbox = b"".join(self._outbox), []
        return out

    # Receiving ---------------------------------------------------------

    def receive(self, data: bytes) -> List[Event]:
        """The daemon's bytes (cut anywhere): one event per complete frame."""
        events = [self._frame(frame) for frame in self._decoder.feed(data)]
        self.events.extend(events)
        return events

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame from the daemon, held back."""
        return self._decoder.buffered

    def _violation(self, frame: Frame, reason: str) -> Unexpected:
        self.violations.append(reason)
        return Unexpected(frame, reason)

    def _owe(self, seq: int) -> None:
        self.rcvNxt = (seq + 1) & SEQ_MASK
        if self.autoAck:
            self._outbox.append(encodeAck(self.sndNxt, seq))
        else:
            self.owed.append(seq)

    def _frame(self, frame: Frame) -> Event:
        connecting = self.state in (PeerState.REGISTERING, PeerState.RESUMING)
        expected = 0 if connecting else self.rcvNxt
        problem = None
        if frame.seq != expected:
            problem = "got seq %d expected %d" % (frame.seq, expected)
        if frame.channel != CONTROL_CHANNEL:
            if self.state is not PeerState.ESTABLISHED:
                return self._violation(frame, "data on channel %d in state %s" % (frame.channel, self.state.value))
            channel = self.channels.get(frame.channel)
            self._owe(frame.seq)
            if channel is None:
                return self._violation(frame, "data for unknown channel %d" % (frame.channel,))
            channel.data += frame.payload
            if problem is not None:
                return self._violation(frame, problem)
            if channel.daemonFinished:
                return self._violation(frame, "data on channel %d after the daemon's CHANNEL_FIN" % (frame.channel,))
            if channel.finAcked:
                # Sent in flight with our CHANNEL_FIN it would be a race
                # scamper loses; after the daemon acknowledged it, a fault.
                return self._violation(frame, "data on channel %d after our CHANNEL_FIN was acknowledged" % (frame.channel,))
            return Data(frame, frame.channel, frame.payload)
        try:
            message = parseControl(frame.payload)
        except WireError as e:
            return self._violation(frame, "malformed control message: %s" % (e,))
        if problem is not None:
            self.violations.append("%s (%s)" % (problem, type(message).__name__))
        if connecting:
            return self._connecting(frame, message)
        if self.state is not PeerState.ESTABLISHED:
            return self._violation(frame, "%s in state %s" % (type(message).__name__, self.state.value))
        if isinstance(message, Ack):
            if not self._unacked:
                return self._violation(frame, "ACK %d with nothing outstanding" % (message.seq,))
            mine = self._unacked[0][0]
            if mine.seq != message.seq:
                return self._violation(frame, "ACK %d, expected ACK %d" % (message.seq, mine.seq))
            self._unacked.popleft()
            if mine.channel == CONTROL_CHANNEL:
                finished = self.channels.get(int.from_bytes(mine.payload[1:5], "big"))
                if finished is not None:
                    finished.finAcked = True
            return Acked(frame, message.seq)
        if isinstance(message, Keepalive):
            return KeepaliveReceived(frame)
        if isinstance(message, ChannelNew):
            self._owe(frame.seq)
            if message.channel in self.channels or message.channel == CONTROL_CHANNEL:
                return self._violation(frame, "CHANNEL_NEW for channel %d, already open" % (message.channel,))
            self.channels[message.channel] = PeerChannel(message.channel)
            return ChannelOpened(frame, message.channel)
        if isinstance(message, ChannelFin):
            self._owe(frame.seq)
            channel = self.channels.get(message.channel)
            if channel is None:
                return self._violation(frame, "CHANNEL_FIN for unknown channel %d" % (message.channel,))
            if channel.daemonFinished:
                return self._violation(frame, "second CHANNEL_FIN for channel %d" % (message.channel,))
            if channel.finAcked:
                return self._violation(frame, "CHANNEL_FIN for channel %d after ours was acknowledged" % (message.channel,))
            channel.daemonFinished = True
            if self.autoFinish and not channel.finished:
                self._outbox.append(self.finish(message.channel))
            return ChannelFinished(frame, message.channel)
        return self._violation(frame, "unexpected %s in an established session" % (type(message).__name__,))

    def _connecting(self, frame: Frame, message: object) -> Event:
        """CONNECT mode: only MASTER_ID, MASTER_OK and MASTER_REJ."""
        if isinstance(message, MasterRej):
            self.state = PeerState.REJECTED
            return Rejected(frame)
        if isinstance(message, MasterId) and self.state is PeerState.REGISTERING:
            self.identity = message.identity
            self.state = PeerState.ESTABLISHED
            return Registered(frame, message.identity)
        if isinstance(message, MasterOk) and self.state is PeerState.RESUMING:
            self.resumes += 1
            self.state = PeerState.ESTABLISHED
            unacked = self._unacked
            while unacked and seqLessThan(unacked[0][0].seq, message.rcv_nxt):
                unacked.popleft()
            first = self.sndUna
            if first != message.rcv_nxt:
                self.violations.append("MASTER_OK(%d) but our next is %d" % (message.rcv_nxt, first))
            self._outbox.extend(raw for _, raw in unacked)

            return Resumed(frame, message.rcv_nxt)
        return self._violation(frame, "%s in state %s" % (type(message).__name__, self.state.value))
