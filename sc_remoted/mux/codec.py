"""
The mux wire format, without any I/O.

Every message, both directions, is an 8-byte big-endian header (channel,
payload length) and the payload.  Channel 0 carries control messages
whose payload starts with a 16-bit type; any other channel carries raw
bytes of scamper's text control protocol.  L{MuxDecoder} cuts a byte
stream into L{MuxFrame}s, L{parseControl} turns a control payload into one
of the immutable message classes, and the C{encode*} functions build
bytes.  The layouts are those of upstream sc_remoted 1.162 and
libscamperctrl (docs/mux.rst).
"""

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

HEADER = struct.Struct("!II")
HEADER_SIZE = HEADER.size
CONTROL_CHANNEL = 0
MAX_LENGTH = 0xFFFFFFFF

# What the daemon accepts in one message from a client: a mux data frame
# may claim up to 4 GiB, which we will not buffer.
MAX_CLIENT_MESSAGE = 1024 * 1024

_TYPE = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TYPE_U32 = struct.Struct("!HI")
_OPEN = struct.Struct("!HII")


class MuxType(IntEnum):
    """The 16-bit type that starts every control payload."""

    VP_UPDATE = 0
    VP_DEPART = 1
    GO = 2
    CHANNEL_OPEN = 3
    CHANNEL_CLOSE = 4


class Attribute(IntEnum):
    """The attribute numbers of a VP_UPDATE (docs/mux.rst, not sc_remoted.c's comment)."""

    NAME = 1
    ARRIVAL = 2
    IPV4 = 3
    ASN4 = 4
    CC = 5
    ST = 6
    PLACE = 7
    LATLONG = 8
    SHORTNAME = 9
    TAG = 10
    IATA = 11
    IPV6 = 12
    ASN6 = 13


class MuxError(Exception):
    """Bytes that break the mux protocol; the message is the reason."""


class MessageTooLarge(MuxError):
    """A header announcing more payload than the reader will hold."""


class MuxFrame(NamedTuple):
    """One message as it came off the wire."""

    channel: int
    payload: bytes


AttributeList = Tuple[Tuple[int, str], ...]


@dataclass(frozen=True)
class VpUpdate:
    """A vantage point and its attributes (remoted to client)."""

    vp_id: int
    attributes: AttributeList


@dataclass(frozen=True)
class VpDepart:
    """A vantage point is gone (remoted to client)."""

    vp_id: int


@dataclass(frozen=True)
class Go:
    """The initial list of vantage points is complete (remoted to client)."""


@dataclass(frozen=True)
class ChannelOpen:
    """Open C{channel_id}, chosen by the client, to C{vp_id} (client to remoted)."""

    vp_id: int
    channel_id: int


@dataclass(frozen=True)
class ChannelClose:
    """scamper finished C{channel_id} (remoted to client)."""

    channel_id: int


@dataclass(frozen=True)
class UnknownControl:
    """A control type this side does not know; ignored by its readers."""

    type: int
    body: bytes


ControlMessage = Union[VpUpdate, VpDepart, Go, ChannelOpen, ChannelClose, UnknownControl]


