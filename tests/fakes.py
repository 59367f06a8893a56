"""
In-memory stand-ins for the network, shared by the deterministic tests:
a reactor that records the UNIX sockets the controller makes, and fake
local clients of those sockets.  The fake scamper is
L{tests.peer.ScamperPeer}; L{tests.peer_twisted.MemoryScamper} connects
it to a controller over a StringTransport.
"""

import os
from typing import Dict, List, Optional

from twisted.internet.address import UNIXAddress
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile

from sc_remoted.controller import Controller
from sc_remoted.wire import Frame


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


def closeLogFiles(testCase) -> None:
    """Close each log file the code under C{testCase} opens, when the test ends."""
    opened = LogFile.fromFullPath

    def fromFullPath(path, **kwargs):
        logFile = opened(path, **kwargs)
        testCase.addCleanup(logFile.close)
        return logFile

    testCase.patch(LogFile, "fromFullPath", fromFullPath)
