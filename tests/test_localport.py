"""
L{sc_remoted.localport} on real UNIX sockets: a vantage point's port
accepts and relays as Twisted's does, reads without ancillary data (a
descriptor sent to it is not kept), writes no lines of its own, and is
gone, file included, when C{stopListening} returns.
"""

import array
import os
import shutil
import socket
import stat
import tempfile
from typing import List

from twisted.internet import reactor
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial import unittest

from sc_remoted import sockets
from sc_remoted.localport import LocalPort, LocalServer


class Recorder(Protocol):
    """What a client sent, and whether the connection was lost."""

    def __init__(self) -> None:
        self.received: List[bytes] = []
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True


def openDescriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


class LocalPortTests(unittest.TestCase):
    def setUp(self) -> None:
        # A short directory: trial's own temporary paths are too long for sun_path.
        directory = tempfile.mkdtemp(dir="/tmp", prefix="scr")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "192.0.2.1:1025")
        self.built: List[Recorder] = []
        self.factory = Factory()
        self.factory.noisy = False
        self.factory.buildProtocol = self._build  # type: ignore[method-assign]
        self.events: List[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def _build(self, addr: object) -> Recorder:
        self.built.append(Recorder())
        return self.built[-1]

    def listen(self, mode: int = 0o660) -> LocalPort:
        port = sockets.listenUNIX(reactor, self.path, self.factory, mode)
        self.assertIsInstance(port, LocalPort)
        self.addCleanup(port.stopListening)
        return port  # type: ignore[return-value]

    def accept(self, port: LocalPort) -> socket.socket:
        """Connect a client and let the port accept it, as the reactor would."""
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(client.close)
        client.connect(self.path)
        port.doRead()
        transport = self.built[-1].transport
        self.addCleanup(transport.abortConnection)
        return client

    def test_fileAndMode(self) -> None:
        """The socket file is there, with exactly the mode asked for."""
        self.listen(0o660)
        status = os.lstat(self.path)
        self.assertTrue(stat.S_ISSOCK(status.st_mode))
        self.assertEqual(stat.S_IMODE(status.st_mode), 0o660)

    def test_relaysBothWays(self) -> None:
        """A client's bytes reach the protocol; the protocol's reach the client."""
        port = self.listen()
        client = self.accept(port)
        protocol = self.built[0]
        self.assertIsInstance(protocol.transport, LocalServer)
        client.sendall(b"attach\n")
        protocol.transport.doRead()
        self.assertEqual(b"".join(protocol.received), b"attach\n")
        protocol.transport.write(b"OK\n")
        protocol.transport.doWrite()
        self.assertEqual(client.recv(100), b"OK\n")

    def test_descriptorNotKept(self) -> None:
        """
        Bytes sent with a file descriptor arrive; the descriptor is not
        handed to the daemon (no descriptor more in the process once the
        client's copy is closed).
        """
        port = self.listen()
        client = self.accept(port)
        protocol = self.built[0]
        before = openDescriptors()
        passed = os.open(os.devnull, os.O_RDONLY)
        client.sendmsg([b"with a descriptor\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [passed]))])
        os.close(passed)
        protocol.transport.doRead()
        self.assertEqual(b"".join(protocol.received), b"with a descriptor\n")
        self.assertEqual(openDescriptors(), before)

    def test_endOfFile(self) -> None:
        """A client that closes is a lost connection, as with Twisted's transport."""
        port = self.listen()
        client = self.accept(port)
        client.close()
        transport = self.built[0].transport
        reason = transport.doRead()
        self.assertIsNotNone(reason)

    def test_stopListeningAtOnce(self) -> None:
        """
        When stopListening returns, its Deferred has fired, the file is
        gone and the socket closed; accepted clients stay connected.
        """
        port = self.listen()
        client = self.accept(port)
        before = openDescriptors()
        fired: List[object] = []
        port.stopListening().addCallback(fired.append)
        self.assertEqual(fired, [None])
        self.assertFalse(os.path.lexists(self.path))
        self.assertEqual(openDescriptors(), before - 1)
        self.assertNotIn(port, reactor.getReaders())
        self.assertFalse(self.built[0].lost)
        self.built[0].transport.write(b"still here\n")
        self.built[0].transport.doWrite()
        self.assertEqual(client.recv(100), b"still here\n")

    def test_stopTwice(self) -> None:
        """A second stopListening does nothing, and fires too."""
        port = self.listen()
        port.stopListening()
        fired: List[object] = []
        port.stopListening().addCallback(fired.append)
        self.assertEqual(fired, [None])

    def test_noLines(self) -> None:
        """Neither starting nor stopping writes a log line."""
        port = self.listen()
        port.stopListening()
        self.assertEqual(self.events, [])

    def test_bindFailsCleanly(self) -> None:
        """A path that cannot be bound is CannotListenError, with no socket left open."""
        self.listen()  # the process's reserve descriptor (for EMFILE) is open from here on
        before = openDescriptors()
        missing = os.path.join(os.path.dirname(self.path), "missing", "192.0.2.1:1025")
        port = LocalPort(missing, self.factory, 5, 0o660, reactor)
        self.assertRaises(CannotListenError, port.startListening)
        self.assertEqual(openDescriptors(), before)