class MuxDecoder:
    """
    Reassemble mux messages from a byte stream cut at arbitrary points.

    @param maxLength: the largest payload accepted; a header announcing
        more raises L{MessageTooLarge} before any of it is buffered.
    """

    def __init__(self, maxLength: int = MAX_LENGTH) -> None:
        self._buffer = bytearray()
        self._maxLength = maxLength

    def feed(self, data: bytes) -> List[MuxFrame]:
        """
        Add C{data} to the stream and return every message now complete.

        @raise MessageTooLarge: for a payload longer than C{maxLength};
            the stream cannot be read further.
        """
        buffer = self._buffer
        buffer += data
        frames = []
        offset = 0
        end = len(buffer)
        while end - offset >= HEADER_SIZE:
            channel, length = HEADER.unpack_from(buffer, offset)
            if length > self._maxLength:
                raise MessageTooLarge(
                    "message of %d bytes on channel %d exceeds the limit of %d"
                    % (length, channel, self._maxLength)
                )
            start = offset + HEADER_SIZE
            stop = start + length
            if stop > end:
                break
            frames.append(MuxFrame(channel, bytes(buffer[start:stop])))
            offset = stop
        if offset:
            del buffer[:offset]
        return frames

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held back."""
        return len(self._buffer)


# Parsing --------------------------------------------------------------


def _u32(body: bytes, what: str) -> int:
    if len(body) != 4:
        raise MuxError("%s body of %d bytes, expected 4" % (what, len(body)))
    return _U32.unpack(body)[0]


def parseAttributes(body: bytes) -> AttributeList:
    """The C{uint16 attr}, NUL-terminated value pairs of a VP_UPDATE."""
    attributes = []
    offset = 0
    end = len(body)
    while offset < end:
        if end - offset < 2:
            raise MuxError("VP_UPDATE attribute cut short")
        (attr,) = _TYPE.unpack_from(body, offset)
        offset += 2
        nul = body.find(b"\0", offset)
        if nul < 0:
            raise MuxError("VP_UPDATE attribute %d value is not NUL-terminated" % (attr,))
        attributes.append((attr, body[offset:nul].decode("utf-8", "replace")))
        offset = nul + 1
    return tuple(attributes)


def parseControl(payload: bytes) -> ControlMessage:
    """
    Decode a channel-0 payload.

    @raise MuxError: if it is shorter than its type, or a known type's
        body has the wrong size or shape.  The error for a CHANNEL_OPEN
        whose channel can still be read carries it as C{channel_id}.
    """
    if len(payload) < 2:
        raise MuxError("control message of %d bytes has no type" % (len(payload),))
    (kind,) = _TYPE.unpack_from(payload)
    body = payload[2:]
    if kind == MuxType.VP_UPDATE:
        if len(body) < 4:
            raise MuxError("VP_UPDATE without a VP id")
        return VpUpdate(_U32.unpack_from(body)[0], parseAttributes(body[4:]))
    if kind == MuxType.VP_DEPART:
        return VpDepart(_u32(body, "VP_DEPART"))
    if kind == MuxType.GO:
        if body:
            raise MuxError("GO with a body of %d bytes" % (len(body),))
        return Go()
    if kind == MuxType.CHANNEL_OPEN:
        if len(body) != 8:
            error = MuxError("CHANNEL_OPEN body of %d bytes, expected 8" % (len(body),))
            if len(body) >= 8:
                error.channel_id = _U32.unpack_from(body, 4)[0]  # type: ignore[attr-defined]
            raise error
        vp_id, channel_id = struct.unpack("!II", body)
        return ChannelOpen(vp_id, channel_id)
    if kind == MuxType.CHANNEL_CLOSE:
        return ChannelClose(_u32(body, "CHANNEL_CLOSE"))
    return UnknownControl(kind, body)


# Encoding -------------------------------------------------------------


def encodeMessage(channel: int, payload: bytes) -> bytes:
    """One message: header and payload."""
    return HEADER.pack(channel, len(payload)) + payload


def encodeData(channel: int, payload: bytes) -> bytes:
    """Bytes of scamper's control protocol on a client channel."""
    if channel == CONTROL_CHANNEL:
        raise ValueError("data cannot go on the control channel")
    return encodeMessage(channel, payload)


def _control(payload: bytes) -> bytes:
    return encodeMessage(CONTROL_CHANNEL, payload)


def encodeAttributes(attributes: Iterable[Tuple[int, str]]) -> bytes:
    parts = []
    for attr, value in attributes:
        data = value.encode("utf-8")
        if b"\0" in data:
            raise ValueError("attribute %d holds a NUL" % (attr,))
        parts.append(_TYPE.pack(attr) + data + b"\0")
    return b"".join(parts)


def encodeVpUpdate(vp_id: int, attributes: Sequence[Tuple[int, str]]) -> bytes:
    return _control(_TYPE_U32.pack(MuxType.VP_UPDATE, vp_id) + encodeAttributes(attributes))


def encodeVpDepart(vp_id: int) -> bytes:
    return _control(_TYPE_U32.pack(MuxType.VP_DEPART, vp_id))


def encodeGo() -> bytes:
    return _control(_TYPE.pack(MuxType.GO))


def encodeChannelOpen(vp_id: int, channel_id: int) -> bytes:
    return _control(_OPEN.pack(MuxType.CHANNEL_OPEN, vp_id, channel_id))


def encodeChannelClose(channel_id: int) -> bytes:
    return _control(_TYPE_U32.pack(MuxType.CHANNEL_CLOSE, channel_id))


def encodeControl(message: ControlMessage) -> bytes:
    """The bytes of any control message (the one encoder for tests and clients)."""
    if isinstance(message, VpUpdate):
        return encodeVpUpdate(message.vp_id, message.attributes)
    if isinstance(message, VpDepart):
        return encodeVpDepart(message.vp_id)
    if isinstance(message, Go):
        return encodeGo()
    if isinstance(message, ChannelOpen):
        return encodeChannelOpen(message.vp_id, message.channel_id)
    if isinstance(message, ChannelClose):
        return encodeChannelClose(message.channel_id)
    return _control(_TYPE.pack(message.type) + message.body)


def describe(frame: MuxFrame) -> str:
    """One line for a debug log."""
    if frame.channel != CONTROL_CHANNEL:
        return "data channel %d, %d bytes" % (frame.channel, len(frame.payload))
    try:
        return repr(parseControl(frame.payload))
    except MuxError as e:
        return "malformed control message (%s)" % (e,)


def optionalChannel(error: MuxError) -> Optional[int]:
    """The channel a malformed CHANNEL_OPEN named, when it could be read."""
    return getattr(error, "channel_id", None)
