"""
Test doubles shared by the tests that hold our sc_remoted to the bytes the
C daemon produced (C{test_replay}, C{test_probes}).

Nothing here touches the network or the file system: the reactor is a
L{MemoryReactorClock} that also remembers which UNIX sockets are still
listening, every TCP connection from scamper is a L{ScamperConnection}
around a L{StringTransport}, and every local client is a
L{ClientConnection} built from the factory our controller passed to
C{listenUNIX}.  When our code closes a transport, L{Remoted.settle}
delivers C{connectionLost} as the real reactor would.

The captures are read from the JSON-lines fixtures that
C{tests/fixtures/convert_captures.py} made; see its docstring.
"""

import json
import os
import struct
from typing import NamedTuple

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from sc_remoted.controller import Controller

FIXTURES = FilePath(__file__).sibling("fixtures")

# Where the controller is told to make its sockets.  Nothing is created
# there: the reactor is a fake.
SOCKETS_DIRECTORY = "/nonexistent/sc_remoted-sockets"

_HEADER = struct.Struct("!IIH")

# Control types, as numbered on the wire (docs/protocol.rst 1.2).  Spelled out
# here rather than imported so that the tests do not depend on the codec
# they check.
MASTER_NEW, MASTER_ID, CHANNEL_NEW, CHANNEL_FIN, KEEPALIVE, ACK = range(6)
MASTER_RES, MASTER_REJ, MASTER_OK = 6, 7, 8


