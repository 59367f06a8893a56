"""
The session engine: scamper's remote-control protocol, with no I/O.

Nothing here reads a socket, writes one, starts a timer or asks the
time: bytes and the current time come in as arguments, and what must
happen comes back as values.  The Twisted protocols around it
(L{sc_remoted.scamper}, L{sc_remoted.local}, L{sc_remoted.mux.server})
only move those bytes, so the protocol logic is tested with plain bytes
and numbers.

Two objects, because a session outlives its connections
(docs/protocol.rst 1.3, 3.9):

  - a L{Session} is one vantage point's protocol state: both sequence
    spaces, what we sent that scamper has yet to acknowledge, the channel
    table and its numbering, the splitting of client data into frames;
  - a L{Link} is one scamper connection: the incomplete frame held back
    from the last read, the registration phase before a session is
    attached, and the connection's timers.

L{Link.receive} takes a whole read and decodes it in one pass; frame
validation is written once, there.  It returns a L{ReadResult}: every
ACK of the read in one buffer, the payloads of each channel as one list,
and what else happened.
"""

import enum
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union

from .lifecycle import Input, State, advance
from .wire import (
    CONTROL_CHANNEL,
    HEADER,
    HEADER_SIZE,
    MAX_PAYLOAD,
    SEQ_MASK,
    Ack,
    ChannelFin,
    ControlType,
    Keepalive,
    MasterNew,
    MasterRes,
    WireError,
    channelFinPayload,
    channelNewPayload,
    encodeAcks,
    encodeKeepalive,
    encodeMasterOk,
    parseControl,
    seqLessThan,
)

# docs/protocol.rst 3.7: the connection's timers.
REGISTRATION_TIMEOUT = 30.0
SILENCE_TIMEOUT = 60.0
KEEPALIVE_INTERVAL = 30.0


@dataclass(frozen=True)
class Timeouts:
    """
    A connection's timers, in seconds: registration must complete within
    C{registration} of the accept; C{silence} without a byte from scamper
    ends the connection; after C{keepalive} without sending, a KEEPALIVE
    goes out.  The C daemon's values are the defaults; tests shorten them.
    """

    registration: float = REGISTRATION_TIMEOUT
    silence: float = SILENCE_TIMEOUT
    keepalive: float = KEEPALIVE_INTERVAL

_unpackHeader = HEADER.unpack_from
_unpackU32 = struct.Struct("!I").unpack_from
_ACK_TYPE = int(ControlType.ACK)
_ACK_LENGTH = 5

# What the session gives to write to scamper: a frame's header and its
# payload apart, in order, for one writeSequence.  Never joined here: a
# join of a large read is a large allocation, which costs page faults.
Parts = List[bytes]


class ChannelState(enum.Enum):
    """
    Where a channel is in its life (docs/protocol.rst 3.6): I{open} both
    ways; I{client finished} when the local client will send nothing more
    (CHANNEL_FIN went to scamper, results still flow back); I{closed} once
    scamper finished it or the session is gone.
    """

    OPEN = "open"
    CLIENT_FINISHED = "client finished"
    CLOSED = "closed"


class Channel:
    """
    One channel of a session, as the session hands it out.

    @ivar number: scamper's number for it.
    @ivar state: a L{ChannelState}.
    @ivar end: whatever serves the local end (a UNIX client, a mux
        channel); the engine only carries it, so that a read's
        deliveries say where each payload goes.
    """

    __slots__ = ("number", "state", "end")

    def __init__(self, number: int, end: Any) -> None:
        self.number = number
        self.state = ChannelState.OPEN
        self.end = end

    def __repr__(self) -> str:
        return "<Channel %d %s>" % (self.number, self.state.value)


