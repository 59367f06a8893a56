"""
The scamper <-> sc_remoted wire format, without any I/O.

Every frame is a 10-byte big-endian header (sequence, channel, payload
length) followed by the payload.  Channel 0 carries control messages whose
payload starts with a one-byte type.  L{FrameDecoder} turns a byte stream
into L{Frame}s, L{parseControl} turns a control payload into one of the
immutable message classes below, and the C{encode*} functions build the
bytes that go on the wire.  The layouts are those of
C{scamper_control.c} and C{sc_remoted.c}; see docs/protocol.rst section 1.
"""

import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

HEADER = struct.Struct("!IIH")
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 0xFFFF
SEQ_MASK = 0xFFFFFFFF
CONTROL_CHANNEL = 0

_U32 = struct.Struct("!I")
# An ACK is the most frequent frame: header and body packed in one call.
_ACK_FRAME = struct.Struct("!IIHBI")
_RESUME_FIELDS = struct.Struct("!III")
_MONITORNAME_CHARS = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-"
)


class ControlType(IntEnum):
    """The type byte that starts every control payload."""

    MASTER_NEW = 0
    MASTER_ID = 1
    CHANNEL_NEW = 2
    CHANNEL_FIN = 3
    KEEPALIVE = 4
    ACK = 5
    MASTER_RES = 6
    MASTER_REJ = 7
    MASTER_OK = 8


class WireError(Exception):
    """
    Bytes from a peer that break the protocol.  The message is the reason,
    written for the operator's log.
    """


def seqLessThan(a: int, b: int) -> bool:
    """
    Serial-number comparison of two 32-bit sequence numbers, as the C
    C{SEQ_LT} macro: C{a} comes before C{b} if the signed difference is
    negative.
    """
    return ((a - b) & SEQ_MASK) >= 0x80000000


def seqNext(seq: int) -> int:
    """The sequence number after C{seq}, wrapping at 2**32."""
    return (seq + 1) & SEQ_MASK


class Frame(NamedTuple):
    """One frame as it came off the wire (a tuple: cheap to build)."""

    seq: int
    channel: int
    payload: bytes


class FrameDecoder:
    """
    Reassemble frames from a byte stream cut at arbitrary points.

    Headers are read with C{struct.unpack_from} straight out of the
    buffer and the consumed prefix is dropped once per call, so the cost
    is per frame, not per byte.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> List[Frame]:
        """
        Add C{data} to the stream and return every frame now complete.

        When nothing is held back (the usual case) frames are cut straight
        from C{data}, and only an incomplete tail is copied.
        """
        buffer = self._buffer
        if buffer:
            buffer += data
            data = bytes(buffer)
            buffer.clear()
        frames: List[Frame] = []
        append = frames.append
        offset = 0
        end = len(data)
        unpack = HEADER.unpack_from
        while end - offset >= HEADER_SIZE:
            seq, channel, length = unpack(data, offset)
            start = offset + HEADER_SIZE
            stop = start + length
            if stop > end:
                break
            append(Frame(seq, channel, data[start:stop]))
            offset = stop
        if offset < end:
            buffer += data[offset:]
        return frames

    def pendingHeader(self) -> Optional[Tuple[int, int, int]]:
        """
        C{(seq, channel, length)} of the incomplete frame held back, once
        its header is complete: a wrong header can be refused at once,
        as the C daemon does, rather than after up to 64 KiB more.
        """
        if len(self._buffer) >= HEADER_SIZE:
            return HEADER.unpack_from(self._buffer, 0)
        return None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back, waiting for the rest."""
        return len(self._buffer)


@dataclass(frozen=True)
class MasterNew:
    """scamper's opening of a new session: its magic and its C{-M} name."""

    magic: bytes
    monitorname: Optional[str]


@dataclass(frozen=True)
class MasterId:
    """sc_remoted's answer to L{MasterNew}: the name scamper uses as alias."""

    identity: str


@dataclass(frozen=True)
class ChannelNew:
    """A new channel, opened by sc_remoted for a local client."""

    channel: int


@dataclass(frozen=True)
class ChannelFin:
    """No more data will be sent on C{channel} by whoever sent this."""

    channel: int


@dataclass(frozen=True)
class Keepalive:
    """Proof of life after 30 seconds of silence."""


@dataclass(frozen=True)
class Ack:
    """Acknowledges exactly the acked message with sequence C{seq}."""

    seq: int


@dataclass(frozen=True)
class MasterRes:
    """
    scamper asking to resume a session after reconnecting: the next
    sequence it expects and the window of what it still holds.
    """

    magic: bytes
    rcv_nxt: int
    snd_una: int
    snd_nxt: int


@dataclass(frozen=True)
class MasterRej:
    """sc_remoted refusing a L{MasterRes}."""


