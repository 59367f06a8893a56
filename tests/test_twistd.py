"""
The installed C{twistd sc_remoted}, run as a separate process: the plugin
is found, the daemon serves scamper, SIGTERM ends it cleanly, and bad
options are refused with a message naming the problem.

It runs the installed package (C{pip install .}), from a scratch working
directory so that the checkout is not what gets imported.
"""

import os
import shutil
import signal
import sys

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.trial.unittest import TestCase

from .peer import ScamperPeer
from .peer_twisted import PeerProtocol
from .realprocs import (
    LOOPBACK,
    freePort,
    makeSocketsDirectory,
    replyCounts,
    requireRealScamper,
    runToCompletion,
    sleep,
    sockets,
    spawn,
    startScamper,
    twistdScript,
    waitFor,
    waitForSocket,
    wartsText,
    writeCommands,
)

MAGIC = bytes.fromhex("5463a1f00d5eed01")


@defer.inlineCallbacks
def connectWhenListening(port: int, timeout: float):
    """
    Connect a fake scamper (L{tests.peer}: MASTER_NEW without a
    monitorname, then it checks what comes back) as soon as something
    listens on C{port}.
    """
    deadline = reactor.seconds() + timeout
    endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, port, timeout=2)
    while True:
        try:
            protocol = yield connectProtocol(endpoint, PeerProtocol(ScamperPeer(MAGIC)))
            return protocol
        except ConnectError as e:
            if reactor.seconds() >= deadline:
                raise AssertionError("nothing listening on port %d after %.0f s" % (port, timeout)) from e
            yield sleep(reactor, 0.1)


class TwistdTests(TestCase):
    """C{twistd -n sc_remoted} as an operator would start it."""

    def setUp(self):
        self.script = twistdScript()
        self.workDirectory = makeSocketsDirectory(self)
        self.directory = makeSocketsDirectory(self)

    def twistdArgv(self, *options):
        return [sys.executable, self.script, "-n", "--pidfile=", "sc_remoted"] + list(options)

    @defer.inlineCallbacks
    def test_servesAndStopsOnSigterm(self):
        """
        The plugin is found and serves: a hand-made MASTER_NEW gets its
        MASTER_ID and a socket, a real scamper measures through its socket.
        SIGHUP is survived.  SIGTERM then ends the process, closing the scamper connections and
        leaving the sockets directory empty.
        """
        requireRealScamper()
        port = freePort()
        twistd = spawn(
            self,
            reactor,
            self.twistdArgv("--port", "%s:%d" % (LOOPBACK, port), "--sockets", self.directory),
            path=self.workDirectory,
        )
        hand = yield connectWhenListening(port, 20)
        identity = yield waitFor(reactor, lambda: hand.identity, 5, "MASTER_ID")
        self.assertEqual(hand.violations, [])
        self.assertEqual(identity, "%s:%d" % (LOOPBACK, hand.transport.getHost().port))
        yield waitForSocket(reactor, self.directory, 5, name=identity)

        startScamper(self, reactor, port)
        yield waitFor(reactor, lambda: len(sockets(self.directory)) == 2, 10, "scamper's socket")
        (name,) = [n for n in sockets(self.directory) if n != identity]
        commands = writeCommands(self.workDirectory, "cmds", ["ping -c 1 127.0.0.1"])
        warts = os.path.join(self.workDirectory, "out.warts")
        attach = yield runToCompletion(
            reactor,
            [shutil.which("sc_attach"), "-R", os.path.join(self.directory, name), "-i", commands, "-o", warts],
            30,
            self,
        )
        self.assertEqual(attach.exitCode, 0, attach)
        text = yield wartsText(reactor, warts, self)
        self.assertEqual(replyCounts(text), {"127.0.0.1": 1}, text)
        self.assertTrue(twistd.running, twistd.output())

        # SIGHUP (which the C daemon uses to reload TLS files) must not
        # kill it: twistd itself installs no handler for it.
        twistd.kill(signal.SIGHUP)
        yield waitFor(reactor, lambda: b"SIGHUP received" in b"".join(twistd.protocol.out), 5, "the SIGHUP log line")
        self.assertTrue(twistd.running, twistd.output())
        self.assertEqual(len(sockets(self.directory)), 2)

        twistd.kill(signal.SIGTERM)
        result = yield twistd.wait(10)
        # twistd shuts down cleanly, then (Twisted 21.7+) re-raises the
        # signal so that its parent sees it died of SIGTERM.
        self.assertIn((result.exitCode, result.signal), [(0, None), (None, signal.SIGTERM)], result)
        self.assertIn(b"Server Shut Down.", result.out, result)
        yield waitFor(reactor, lambda: hand.lost.called, 5, "the daemon to close our connection")
        self.assertEqual(hand.violations, [])
        self.assertEqual(os.listdir(self.directory), [], result)

    test_servesAndStopsOnSigterm.timeout = 60  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_missingSocketsDirectory(self):
        """A sockets directory that does not exist is refused, by name."""
        result = yield runToCompletion(
            reactor,
            self.twistdArgv("--sockets", "/nonexistent", "--port", "1"),
            30,
            self,
        )
        self.assertNotEqual(result.exitCode, 0, result)
        output = (result.out + result.err).decode("utf-8", "replace")
        self.assertIn("/nonexistent", output)
        self.assertIn("No such file or directory", output)

    test_missingSocketsDirectory.timeout = 40  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_helpListsPlugin(self):
        """C{twistd --help} lists sc_remoted among its commands."""
        result = yield runToCompletion(reactor, [sys.executable, self.script, "--help"], 30, self)
        self.assertEqual(result.exitCode, 0, result)
        lines = result.out.decode("utf-8", "replace").splitlines()
        self.assertTrue(any(line.split()[:1] == ["sc_remoted"] for line in lines), result)

    test_helpListsPlugin.timeout = 40  # type: ignore[attr-defined]
