"""
L{sc_remoted.reactor.EPollReactor}, a reactor of its own (not the one the
tests run on): every ready descriptor's event reaches it without a log
context around it, and one that raises is logged, naming the descriptor,
without costing the other events of the poll.  A read event handled
without Twisted's handler disconnects the descriptor for the reason its
doRead returns or raises, as that handler does.

L{installDefault} makes it the daemon's reactor where none is installed.
"""

import socket
import subprocess
import sys
from typing import List, Optional

from twisted.internet.error import ConnectionDone
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python import context, log
from twisted.trial.unittest import SynchronousTestCase

from sc_remoted.reactor import EPollReactor, installDefault

from .test_cli import REPO


class Reader:
    """A readable end of a socket pair, as the reactor sees a descriptor."""

    def __init__(self, name: str, sock: socket.socket, failOnLoss: bool = False) -> None:
        self.name = name
        self.sock = sock
        self.failOnLoss = failOnLoss
        self.read: List[bytes] = []
        self.systems: List[str] = []
        self.lost = False
        self.reason = None
        # What doRead does once it has read: return this reason, or raise it.
        self.returns: Optional[Exception] = None
        self.raises: Optional[Exception] = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return self.name

    def doRead(self):
        self.systems.append(context.get(log.ILogContext)["system"])
        data = self.sock.recv(100)
        if not data:
            return ConnectionDone()
        self.read.append(data)
        if self.raises is not None:
            raise self.raises
        return self.returns

    def connectionLost(self, reason) -> None:
        self.lost = True
        self.reason = reason
        if self.failOnLoss:
            raise ZeroDivisionError("connectionLost failed")


class EPollReactorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = EPollReactor()
        self.addCleanup(self._closeReactor)
        self.peers: List[socket.socket] = []

    def _closeReactor(self) -> None:
        self.reactor._poller.close()
        self.reactor.waker.connectionLost(None)

    def reader(self, name: str, failOnLoss: bool = False) -> Reader:
        ours, peer = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(peer.close)
        ours.setblocking(False)
        self.peers.append(peer)
        reader = Reader(name, ours, failOnLoss)
        self.reactor.addReader(reader)
        self.addCleanup(self.reactor.removeReader, reader)
        return reader

    def test_dispatchedWithoutContext(self) -> None:
        """A ready descriptor's doRead runs, outside any log context of its own."""
        reader = self.reader("LocalServer,7,")
        self.peers[0].sendall(b"data")
        self.reactor.doIteration(0)
        self.assertEqual(reader.read, [b"data"])
        self.assertEqual(reader.systems, ["-"])

    def test_raisingEventLoggedOthersHandled(self) -> None:
        """
        An exception escaping one event's handling (here the descriptor's
        connectionLost) is logged with the descriptor's prefix, and the
        other ready descriptor is still read in the same poll.
        """
        events: List[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        failing = self.reader("failing", failOnLoss=True)
        other = self.reader("other")
        self.peers[0].close()  # EOF for the failing one
        self.peers[1].sendall(b"still read")
        self.reactor.doIteration(0)
        self.assertTrue(failing.lost)
        self.assertEqual(other.read, [b"still read"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual([event.get("system") for event in events if event.get("isError")], ["failing"])

    def test_readReturningReason(self) -> None:
        """A readable descriptor whose doRead returns a reason is disconnected with it, and no longer read."""
        reader = self.reader("closing")
        reader.returns = ConnectionDone()
        self.peers[0].sendall(b"last")
        self.reactor.doIteration(0)
        self.assertEqual(reader.read, [b"last"])
        self.assertTrue(reader.lost)
        reader.reason.trap(ConnectionDone)
        self.assertNotIn(reader, self.reactor.getReaders())

    def test_readRaising(self) -> None:
        """
        An exception from a readable descriptor's doRead is logged and
        disconnects it with that exception, as Twisted's handler does;
        the other descriptor of the poll is still read.
        """
        failing = self.reader("failing")
        failing.raises = ValueError("doRead failed")
        other = self.reader("other")
        self.peers[0].sendall(b"data")
        self.peers[1].sendall(b"more")
        self.reactor.doIteration(0)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertTrue(failing.lost)
        failing.reason.trap(ValueError)
        self.assertNotIn(failing, self.reactor.getReaders())
        self.assertEqual(other.read, [b"more"])
        self.assertFalse(other.lost)

    def test_idlePoll(self) -> None:
        """A poll with nothing ready returns, having called nothing."""
        reader = self.reader("idle")
        self.reactor.doIteration(0)
        self.assertEqual((reader.read, reader.systems), ([], []))


class InstallDefaultTests(SynchronousTestCase):
    def test_installedWhereNoneIs(self) -> None:
        """
        In a process with no reactor yet, L{installDefault} installs
        L{EPollReactor} and says so; once one is installed, it leaves it.
        """
        program = (
            "import sys; sys.path.insert(0, %r)\n"
            "from sc_remoted.reactor import installDefault\n"
            "first = installDefault()\n"
            "second = installDefault()\n"
            "from twisted.internet import reactor\n"
            "print(first, second, type(reactor).__module__, type(reactor).__name__)\n" % (REPO,)
        )
        done = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60, text=True)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout, "True False sc_remoted.reactor EPollReactor\n")

    def test_leavesAnInstalledOne(self) -> None:
        """Where a reactor is installed (here trial's), nothing changes."""
        from twisted.internet import reactor

        self.assertFalse(installDefault())
        from twisted.internet import reactor as after

        self.assertIs(after, reactor)