@dataclass(frozen=True)
class MasterOk:
    """sc_remoted accepting a L{MasterRes}: the next sequence it expects."""

    rcv_nxt: int


ControlMessage = Union[
    MasterNew,
    MasterId,
    ChannelNew,
    ChannelFin,
    Keepalive,
    Ack,
    MasterRes,
    MasterRej,
    MasterOk,
]


def _parseMagic(payload: bytes) -> int:
    """
    Check the length-prefixed magic at offset 1 and return the offset just
    past it.
    """
    if len(payload) < 2:
        raise WireError("truncated magic")
    magicLength = payload[1]
    if magicLength == 0:
        raise WireError("magic length is 0")
    end = 2 + magicLength
    if end > len(payload):
        raise WireError(f"magic length {magicLength} exceeds message")
    return end


def _parseMasterNew(payload: bytes) -> MasterNew:
    end = _parseMagic(payload)
    magic = payload[2:end]
    if end == len(payload) or payload[end] == 0:
        # No monitorname length byte at all is accepted as "no name", as
        # the C daemon does (probe case 1).
        return MasterNew(magic, None)
    nameLength = payload[end]
    name = payload[end + 1 : end + 1 + nameLength]
    if len(name) != nameLength:
        raise WireError(f"monitorname length {nameLength} exceeds message")
    if name[-1] != 0:
        raise WireError("monitorname is not NUL-terminated")
    name = name[:-1]
    if not _MONITORNAME_CHARS.issuperset(name):
        raise WireError(f"monitorname {name!r} has a character outside [A-Za-z0-9.-]")
    return MasterNew(magic, name.decode("ascii") or None)


def _parseMasterRes(payload: bytes) -> MasterRes:
    end = _parseMagic(payload)
    if len(payload) - end < _RESUME_FIELDS.size:
        raise WireError("MASTER_RES too short for its sequence fields")
    rcvNxt, sndUna, sndNxt = _RESUME_FIELDS.unpack_from(payload, end)
    return MasterRes(payload[2:end], rcvNxt, sndUna, sndNxt)


def _parseU32(payload: bytes) -> int:
    if len(payload) != 5:
        raise WireError(f"{ControlType(payload[0]).name} has length {len(payload)}, not 5")
    return _U32.unpack_from(payload, 1)[0]


def _parseMasterId(payload: bytes) -> MasterId:
    if len(payload) < 2:
        raise WireError("truncated MASTER_ID")
    idLength = payload[1]
    identity = payload[2 : 2 + idLength]
    if idLength == 0 or len(identity) != idLength or identity[-1] != 0:
        raise WireError("malformed MASTER_ID")
    return MasterId(identity[:-1].decode("ascii", "replace"))


def _parseEmpty(payload: bytes) -> None:
    if len(payload) != 1:
        raise WireError(f"{ControlType(payload[0]).name} has length {len(payload)}, not 1")


def parseControl(payload: bytes) -> ControlMessage:
    """
    Decode a control payload (the payload of a channel-0 frame).

    @raise WireError: if the payload is empty, of an unknown type or
        malformed for its type.
    """
    if not payload:
        raise WireError("empty control message")
    kind = payload[0]
    if kind == ControlType.ACK:
        return Ack(_parseU32(payload))
    if kind == ControlType.CHANNEL_FIN:
        return ChannelFin(_parseU32(payload))
    if kind == ControlType.KEEPALIVE:
        _parseEmpty(payload)
        return Keepalive()
    if kind == ControlType.MASTER_NEW:
        return _parseMasterNew(payload)
    if kind == ControlType.MASTER_RES:
        return _parseMasterRes(payload)
    if kind == ControlType.CHANNEL_NEW:
        return ChannelNew(_parseU32(payload))
    if kind == ControlType.MASTER_ID:
        return _parseMasterId(payload)
    if kind == ControlType.MASTER_OK:
        return MasterOk(_parseU32(payload))
    if kind == ControlType.MASTER_REJ:
        _parseEmpty(payload)
        return MasterRej()
    raise WireError(f"unknown control type {kind}")


def encodeFrame(seq: int, channel: int, payload: bytes) -> bytes:
    """One frame: header and payload.  C{payload} is at most 65535 bytes."""
    return HEADER.pack(seq, channel, len(payload)) + payload


def _control(seq: int, kind: ControlType, body: bytes = b"") -> bytes:
    return encodeFrame(seq, CONTROL_CHANNEL, bytes((kind,)) + body)


def encodeMasterId(identity: str) -> bytes:
    """MASTER_ID: NUL-terminated identity, its length counting the NUL."""
    raw = identity.encode("ascii") + b"\0"
    return _control(0, ControlType.MASTER_ID, bytes((len(raw),)) + raw)


