"""
L{sc_remoted.localport} on real UNIX sockets: a vantage point's port
accepts and relays as Twisted's does, reads without ancillary data (a
descriptor sent to it is not kept), writes no lines of its own, and is
gone, file included, when C{stopListening} returns.
"""

import array
import errno
import os
import shutil
import socket
import stat
import tempfile
from typing import List

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
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

    def test_fileRemovedBySomeoneElse(self) -> None:
        """
        A file removed under the port (a cleaner of /tmp): the socket is
        closed all the same, the Deferred fires, and a warning says so.
        """
        port = self.listen()
        os.unlink(self.path)
        before = openDescriptors()
        fired: List[object] = []
        port.stopListening().addBoth(fired.append)
        self.assertEqual(fired, [None])
        self.assertEqual(openDescriptors(), before - 1)
        self.assertFalse(port.connected)
        [warning] = [e for e in self.events if e.get("sc_event") == "socket.gone"]
        self.assertEqual(formatEvent(warning), "socket %s was removed by someone else" % (self.path,))

    def test_fileReplacedLeftThere(self) -> None:
        """A file put at the path in place of the socket's is not the port's to remove."""
        port = self.listen()
        os.unlink(self.path)
        with open(self.path, "w") as f:
            f.write("someone else's")
        before = openDescriptors()
        port.stopListening()
        self.assertEqual(openDescriptors(), before - 1)
        with open(self.path) as f:
            self.assertEqual(f.read(), "someone else's")
        self.assertEqual([e.get("sc_event") for e in self.events if e.get("sc_event")], ["socket.gone"])

    def test_unlinkFailsSocketClosed(self) -> None:
        """A file that cannot be removed fails the Deferred, after the socket is closed."""
        port = self.listen()

        def refuse(path: object) -> None:
            raise PermissionError(errno.EACCES, "refused", path)

        self.patch(os, "unlink", refuse)
        before = openDescriptors()
        failures: List[Failure] = []
        port.stopListening().addErrback(failures.append)
        [failure] = failures
        failure.trap(PermissionError)
        self.assertEqual(openDescriptors(), before - 1)
        self.assertNotIn(port, reactor.getReaders())

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

    def connect(self) -> socket.socket:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(client.close)
        client.connect(self.path)
        return client

    def test_oneClientPerRead(self) -> None:
        """
        Each readiness event accepts one waiting client, as the C daemon
        does; with none waiting, nothing happens.
        """
        port = self.listen()
        self.connect()
        self.connect()
        port.doRead()
        self.assertEqual(len(self.built), 1)
        port.doRead()
        self.assertEqual(len(self.built), 2)
        port.doRead()
        self.assertEqual(len(self.built), 2)
        for protocol in self.built:
            self.assertIsInstance(protocol.transport, LocalServer)
            self.addCleanup(protocol.transport.abortConnection)
        self.assertEqual(self.built[0].transport.getPeer(), self.built[1].transport.getPeer())

    def test_acceptErrorToTwisted(self) -> None:
        """
        An accept error other than EAGAIN goes to Twisted's accept loop:
        it logs ECONNABORTED, and the port accepts the next client.
        """
        port = self.listen()
        listening = port.socket

        class Aborting:
            def __init__(self) -> None:
                self.calls = 0

            def accept(self) -> object:
                self.calls += 1
                raise OSError(errno.ECONNABORTED, "aborted")

            def __getattr__(self, name: str) -> object:
                return getattr(listening, name)

        aborting = Aborting()
        port.socket = aborting  # type: ignore[assignment]
        port.doRead()
        self.assertEqual(aborting.calls, 2)  # ours, then Twisted's loop
        self.assertIn("ECONNABORTED", " ".join(formatEvent(e) for e in self.events))
        port.socket = listening
        self.accept(port)
        self.assertEqual(len(self.built), 1)
        self.assertTrue(port.connected)

    def test_factoryFails(self) -> None:
        """
        A factory that raises costs that client its connection (closed,
        not left to the garbage collector) and one logged error; the
        port accepts the next client.
        """
        port = self.listen()
        client = self.connect()
        self.factory.buildProtocol = lambda addr: 1 / 0  # type: ignore[method-assign]
        port.doRead()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        client.settimeout(1)
        self.assertEqual(client.recv(10), b"")
        self.factory.buildProtocol = self._build  # type: ignore[method-assign]
        self.accept(port)
        self.assertEqual(len(self.built), 1)

    def test_connectionMadeFails(self) -> Deferred:
        """A protocol that raises in connectionMade: logged, its client dropped, the port goes on."""
        port = self.listen()
        client = self.connect()

        class Failing(Recorder):
            def connectionMade(self) -> None:
                raise RuntimeError("no")

        self.factory.buildProtocol = lambda addr: Failing()  # type: ignore[method-assign]
        port.doRead()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(port.connected)

        def dropped(ignored: None) -> None:
            # Twisted's abortConnection closes on the reactor's next turn.
            client.settimeout(1)
            self.assertEqual(client.recv(10), b"")

        return deferLater(reactor, 0, lambda: None).addCallback(dropped)

    def acceptedProtocol(self, port: LocalPort) -> Recorder:
        """Let the port accept the waiting client; its protocol, closed at cleanup."""
        port.doRead()
        protocol = self.built[-1]
        self.addCleanup(protocol.transport.abortConnection)
        return protocol

    def test_readsWhatWaitsAtAccept(self) -> None:
        """
        What a client sent before it was accepted reaches the protocol in
        the accept, without waiting for the next poll.
        """
        port = self.listen()
        client = self.connect()
        client.sendall(b"attach\n")
        protocol = self.acceptedProtocol(port)
        self.assertEqual(protocol.received, [b"attach\n"])
        self.assertFalse(protocol.lost)

    def test_pausedNotReadAtAccept(self) -> None:
        """A protocol that pauses reading as it connects gets nothing until it resumes."""
        port = self.listen()
        client = self.connect()
        client.sendall(b"attach\n")

        class Pausing(Recorder):
            def connectionMade(self) -> None:
                self.transport.pauseProducing()

        def build(addr: object) -> Recorder:
            self.built.append(Pausing())
            return self.built[-1]

        self.factory.buildProtocol = build  # type: ignore[method-assign]
        protocol = self.acceptedProtocol(port)
        self.assertEqual(protocol.received, [])
        self.assertFalse(protocol.transport.reading)
        protocol.transport.resumeProducing()
        self.assertTrue(protocol.transport.reading)
        protocol.transport.doRead()
        self.assertEqual(protocol.received, [b"attach\n"])

    def test_endOfFileLeftForThePoll(self) -> None:
        """
        A client that closed before it was accepted: the accept leaves its
        end of file for the next poll, which reports it as Twisted does.
        """
        port = self.listen()
        client = self.connect()
        client.sendall(b"attach\n")
        client.close()
        protocol = self.acceptedProtocol(port)
        self.assertEqual(protocol.received, [b"attach\n"])
        self.assertFalse(protocol.lost)
        self.assertTrue(protocol.transport.connected)
        self.assertIsNotNone(protocol.transport.doRead())

    def test_readAtAcceptFails(self) -> Deferred:
        """
        A protocol that raises on what was read at the accept: logged, its
        client dropped, the port goes on and accepts the next.
        """
        port = self.listen()
        client = self.connect()
        client.sendall(b"attach\n")

        class Failing(Recorder):
            def dataReceived(self, data: bytes) -> None:
                raise RuntimeError("no")

        self.factory.buildProtocol = lambda addr: Failing()  # type: ignore[method-assign]
        port.doRead()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(port.connected)
        self.factory.buildProtocol = self._build  # type: ignore[method-assign]
        self.accept(port)
        self.assertEqual(len(self.built), 1)

        def dropped(ignored: None) -> None:
            client.settimeout(1)
            self.assertEqual(client.recv(10), b"")

        return deferLater(reactor, 0, lambda: None).addCallback(dropped)

    def test_closeWithoutShutdown(self) -> None:
        """
        Closing a client's connection ends its stream (the client reads
        end of file) with close alone: no shutdown(), which only matters
        for a socket shared with another process.
        """
        port = self.listen()
        client = self.accept(port)
        transport = self.built[0].transport
        calls: List[int] = []
        real = transport.socket

        class Watched:
            def shutdown(self, how: int) -> None:
                calls.append(how)
                real.shutdown(how)

            def __getattr__(self, name: str) -> object:
                return getattr(real, name)

        transport.socket = Watched()
        transport.loseConnection()
        # As the reactor does: the write that finds nothing left ends the connection.
        transport.connectionLost(Failure(transport.doWrite()))
        client.settimeout(1)
        self.assertEqual(client.recv(10), b"")
        self.assertEqual(calls, [])
        self.assertTrue(self.built[0].lost)

    def test_pathTakenFoundByBind(self) -> None:
        """
        Whatever is at the path (a file, a symlink to nowhere, a live
        socket), sockets.listenUNIX refuses it as taken, from bind()
        alone: nothing there is changed or followed, no socket is left
        open and the process's umask is back.
        """
        self.listen()  # the process's reserve descriptor (for EMFILE) is open from here on
        directory = os.path.dirname(self.path)
        file = os.path.join(directory, "192.0.2.2:1025")
        with open(file, "w") as f:
            f.write("in the way")
        dangling = os.path.join(directory, "192.0.2.3:1025")
        nowhere = os.path.join(directory, "nowhere")
        os.symlink(nowhere, dangling)
        umask = os.umask(0o022)
        self.addCleanup(os.umask, umask)
        before = openDescriptors()
        for path in (file, dangling, self.path):
            with self.assertRaises(sockets.PathTaken) as caught:
                sockets.listenUNIX(reactor, path, self.factory, 0o660)
            self.assertEqual(str(caught.exception), "cannot create socket %s: the path exists" % (path,))
        self.assertEqual(openDescriptors(), before)
        self.assertEqual(os.umask(0o022), 0o022)
        with open(file) as f:
            self.assertEqual(f.read(), "in the way")
        self.assertEqual(os.readlink(dangling), nowhere)
        self.assertFalse(os.path.lexists(nowhere))
        self.assertTrue(stat.S_ISSOCK(os.lstat(self.path).st_mode))

    def test_socketMadeNonBlocking(self) -> None:
        """The port's socket is non-blocking and not inherited by child processes."""
        port = self.listen()
        self.assertEqual(port.socket.gettimeout(), 0.0)
        self.assertFalse(port.socket.get_inheritable())