def loadFixture(name: str) -> list[dict]:
    """The records of one fixture file, in order."""
    lines = FIXTURES.child(name).getContent().decode("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


class Frame(NamedTuple):
    """One frame, as the tests see it: header fields, payload, raw bytes."""

    seq: int
    channel: int
    payload: bytes
    raw: bytes

    @property
    def controlType(self) -> int | None:
        """The control type byte, or L{None} for channel data."""
        if self.channel != 0 or not self.payload:
            return None
        return self.payload[0]

    @property
    def u32(self) -> int:
        """The 32-bit field of ACK, CHANNEL_NEW, CHANNEL_FIN and MASTER_OK."""
        return struct.unpack("!I", self.payload[1:5])[0]


class FrameReader:
    """Cut a byte stream into frames, wherever it was split."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= _HEADER.size:
            seq, channel, length = _HEADER.unpack_from(self._buffer)
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            raw, self._buffer = self._buffer[:end], self._buffer[end:]
            frames.append(Frame(seq, channel, raw[_HEADER.size :], raw))
        return frames

    @property
    def pending(self) -> bytes:
        return self._buffer


def splitFrames(data: bytes) -> list[Frame]:
    """Every frame of C{data}, which must hold whole frames only."""
    reader = FrameReader()
    frames = reader.feed(data)
    assert not reader.pending, f"trailing partial frame {reader.pending!r}"
    return frames


def withSeq(raw: bytes, seq: int) -> bytes:
    """The frame C{raw} with its header sequence number replaced."""
    return struct.pack("!I", seq) + raw[4:]


def withU32(raw: bytes, value: int) -> bytes:
    """The control frame C{raw} (ACK, CHANNEL_FIN, ...) with its u32 field replaced."""
    return raw[: _HEADER.size + 1] + struct.pack("!I", value) + raw[_HEADER.size + 5 :]


class FakeUNIXPort:
    """
    What our fake C{listenUNIX} returns: remembers whether the controller
    has closed (and so, in the real reactor, unlinked) the socket.
    """

    def __init__(self, path: str, factory) -> None:
        self.path = path
        self.name = os.path.basename(path)
        self.factory = factory
        self.listening = True

    def startListening(self) -> None:
        pass

    def stopListening(self):
        self.listening = False
        return succeed(None)

    def getHost(self) -> UNIXAddress:
        return UNIXAddress(self.path)


class SocketTrackingReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} whose UNIX ports know when they are closed.
    C{unixServers} still records every C{listenUNIX} call as
    C{(path, factory, backlog, mode, wantPID)}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.unixPorts: list[FakeUNIXPort] = []

    def listenUNIX(self, address, factory, backlog=50, mode=0o666, wantPID=0):
        super().listenUNIX(address, factory, backlog, mode, wantPID)
        port = FakeUNIXPort(address, factory)
        self.unixPorts.append(port)
        return port

    def listeningNames(self) -> list[str]:
        """The socket directory as C{ls} would show it: names still listening."""
        return sorted(port.name for port in self.unixPorts if port.listening)

    def listeningPort(self, name: str) -> FakeUNIXPort:
        ports = [port for port in self.unixPorts if port.listening and port.name == name]
        assert len(ports) == 1, f"no single socket named {name!r}: {self.listeningNames()!r}"
        return ports[0]


class TimedTransport(StringTransport):
    """A L{StringTransport} that remembers when each write happened."""

    def __init__(self, clock, **kwargs) -> None:
        super().__init__(**kwargs)
        self._clock = clock
        self.writes: list[tuple[float, bytes]] = []
        self._taken = 0

    def write(self, data: bytes) -> None:
        super().write(data)
        self.writes.append((self._clock.seconds(), data))

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def take(self) -> bytes:
        """What was written since the last C{take}."""
        value = self.value()
        new, self._taken = value[self._taken :], len(value)
        return new

    def writeTimeAt(self, offset: int) -> float:
        """When the byte at C{offset} of the stream was written."""
        position = 0
        for when, data in self.writes:
            position += len(data)
            if offset < position:
                return when
        raise IndexError(offset)


class ScamperConnection:
    """One TCP connection from (a stand-in for) scamper."""

    def __init__(self, remoted: "Remoted", port: int) -> None:
        self.remoted = remoted
        self.peer = IPv4Address("TCP", "127.0.0.1", port)
        self.protocol = remoted.controller.scamperFactory().buildProtocol(self.peer)
        self.transport = TimedTransport(
            remoted.reactor,
            hostAddress=IPv4Address("TCP", "127.0.0.1", 41001),
            peerAddress=self.peer,
        )
        self.lost = False

    def send(self, data: bytes) -> None:
        """scamper's bytes arrive."""
        assert not self.lost
        self.protocol.dataReceived(data)
        self.remoted.settle()

    def take(self) -> bytes:
        """What sc_remoted sent since the last C{take}."""
        return self.transport.take()

    def output(self) -> bytes:
        """Everything sc_remoted sent on this connection."""
        return self.transport.value()

    @property
    def closed(self) -> bool:
        """sc_remoted closed the connection (gracefully or not)."""
        return self.transport.disconnecting

    def peerCloses(self, reason: Failure | None = None) -> None:
        """scamper's side ends: FIN (the default) or RST."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(reason or Failure(ConnectionDone()))
        self.remoted.settle()


class ClientConnection:
    """One local client connected to a vantage point's UNIX socket."""

    def __init__(self, remoted: "Remoted", port: FakeUNIXPort) -> None:
        self.remoted = remoted
        self.channel = port.factory.buildProtocol(UNIXAddress(None))
        self.transport = StringTransport(
            hostAddress=UNIXAddress(port.path), peerAddress=UNIXAddress(None)
        )
        self.lost = False

    def write(self, data: bytes) -> None:
        self.channel.dataReceived(data)
        self.remoted.settle()

    def shutdownWrite(self) -> None:
        """C{shutdown(SHUT_WR)}: the client half-closes."""
        self.channel.readConnectionLost()
        self.remoted.settle()

    def close(self) -> None:
        """The client closes its socket."""
        if not self.lost:
            self.lost = True
            self.channel.connectionLost(Failure(ConnectionDone()))
        self.remoted.settle()

    @property
    def received(self) -> bytes:
        return self.transport.value()

    @property
    def eof(self) -> bool:
        """sc_remoted closed the client's connection: it reads end of file."""
        return self.transport.disconnecting


class Remoted:
    """
    Our sc_remoted in a box: a L{Controller} on a fake reactor, with
    helpers to connect scampers and clients and to move time forward.
    """

    def __init__(self, zombieTime: float = 900, **kwargs) -> None:
        self.reactor = SocketTrackingReactor()
        self.controller = Controller(self.reactor, SOCKETS_DIRECTORY, zombieTime=zombieTime, **kwargs)
        self.scampers: list[ScamperConnection] = []
        self.clients: list[ClientConnection] = []

    def connectScamper(self, port: int) -> ScamperConnection:
        connection = ScamperConnection(self, port)
        self.scampers.append(connection)
        connection.protocol.makeConnection(connection.transport)
        self.settle()
        return connection

    def connectClient(self, name: str) -> ClientConnection:
        """A client connects to the socket called C{name}, which must be listening."""
        client = ClientConnection(self, self.reactor.listeningPort(name))
        self.clients.append(client)
        client.channel.makeConnection(client.transport)
        self.settle()
        return client

    def settle(self) -> None:
        """
        Finish every close our code asked for: the real reactor would call
        C{connectionLost} once the transport has gone.
        """
        changed = True
        while changed:
            changed = False
            for scamper in self.scampers:
                if scamper.transport.disconnecting and not scamper.lost:
                    scamper.lost = True
                    changed = True
                    error = ConnectionAborted() if scamper.transport.disconnected else ConnectionDone()
                    scamper.protocol.connectionLost(Failure(error))
            for client in self.clients:
                if client.transport.disconnecting and not client.lost:
                    client.lost = True
                    changed = True
                    client.channel.connectionLost(Failure(ConnectionDone()))

    def now(self) -> float:
        return self.reactor.seconds()

    def advanceTo(self, when: float) -> None:
        """
        Move the clock to C{when}, running each timer at its own due time
        (not at C{when}), so that what it sends is stamped with the moment
        the real daemon would have sent it.
        """
        for _ in range(100000):
            due = [call.getTime() for call in self.reactor.getDelayedCalls()]
            due = [t for t in due if t <= when]
            if not due:
                break
            self.reactor.rightNow = max(self.reactor.rightNow, min(due))
            self.reactor.advance(0)
            self.settle()
        else:  # pragma: no cover
            raise AssertionError(f"timers keep rescheduling themselves at {self.now()!r}")
        self.reactor.rightNow = max(self.reactor.rightNow, when)
        self.reactor.advance(0)
        self.settle()

    def advance(self, seconds: float) -> None:
        self.advanceTo(self.now() + seconds)

    def vantagePoint(self, magic: bytes):
        """The vantage point holding C{magic}, live or zombie, or L{None}."""
        for vp in self.controller.vantagePoints():
            if vp.magic == magic:
                return vp
        return None
