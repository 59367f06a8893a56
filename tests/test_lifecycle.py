"""
Process lifecycle: stale sockets at startup, and a clean shutdown on
SIGINT and SIGTERM (listeners closed, sockets removed, pidfile removed,
sessions closed), with the C{sc_remoted} command run as a process.
"""

import os
import signal
import socket

from twisted.internet import defer, reactor
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    UNIXClientEndpoint,
    connectProtocol,
)
from twisted.internet.protocol import Protocol
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sc_remoted.sockets import removeStaleSockets

from .peer import ScamperPeer
from .peer_twisted import PeerProtocol
from .realprocs import LOOPBACK, freePort, makeSocketsDirectory, sockets, spawn, waitFor
from .test_cli import COMMAND, commandEnvironment, pidIn


def staleSocket(path):
    """A socket file nobody listens on, as a killed process leaves it."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()


def liveSocket(testCase, path):
    """A socket file another process (here, this one) listens on."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    testCase.addCleanup(s.close)
    return s


class StaleSocketTests(SynchronousTestCase):
    def setUp(self):
        self.directory = makeSocketsDirectory(self)

    def path(self, name):
        return os.path.join(self.directory, name)

    def test_staleRemovedLiveKept(self):
        staleSocket(self.path("192.0.2.1:1025"))
        staleSocket(self.path("vp1-2001:db8::1.1026"))
        liveSocket(self, self.path("192.0.2.2:1027"))
        staleSocket(self.path("other.sock"))  # not named like a vantage point
        open(self.path("10.0.0.1:1"), "w").close()  # not a socket
        with capturedLogs() as events:
            removed = removeStaleSockets(self.directory)
        self.assertEqual(removed, ["192.0.2.1:1025", "vp1-2001:db8::1.1026"])
        self.assertEqual(
            sorted(os.listdir(self.directory)), ["10.0.0.1:1", "192.0.2.2:1027", "other.sock"]
        )
        logged = [e for e in events if e.get("sc_event") == "socket.stale_removed"]
        self.assertEqual([e["path"] for e in logged], [self.path("192.0.2.1:1025"), self.path("vp1-2001:db8::1.1026")])
        self.assertEqual({e["log_level"] for e in logged}, {LogLevel.info})

    def test_missingDirectory(self):
        self.assertEqual(removeStaleSockets(self.path("missing")), [])


class Client(Protocol):
    def __init__(self):
        self.closed = defer.Deferred()

    def connectionLost(self, reason):
        self.closed.callback(None)


class ShutdownTests(TestCase):
    """SIGINT and SIGTERM both shut the daemon down cleanly."""

    timeout = 60

    def setUp(self):
        commandEnvironment(self)
        self.directory = makeSocketsDirectory(self)
        self.workdir = makeSocketsDirectory(self)

    @defer.inlineCallbacks
    def shutdownBy(self, signum):
        port = freePort()
        pidfile = os.path.join(self.workdir, "pid")
        stale = os.path.join(self.directory, "198.51.100.1:4000")
        staleSocket(stale)
        foreign = os.path.join(self.directory, "198.51.100.2:4000")
        liveSocket(self, foreign)
        process = spawn(
            self,
            reactor,
            # At level debug, for the line that says the channel is open.
            COMMAND + ["-P", "127.0.0.1:%d" % (port,), "-U", self.directory, "-e", pidfile, "--log-level", "debug"],
            path=self.workdir,
        )
        # The pidfile is written once it listens; stale sockets go just after.
        yield waitFor(reactor, lambda: pidIn(pidfile) and not os.path.exists(stale), 20, "the listener")
        self.assertFalse(os.path.exists(stale))
        self.assertIn("removed stale socket %s" % (stale,), process.output())
        with open(pidfile) as f:
            self.assertEqual(int(f.read()), process.pid)

        scamper = PeerProtocol(ScamperPeer(b"0123456789abcdef"))
        yield connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, port), scamper)
        name = yield waitFor(
            reactor, lambda: [n for n in sockets(self.directory) if n.startswith("127.0.0.1:")], 20, "the VP socket"
        )
        client = Client()
        yield connectProtocol(UNIXClientEndpoint(reactor, os.path.join(self.directory, name[0])), client)
        yield waitFor(reactor, lambda: "opened channel 1" in process.output(), 20, "the channel")

        process.kill(signum)
        result = yield process.wait(20)
        self.assertEqual(result.exitCode, 0, result)
        # Our socket is gone; another process's is untouched; no pidfile.
        self.assertEqual(os.listdir(self.directory), [os.path.basename(foreign)])
        self.assertFalse(os.path.exists(pidfile))
        # Sessions closed: scamper's connection and the local client's.
        yield scamper.lost
        yield client.closed
        self.assertEqual(scamper.violations, [])
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((LOOPBACK, port), timeout=5).close()

    def test_sigterm(self):
        return self.shutdownBy(signal.SIGTERM)

    def test_sigint(self):
        return self.shutdownBy(signal.SIGINT)