def channelNewPayload(channel: int) -> bytes:
    """The payload of CHANNEL_NEW; the sender numbers it as acked data."""
    return bytes((ControlType.CHANNEL_NEW,)) + _U32.pack(channel)


def channelFinPayload(channel: int) -> bytes:
    """The payload of CHANNEL_FIN; the sender numbers it as acked data."""
    return bytes((ControlType.CHANNEL_FIN,)) + _U32.pack(channel)


def encodeKeepalive(seq: int) -> bytes:
    return _control(seq, ControlType.KEEPALIVE)


def encodeAck(seq: int, acked: int) -> bytes:
    return _ACK_FRAME.pack(seq, CONTROL_CHANNEL, 5, ControlType.ACK, acked)


# Every ACK of one read shares its first 11 bytes (header with our next
# sequence number, type byte); one struct per count packs them all at once.
_ACK_PREFIX = struct.Struct("!IIHB")
_ACKS_PER_STRUCT = 1024
_ackStructs: Dict[int, struct.Struct] = {}


def _acksStruct(count: int) -> struct.Struct:
    packer = _ackStructs.get(count)
    if packer is None:
        packer = _ackStructs[count] = struct.Struct("!" + "11sI" * count)
    return packer


def encodeAcks(seq: int, acked: List[int]) -> bytes:
    """
    The ACKs of C{acked}, in order, each carrying C{seq} (our next
    sequence number, which an ACK does not consume): the bytes of
    C{encodeAck(seq, a)} for every C{a}, joined, for a fraction of the cost.
    """
    if len(acked) == 1:
        return _ACK_FRAME.pack(seq, CONTROL_CHANNEL, 5, ControlType.ACK, acked[0])
    prefix = _ACK_PREFIX.pack(seq, CONTROL_CHANNEL, 5, ControlType.ACK)
    chunks = []
    for start in range(0, len(acked), _ACKS_PER_STRUCT):
        part = acked[start : start + _ACKS_PER_STRUCT]
        fields: List[object] = [prefix, 0] * len(part)
        fields[1::2] = part
        chunks.append(_acksStruct(len(part)).pack(*fields))
    return b"".join(chunks)


def encodeMasterOk(rcvNxt: int) -> bytes:
    return _control(0, ControlType.MASTER_OK, _U32.pack(rcvNxt))


def encodeMasterRej() -> bytes:
    return _control(0, ControlType.MASTER_REJ)


def encodeMasterNew(magic: bytes, monitorname: Optional[str] = None) -> bytes:
    """MASTER_NEW as scamper writes it; for tests and load generators."""
    body = bytes((len(magic),)) + magic
    if monitorname:
        raw = monitorname.encode("ascii") + b"\0"
        body += bytes((len(raw),)) + raw
    else:
        body += b"\0"
    return _control(0, ControlType.MASTER_NEW, body)


def encodeMasterRes(magic: bytes, rcvNxt: int, sndUna: int, sndNxt: int) -> bytes:
    """MASTER_RES as scamper writes it; for tests and load generators."""
    body = bytes((len(magic),)) + magic + _RESUME_FIELDS.pack(rcvNxt, sndUna, sndNxt)
    return _control(0, ControlType.MASTER_RES, body)


def describeMagic(magic: bytes) -> str:
    """
    A magic as a log shows it: its length and the first 8 hex digits of
    its SHA-256, enough to tell sessions apart and to match a MASTER_RES
    to its MASTER_NEW, never the bytes, which are the credential that
    resumes the session (docs/security.rst, "What the daemon logs").
    """
    return "<%d bytes, sha256 %s>" % (len(magic), hashlib.sha256(magic).hexdigest()[:8])


def _describeControl(message: ControlMessage) -> str:
    if isinstance(message, MasterNew):
        return "MasterNew(magic=%s, monitorname=%r)" % (describeMagic(message.magic), message.monitorname)
    if isinstance(message, MasterRes):
        return "MasterRes(magic=%s, rcv_nxt=%d, snd_una=%d, snd_nxt=%d)" % (
            describeMagic(message.magic),
            message.rcv_nxt,
            message.snd_una,
            message.snd_nxt,
        )
    return repr(message)


def describeFrame(frame: Frame) -> str:
    """
    A one-line rendering of a frame for debug logs (C{--debug}): the
    header, and a control message's fields with any magic shown by
    L{describeMagic}; never a payload's bytes.
    """
    if frame.channel != CONTROL_CHANNEL:
        return "seq=%d chan=%d len=%d data" % (frame.seq, frame.channel, len(frame.payload))
    try:
        message = _describeControl(parseControl(frame.payload))
    except WireError as e:
        message = "malformed (%s)" % (e,)
    return "seq=%d chan=0 %s" % (frame.seq, message)