class Session:
    """
    The protocol state of one vantage point, from MASTER_NEW until freed.

    Methods that make frames for scamper return them as L{Parts}, to be
    written in order while the session is L{State.CONNECTED} (empty
    otherwise: the frames wait in the unacknowledged queue for a resume).

    @ivar state: the L{State} of the lifecycle (L{sc_remoted.lifecycle}).
    @ivar sndNxt: the sequence number of the next acked message we send.
    @ivar rcvNxt: the sequence number we expect on the next acked frame.
    @ivar channels: the channels scamper may still send on, by number.
    @ivar unackedBytes: bytes of frames scamper has yet to acknowledge.
    @ivar resumes: how many times scamper resumed this session.
    @ivar framesIn, bytesIn: frames and payload bytes received.
    @ivar framesOut, bytesOut: acked frames and payload bytes sent
        (retransmissions not counted again).
    """

    __slots__ = (
        "state",
        "sndNxt",
        "rcvNxt",
        "channels",
        "unackedBytes",
        "resumes",
        "framesIn",
        "bytesIn",
        "framesOut",
        "bytesOut",
        "_nextChannel",
        "_unacked",
    )

    def __init__(self) -> None:
        self.state = State.REGISTERING
        self.sndNxt = 0
        self.rcvNxt = 0
        self.channels: Dict[int, Channel] = {}
        self.unackedBytes = 0
        self.resumes = 0
        self.framesIn = self.bytesIn = 0
        self.framesOut = self.bytesOut = 0
        self._nextChannel = 1
        self._unacked: Deque[Tuple[int, bytes, bytes]] = deque()

    def advance(self, event: Input) -> State:
        """Apply one lifecycle input (see L{sc_remoted.lifecycle.TRANSITIONS})."""
        self.state = advance(self.state, event)
        return self.state

    @property
    def unacked(self) -> int:
        """How many sent messages scamper has yet to acknowledge."""
        return len(self._unacked)

    def unackedSequences(self) -> List[int]:
        """The sequence numbers of those messages, oldest first."""
        return [seq for seq, _, _ in self._unacked]

    # Towards scamper ---------------------------------------------------

    def _sequenced(self, channel: int, payload: bytes, parts: Parts) -> None:
        """
        Number an acked message, keep it until scamper acknowledges it,
        and add its header and payload to C{parts} while connected (it
        only waits in the queue otherwise, for a resume).
        """
        seq = self.sndNxt
        header = HEADER.pack(seq, channel, len(payload))
        self.framesOut += 1
        self.bytesOut += len(payload)
        self._unacked.append((seq, header, payload))
        self.unackedBytes += HEADER_SIZE + len(payload)
        self.sndNxt = (seq + 1) & SEQ_MASK
        if self.state is State.CONNECTED:
            parts += (header, payload)

    def openChannel(self, end: Any) -> Tuple[Channel, Parts]:
        """
        A new channel for C{end}, and its CHANNEL_NEW.  Numbers start at
        1 (0 is the control channel) and are not reused while open.
        """
        number = self._nextChannel
        while number == CONTROL_CHANNEL or number in self.channels:
            number = (number + 1) & SEQ_MASK
        self._nextChannel = (number + 1) & SEQ_MASK
        channel = self.channels[number] = Channel(number, end)
        parts: Parts = []
        self._sequenced(CONTROL_CHANNEL, channelNewPayload(number), parts)
        return channel, parts

    def clientData(self, channel: Channel, data: bytes) -> Parts:
        """
        The frames that carry a local client's read on C{channel}: nothing
        once the client or scamper finished it.  A read too large for one
        frame is cut into equal frames (not 65535 plus a sliver): scamper
        re-assembles lines, so only the count of frames matters.
        """
        parts: Parts = []
        if channel.state is not ChannelState.OPEN or not data:
            return parts
        size = len(data)
        if size <= MAX_PAYLOAD:
            self._sequenced(channel.number, data, parts)
            return parts
        pieces = -(-size // MAX_PAYLOAD)
        step = -(-size // pieces)
        view = memoryview(data)
        for start in range(0, size, step):
            self._sequenced(channel.number, bytes(view[start : start + step]), parts)
        return parts

    def clientFinished(self, channel: Channel) -> Optional[Parts]:
        """
        The local client will send nothing more: the CHANNEL_FIN to send,
        or L{None} if the channel was already finished either way.
        """
        if channel.state is not ChannelState.OPEN:
            return None
        channel.state = ChannelState.CLIENT_FINISHED
        parts: Parts = []
        self._sequenced(CONTROL_CHANNEL, channelFinPayload(channel.number), parts)
        return parts

    def keepalive(self) -> bytes:
        """A KEEPALIVE carries the next sequence number without consuming it."""
        return encodeKeepalive(self.sndNxt)

    def closeFinished(self, result: "ReadResult") -> None:
        """Close the channels scamper finished in C{result}, now delivered."""
        for channel in result.finished:
            channel.state = ChannelState.CLOSED

    def closeChannels(self) -> List[Channel]:
        """The session is gone: every channel is closed; returns them."""
        channels = list(self.channels.values())
        self.channels.clear()
        for channel in channels:
            channel.state = ChannelState.CLOSED
        return channels

    # Resume ------------------------------------------------------------

    def resumeProblem(self, message: MasterRes) -> Optional[str]:
        """
        Why a MASTER_RES cannot continue this session, or L{None} if it
        can (docs/protocol.rst 3.9, checks A and B).
        """
        if message.rcv_nxt != self.sndNxt and all(seq != message.rcv_nxt for seq, _, _ in self._unacked):
            return "scamper expects seq %d, which we no longer hold" % (message.rcv_nxt,)
        if seqLessThan(self.rcvNxt, message.snd_una) or seqLessThan(message.snd_nxt, self.rcvNxt):
            return "scamper's send window %d:%d does not hold our next expected seq %d" % (
                message.snd_una,
                message.snd_nxt,
                self.rcvNxt,
            )
        return None

    def resume(self, rcvNxt: int) -> Parts:
        """
        Accept a resume whose MASTER_RES said it expects C{rcvNxt}: forget
        what scamper already has and return MASTER_OK followed by the rest
        of the queue, verbatim and in order.  The caller has moved the
        session to L{State.CONNECTED} and checked L{resumeProblem}.
        """
        self.resumes += 1
        unacked = self._unacked
        while unacked and seqLessThan(unacked[0][0], rcvNxt):
            self.unackedBytes -= HEADER_SIZE + len(unacked.popleft()[2])
        parts: Parts = [encodeMasterOk(self.rcvNxt)]
        for _, header, payload in unacked:
            parts += (header, payload)
        return parts

    # From scamper ------------------------------------------------------

    def _acknowledged(self, seq: int) -> None:
        """ACKs are not cumulative: each must match the oldest outstanding."""
        unacked = self._unacked
        if not unacked:
            raise WireError("ACK %d with nothing outstanding" % (seq,))
        expected = unacked[0][0]
        if seq != expected:
            raise WireError("ACK %d, expected ACK %d" % (seq, expected))
        self.unackedBytes -= HEADER_SIZE + len(unacked.popleft()[2])


Request = Union[MasterNew, MasterRes]


class ReadResult:
    """
    What one read from scamper asks for, in the order to do it: write
    C{toScamper}; deliver C{deliveries}; tell the ends of C{finished};
    then act on C{request} or C{error}, if any.

    @ivar toScamper: the bytes for scamper (the read's ACKs, together).
    @ivar acks: the sequence numbers those ACKs acknowledge.
    @ivar deliveries: the payloads of each channel, in order, by channel,
        in the order the channels first appeared in the read.
    @ivar finished: channels scamper finished (CHANNEL_FIN) in this read,
        out of the table; L{Session.closeFinished} closes them once their
        last payloads are delivered.
    @ivar request: a MASTER_NEW or MASTER_RES that needs the registry's
        answer; decoding stopped after it, and L{Link.receive} with no new
        bytes goes on once the answer is given.
    @ivar error: why the read broke the protocol; what came before the
        offending frame is still in C{deliveries}.
    """

    __slots__ = ("toScamper", "acks", "deliveries", "finished", "request", "error")

    def __init__(self) -> None:
        self.toScamper = b""
        self.acks: List[int] = []
        self.deliveries: Dict[Channel, List[bytes]] = {}
        self.finished: List[Channel] = []
        self.request: Optional[Request] = None
        self.error: Optional[str] = None


class Link:
    """
    One scamper connection's view of the protocol.

    Before a session is attached only a MASTER_NEW or a MASTER_RES, with
    sequence 0 on the control channel, is acceptable; afterwards frames
    go to the session.  A frame is refused as soon as its header is
    complete and wrong, as the C daemon does, not after up to 64 KiB more.

    @ivar session: the L{Session} this connection serves, once attached.
    @ivar closed: the connection is being closed: reads are ignored.
    """

    __slots__ = (
        "timeouts",
        "session",
        "closed",
        "acceptedAt",
        "lastReceived",
        "lastSent",
        "_held",
        "_needed",
        "_headerNew",
        "_undecoded",
    )

    def __init__(self, now: float, timeouts: Timeouts = Timeouts()) -> None:
        self.timeouts = timeouts
        self.session: Optional[Session] = None
        self.closed = False
        self.acceptedAt = self.lastReceived = self.lastSent = now
        self._held = bytearray()
        self._needed = 0
        self._headerNew = False
        self._undecoded = False

    def attach(self, session: Session) -> None:
        """Serve C{session} from now on (after MASTER_ID or MASTER_OK)."""
        self.session = session

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back, waiting for the rest."""
        return len(self._held)

    # Reads -------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> ReadResult:
        """
        Decode one read.  C{data} may cut frames anywhere; an incomplete
        last frame is held back for the next call.  The read itself is
        never copied: a frame held from the last read is completed from
        its first bytes, and the rest is decoded in place.
        """
        result = ReadResult()
        if self.closed:
            return result
        if data:
            self.lastReceived = now
        start = 0
        held = self._held
        if held and self._undecoded:
            # What followed a registration request has not been looked at
            # yet: decode it now as if it had just arrived (a rare path,
            # where a copy costs nothing).
            self._undecoded = False
            held += data
            data = bytes(held)
            held.clear()
        elif held:
            start = self._completeHeld(data)
            if len(held) < self._needed and not self._headerNew:
                return result
            frame = bytes(held)
            held.clear()
            used = self._decode(frame, 0, result)
            if result.error is not None:
                return result
            if used < len(frame):
                self._hold(frame, used)
                return result
        if start < len(data) and result.error is None and result.request is None:
            start = self._decode(data, start, result)
        if start < len(data) and result.error is None:
            self._hold(data, start)
            self._undecoded = result.request is not None
        acks = result.acks
        if acks and result.error is None:
            assert self.session is not None
            result.toScamper = encodeAcks(self.session.sndNxt, acks)
        return result

    def _completeHeld(self, data: bytes) -> int:
        """
        Move to the held frame what it lacks from the front of C{data}
        (its header first, then its payload); return how much was taken.
        """
        held = self._held
        before = len(held)
        held += data[: max(0, self._needed - before)]
        self._headerNew = False
        if self._needed == HEADER_SIZE and len(held) == HEADER_SIZE:
            # The header is complete now: it is checked at once, and the
            # payload it announces is what the frame still lacks.
            self._headerNew = True
            self._needed += _unpackHeader(held, 0)[2]
            taken = len(held) - before
            held += data[taken : taken + self._needed - HEADER_SIZE]
        return len(held) - before

    def _hold(self, data: bytes, start: int) -> None:
        """Keep C{data[start:]}, an incomplete frame, for the next read."""
        held = self._held
        held += memoryview(data)[start:]
        self._needed = HEADER_SIZE
        if len(held) >= HEADER_SIZE:
            self._needed += _unpackHeader(held, 0)[2]

    def _decode(self, data: bytes, start: int, result: ReadResult) -> int:
        """Decode C{data} from C{start}; return where decoding stopped."""
        if self.session is None:
            return self._register(data, start, result)
        return self._established(data, start, self.session, result)

    def _register(self, data: bytes, offset: int, result: ReadResult) -> int:
        """The first frame: MASTER_NEW or MASTER_RES, and nothing past it."""
        if len(data) - offset < HEADER_SIZE:
            return offset
        seq, channel, length = _unpackHeader(data, offset)
        if seq != 0:
            result.error = "got seq %d expected 0" % (seq,)
        elif channel != CONTROL_CHANNEL:
            result.error = "data on channel %d before MASTER_NEW" % (channel,)
        elif offset + HEADER_SIZE + length <= len(data):
            stop = offset + HEADER_SIZE + length
            try:
                message = parseControl(data[offset + HEADER_SIZE : stop])
            except WireError as e:
                result.error = str(e)
                return stop
            if isinstance(message, (MasterNew, MasterRes)):
                result.request = message
            else:
                result.error = "%s before MASTER_NEW" % (type(message).__name__,)
            return stop
        return offset

    def _established(self, data: bytes, offset: int, session: Session, result: ReadResult) -> int:
        """
        Every frame of an attached connection: the hot path, one pass over
        the read with no call per frame but for the rare control message.
        """
        channels = session.channels
        deliveries = result.deliveries
        acks = result.acks
        ack = acks.append
        rcvNxt = session.rcvNxt
        end = len(data)
        first = offset
        frames = 0
        error = None
        # Frames come in runs on one channel: its list is looked up once
        # per run, not once per frame.
        runChannel = CONTROL_CHANNEL
        deliver: Callable[[bytes], None]
        while end - offset >= HEADER_SIZE:
            seq, number, length = _unpackHeader(data, offset)
            if seq != rcvNxt:
                error = "got seq %d expected %d" % (seq, rcvNxt)
                break
            start = offset + HEADER_SIZE
            stop = start + length
            if number:
                if number != runChannel:
                    channel = channels.get(number)
                    if channel is None:
                        error = "data for unknown channel %d" % (number,)
                        break
                    if stop > end:
                        break
                    payloads = deliveries.get(channel)
                    if payloads is None:
                        payloads = deliveries[channel] = []
                    deliver = payloads.append
                    runChannel = number
                elif stop > end:
                    break
                deliver(data[start:stop])
                ack(seq)
                rcvNxt = (seq + 1) & SEQ_MASK
            else:
                if stop > end:
                    break
                try:
                    if length == _ACK_LENGTH and data[start] == _ACK_TYPE:
                        # The commonest control message, decoded in place.
                        session._acknowledged(_unpackU32(data, start + 1)[0])
                    else:
                        # A CHANNEL_FIN may end the run's channel.
                        runChannel = CONTROL_CHANNEL
                        if self._control(session, data[start:stop], result):
                            ack(seq)
                            rcvNxt = (seq + 1) & SEQ_MASK
                except WireError as e:
                    error = str(e)
                    break
            frames += 1
            offset = stop
        session.rcvNxt = rcvNxt
        session.framesIn += frames
        session.bytesIn += offset - first - frames * HEADER_SIZE
        if error is not None:
            result.error = error
        return offset

    def _control(self, session: Session, payload: bytes, result: ReadResult) -> bool:
        """One control message of an established session; whether to ACK it."""
        message = parseControl(payload)
        if isinstance(message, Ack):
            session._acknowledged(message.seq)
            return False
        if isinstance(message, ChannelFin):
            channel = session.channels.pop(message.channel, None)
            if channel is None:
                raise WireError("CHANNEL_FIN for unknown channel %d" % (message.channel,))
            result.finished.append(channel)
            return True
        if isinstance(message, Keepalive):
            return False
        raise WireError("unexpected %s in an established session" % (type(message).__name__,))

    # Timers ------------------------------------------------------------

    def deadline(self) -> float:
        """When L{timerDue} must next be called."""
        timeouts = self.timeouts
        if self.session is None:
            return self.acceptedAt + timeouts.registration
        return min(self.lastReceived + timeouts.silence, self.lastSent + timeouts.keepalive)

    def timerDue(self, now: float) -> Tuple[Optional[str], bytes]:
        """
        The timers at C{now}: why the connection must end (C{"registration"}
        for no registration within 30 s, C{"silent"} for 60 s without a
        byte from scamper), or a KEEPALIVE to send after 30 s of our own
        silence (with the default L{Timeouts}).
        """
        session = self.session
        timeouts = self.timeouts
        if session is None:
            if now >= self.acceptedAt + timeouts.registration:
                return "registration", b""
            return None, b""
        if now >= self.lastReceived + timeouts.silence:
            return "silent", b""
        if now >= self.lastSent + timeouts.keepalive:
            self.lastSent = now
            return None, session.keepalive()
        return None, b""
