"""
C{twistd sc_remoted}, run as a separate process, as the README runs it:
the plugin is found, the daemon serves scamper, SIGTERM ends it cleanly
with exit status 0 (also the moment its listeners start), and bad
command lines and failed starts are one line on stderr with the exit
status they mean, in the foreground and daemonized.

It runs the installed C{twistd} from a scratch working directory; the
installed plugin is found by C{twistd --help}, and the other tests put
this checkout first on C{PYTHONPATH}, so that they test its code.
"""

import os
import shutil
import signal
import socket
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
from .test_cli import REPO, accepts, pidIn, processGone, whenReady

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


def useCheckout(testCase):
    """Put this checkout first on the children's C{PYTHONPATH}."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = REPO + (os.pathsep + old if old else "")

    def restore():
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old

    testCase.addCleanup(restore)


class TwistdTests(TestCase):
    """C{twistd -n sc_remoted} as an operator would start it."""

    def setUp(self):
        self.script = twistdScript()
        self.workDirectory = makeSocketsDirectory(self)
        self.directory = makeSocketsDirectory(self)
        useCheckout(self)

    def twistdArgv(self, *options, twistd=("-n", "--pidfile=")):
        return [sys.executable, self.script, *twistd, "sc_remoted"] + list(options)

    @defer.inlineCallbacks
    def fails(self, argv, message, status=1, usage=False):
        """
        C{argv} exits with C{status} after one line, C{message}, on stderr,
        then the usage if C{usage}; no traceback anywhere.
        """
        result = yield runToCompletion(reactor, argv, 30, self)
        self.assertEqual((result.exitCode, result.signal), (status, None), result)
        err = result.err.decode()
        first, rest = err.split("\n", 1)
        self.assertEqual(first, "sc_remoted: " + message, result)
        if usage:
            self.assertIn("Usage: twistd [options] sc_remoted", rest)
        else:
            self.assertEqual(rest, "", result)
        self.assertNotIn(b"Traceback", result.out + result.err, result)
        return result

    @defer.inlineCallbacks
    def test_servesAndStopsOnSigterm(self):
        """
        The plugin is found and serves: a hand-made MASTER_NEW gets its
        MASTER_ID and a socket, a real scamper measures through its socket.
        SIGHUP is survived.  SIGTERM then ends the process, closing the scamper connections and
        leaving the sockets directory empty.  Without C{--reactor} the
        daemon runs on its own (sc_remoted/reactor.py), which twistd names
        in its log.
        """
        twistd = yield self.servesAndStops()
        self.assertIn("reactor class: sc_remoted.reactor.EPollReactor", twistd.output())

    test_servesAndStopsOnSigterm.timeout = 60  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_reactorOption(self):
        """The same on the reactor twistd's C{--reactor} names: Twisted's own epoll reactor."""
        twistd = yield self.servesAndStops("--reactor=epoll")
        self.assertIn("reactor class: twisted.internet.epollreactor.EPollReactor", twistd.output())

    test_reactorOption.timeout = 60  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def servesAndStops(self, *twistdOptions):
        requireRealScamper()
        port = freePort()
        twistd = spawn(
            self,
            reactor,
            self.twistdArgv(
                "--port", "%s:%d" % (LOOPBACK, port), "--sockets", self.directory,
                twistd=("-n", "--pidfile=", *twistdOptions),
            ),
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
        yield sleep(reactor, 0.5)
        self.assertTrue(twistd.running, twistd.output())
        self.assertEqual(len(sockets(self.directory)), 2)

        # A clean shutdown, exit status 0 (twistd's own handler would make
        # it die of the signal again).
        twistd.kill(signal.SIGTERM)
        result = yield twistd.wait(10)
        self.assertEqual((result.exitCode, result.signal), (0, None), result)
        yield waitFor(reactor, lambda: hand.lost.called, 5, "the daemon to close our connection")
        self.assertEqual(hand.violations, [])
        self.assertEqual(os.listdir(self.directory), [], result)
        return twistd

    @defer.inlineCallbacks
    def test_missingSocketsDirectory(self):
        """A sockets directory that does not exist: one line, exit status 1."""
        yield self.fails(
            self.twistdArgv("--sockets", "/nonexistent", "--port", "127.0.0.1:%d" % (freePort(),)),
            "--sockets /nonexistent: No such file or directory",
        )

    test_missingSocketsDirectory.timeout = 40  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_portInUse(self):
        """
        A port in use: one line, exit status 1, in the foreground and
        daemonized, no pidfile and no mux socket left.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind((LOOPBACK, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        mux = os.path.join(self.directory, "mux")
        pidfile = os.path.join(self.directory, "pid")
        options = ["--port", "%s:%d" % (LOOPBACK, freePort()), "--sockets", self.directory, "--mux", mux,
                   "--status-port", str(port)]
        message = "cannot listen for status requests on 127.0.0.1:%d: Address already in use" % (port,)
        yield self.fails(self.twistdArgv(*options), message)
        daemon = ("--pidfile", pidfile, "--logfile", os.path.join(self.workDirectory, "log"))
        yield self.fails(self.twistdArgv(*options, twistd=daemon), message)
        self.assertEqual(sorted(os.listdir(self.directory)), [])

    test_portInUse.timeout = 60  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_badCommandLine(self):
        """Exit status 2, the reason first, then the usage, all on stderr."""
        base = ["--port", "1", "--sockets", self.directory]
        result = yield self.fails(self.twistdArgv(*base, "-Z", "abc"), "--zombie-time: 'abc' is not a whole number",
                                  status=2, usage=True)
        self.assertEqual(result.out, b"")
        yield self.fails(self.twistdArgv(*base, "--bogus"), "option --bogus not recognized", status=2, usage=True)
        yield self.fails(self.twistdArgv("--sockets", self.directory), "--port is required", status=2, usage=True)

    test_badCommandLine.timeout = 60  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_refused(self):
        """A well-formed command line it refuses: one line, exit status 1."""
        yield self.fails(
            self.twistdArgv("--port", "unix:/tmp/x", "--sockets", self.directory),
            "--port: 'unix:/tmp/x' is not TCP, which scamper connects over: give PORT, IPv4:PORT, [IPv6]:PORT, "
            "or a tcp: or tcp6: description (for TLS, --tls-cert and --tls-key)",
        )
        yield self.fails(
            self.twistdArgv("--port", "1", "--sockets", self.directory, "--status-port", "127.0.0.1:9100x"),
            "--status-port: port '9100x' is not a number from 1 to 65535",
            status=2,
            usage=True,
        )

    test_refused.timeout = 60  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_daemonized(self):
        """
        Without -n: the command returns once the daemon listens, its
        pidfile holds the daemon's own pid, and SIGTERM removes every file.
        """
        port = freePort()
        mux = os.path.join(self.directory, "mux")
        pidfile = os.path.join(self.workDirectory, "twistd.pid")
        argv = self.twistdArgv("--port", "%s:%d" % (LOOPBACK, port), "--sockets", self.directory, "--mux", mux,
                               twistd=("--pidfile", pidfile, "--logfile", os.path.join(self.workDirectory, "log")))
        result = yield runToCompletion(reactor, argv, 30, self)
        self.assertEqual((result.exitCode, result.err), (0, b""), result)
        pid = pidIn(pidfile)
        self.addCleanup(lambda: processGone(pid) or os.kill(pid, signal.SIGKILL))
        self.assertTrue(accepts(port))
        self.assertTrue(os.path.exists(mux))
        os.kill(pid, signal.SIGTERM)
        yield waitFor(reactor, lambda: processGone(pid), 20, "the daemon to exit")
        self.assertFalse(os.path.exists(pidfile))
        self.assertEqual(os.listdir(self.directory), [])

    test_daemonized.timeout = 60  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_sigtermAsItStarts(self):
        """
        SIGTERM the moment the mux socket appears, before the reactor runs
        (issue 11, item 4a), and once it runs: exit status 0, nothing left.
        """
        mux = os.path.join(self.directory, "mux")
        pidfile = os.path.join(self.workDirectory, "pid")
        for attempt in range(6):
            port = freePort()
            twistd = spawn(self, reactor, self.twistdArgv("--port", "%s:%d" % (LOOPBACK, port), "--sockets",
                                                          self.directory, "--mux", mux,
                                                          twistd=("-n", "--pidfile", pidfile)))
            whenReady(lambda: os.path.exists(mux) if attempt % 2 == 0 else accepts(port))
            twistd.kill(signal.SIGTERM)
            result = yield twistd.wait(30)
            self.assertEqual((result.exitCode, result.signal), (0, None), result)
            self.assertEqual(os.listdir(self.directory), [], result)
            self.assertFalse(os.path.exists(pidfile), result)

    test_sigtermAsItStarts.timeout = 120  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_helpListsPlugin(self):
        """C{twistd --help} lists sc_remoted among its commands."""
        result = yield runToCompletion(reactor, [sys.executable, self.script, "--help"], 30, self)
        self.assertEqual(result.exitCode, 0, result)
        lines = result.out.decode("utf-8", "replace").splitlines()
        self.assertTrue(any(line.split()[:1] == ["sc_remoted"] for line in lines), result)

    test_helpListsPlugin.timeout = 40  # type: ignore[attr-defined]
