"""
In-memory stand-ins for the network, shared by the deterministic tests:
a reactor that records the UNIX sockets the controller makes, and
helpers that connect a fake scamper and fake local clients to it.
"""

import os
from typing import Dict, List, Optional

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from sc_remoted.controller import Controller
from sc_remoted.wire import Frame, FrameDecoder


class FakeUNIXPort:
    """A listening UNIX port that remembers whether it was stopped."""

    def __init__(self, path: str, factory, mode: int, reactor: "SocketsReactor") -> None:
        self.path = path
        self.factory = factory
        self.mode = mode
        self.stopped = False
        self._reactor = reactor

    def stopListening(self) -> None:
        self.stopped = True
        self._reactor.sockets.pop(self.path, None)

    def getHost(self) -> UNIXAddress:
        return UNIXAddress(self.path)


class SocketsReactor(MemoryReactorClock):
    """
    A memory reactor whose C{listenUNIX} keeps the live sockets by path,
    like the files of a sockets directory.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sockets: Dict[str, FakeUNIXPort] = {}

    def listenUNIX(self, address, factory, backlog=50, mode=0o666, wantPID=0):
        port = FakeUNIXPort(address, factory, mode, self)
        self.sockets[address] = port
        return port

    def socketNames(self) -> List[str]:
        return sorted(os.path.basename(path) for path in self.sockets)


def makeController(zombieTime: float = 900, directory: str = "/sockets", **kwargs) -> Controller:
    return Controller(SocketsReactor(), directory, zombieTime=zombieTime, **kwargs)


class FakeScamper:
    """
    The scamper end of one TCP connection to the controller: bytes in
    through L{send}, the controller's frames out through L{received}.
    """

    def __init__(self, controller: Controller, host: str = "127.0.0.1", port: int = 42694) -> None:
        if ":" in host:
            peer = IPv6Address("TCP", host, port)
        else:
            peer = IPv4Address("TCP", host, port)
        self.transport = StringTransport(peerAddress=peer)
        self.protocol = controller.scamperFactory().buildProtocol(peer)
        self.protocol.makeConnection(self.transport)
        self._decoder = FrameDecoder()

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def received(self) -> List[Frame]:
        """The frames written since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return self._decoder.feed(data)

    def receivedBytes(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting

    def lose(self, reset: bool = False) -> None:
        """The TCP connection ends (FIN, or RST with C{reset})."""
        self.transport.disconnecting = True
        reason = ConnectionLost() if reset else ConnectionDone()
        self.protocol.connectionLost(Failure(reason))


class FakeClient:
    """A local program connected to a vantage point's socket."""

    def __init__(self, reactor: SocketsReactor, name: str, directory: str = "/sockets") -> None:
        port = reactor.sockets[os.path.join(directory, name)]
        self.transport = StringTransport()
        self.protocol = port.factory.buildProtocol(UNIXAddress(None))
        self.protocol.makeConnection(self.transport)

    def write(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def shutdownWrite(self) -> None:
        self.protocol.readConnectionLost()

    def close(self) -> None:
        self.transport.disconnecting = True
        self.protocol.connectionLost(Failure(ConnectionDone()))

    def read(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    @property
    def gotEOF(self) -> bool:
        return self.transport.disconnecting


def frame(seq: int, channel: int, payload: bytes) -> Frame:
    return Frame(seq, channel, payload)


def only(frames: List[Frame]) -> Optional[Frame]:
    assert len(frames) == 1, frames
    return frames[0]
