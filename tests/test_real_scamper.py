"""
Our daemon, in this process, driven by the real programs: Debian's
C{scamper -R} connects to it and C{sc_attach} measures through the UNIX
socket it makes, as operators use the C sc_remoted.

One test per capability: a measurement, two clients at once, the
monitorname, and a resume after the TCP connection is cut (the only slow
one: scamper waits 30 to 61 s before it reconnects, docs/protocol.rst 2.6).
Skipped unless scamper is installed and we are root.
"""

import os
import shutil
import stat

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase

from sc_remoted.controller import Controller
from sc_remoted.service import makeRemotedService

from .realprocs import (
    LOOPBACK,
    PortRecordingEndpoint,
    Relay,
    makeSocketsDirectory,
    pingRecords,
    replyCounts,
    requireRealScamper,
    runToCompletion,
    sleep,
    sockets,
    spawn,
    startScamper,
    waitFor,
    waitForSocket,
    wartsText,
    writeCommands,
)


class InProcessDaemonMixin:
    """
    Our daemon (a L{Controller} and its services) listening on a free
    port of 127.0.0.1 in this reactor, with a private sockets directory.
    """

    zombieTime = 900

    @defer.inlineCallbacks
    def setUp(self):
        requireRealScamper()
        self.directory = makeSocketsDirectory(self)
        self.controller = Controller(reactor, self.directory, zombieTime=self.zombieTime)
        endpoint = PortRecordingEndpoint(TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK))
        self.service = makeRemotedService(self.controller, [endpoint])
        yield self.service.startService()
        self.addCleanup(self._stopService)
        self.port = endpoint.port

    @defer.inlineCallbacks
    def _stopService(self):
        yield self.service.stopService()
        # The UNIX ports close and unlink on the next reactor turns.
        yield sleep(reactor, 0.1)

    @defer.inlineCallbacks
    def attach(self, socketName, commands, name="out"):
        """
        Run C{sc_attach -R SOCKET -i cmds -o out.warts} to completion and
        return the warts file's text.
        """
        commandsFile = writeCommands(self.directory, name + ".cmds", commands)
        warts = os.path.join(self.directory, name + ".warts")
        result = yield runToCompletion(
            reactor,
            [
                shutil.which("sc_attach"),
                "-R",
                os.path.join(self.directory, socketName),
                "-i",
                commandsFile,
                "-o",
                warts,
            ],
            60,
            self,
        )
        self.assertEqual(result.exitCode, 0, result)
        text = yield wartsText(reactor, warts, self)
        return text

    def onlyVantagePoint(self):
        vps = self.controller.vantagePoints()
        self.assertEqual(len(vps), 1, vps)
        return vps[0]


class RealScamperTests(InProcessDaemonMixin, TestCase):
    """Real scamper and sc_attach against our daemon."""

    @defer.inlineCallbacks
    def test_measurement(self):
        """
        scamper registers; its socket C{127.0.0.1:<scamper's port>} appears
        with mode 0700; a ping through C{sc_attach} gets its three replies.
        """
        startScamper(self, reactor, self.port)
        name = yield waitForSocket(reactor, self.directory, 10)
        vp = self.onlyVantagePoint()
        self.assertEqual(name, vp.name)
        host, port = name.rsplit(":", 1)
        self.assertEqual(host, LOOPBACK)
        self.assertTrue(port.isdigit(), name)
        mode = os.stat(os.path.join(self.directory, name)).st_mode
        self.assertTrue(stat.S_ISSOCK(mode))
        self.assertEqual(stat.S_IMODE(mode), 0o700)

        text = yield self.attach(name, ["ping -c 3 127.0.0.1"])
        self.assertEqual(pingRecords(text), ["127.0.0.1"], text)
        self.assertEqual(replyCounts(text), {"127.0.0.1": 3}, text)

    test_measurement.timeout = 45  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_twoClients(self):
        """
        Two sc_attach clients on one vantage point at the same time each get
        their own results, and only theirs.
        """
        startScamper(self, reactor, self.port)
        name = yield waitForSocket(reactor, self.directory, 10)
        first, second = yield defer.gatherResults(
            [
                self.attach(name, ["ping -c 3 -i 1 127.0.0.1"], "first"),
                self.attach(name, ["ping -c 2 -i 1 127.0.0.2"], "second"),
            ],
            consumeErrors=True,
        )
        self.assertEqual(pingRecords(first), ["127.0.0.1"], first)
        self.assertEqual(replyCounts(first), {"127.0.0.1": 3}, first)
        self.assertEqual(pingRecords(second), ["127.0.0.2"], second)
        self.assertEqual(replyCounts(second), {"127.0.0.2": 2}, second)

    test_twoClients.timeout = 45  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_monitorname(self):
        """
        With C{scamper -M testvp} the socket is C{testvp-127.0.0.1:<port>},
        and measurements work through it.
        """
        startScamper(self, reactor, self.port, monitorname="testvp")
        name = yield waitForSocket(reactor, self.directory, 10)
        vp = self.onlyVantagePoint()
        self.assertEqual(vp.monitorname, "testvp")
        self.assertEqual(name, "testvp-" + vp.peer)
        self.assertTrue(name.startswith("testvp-127.0.0.1:"), name)
        text = yield self.attach(name, ["ping -c 1 127.0.0.1"])
        self.assertEqual(replyCounts(text), {"127.0.0.1": 1}, text)

    test_monitorname.timeout = 45  # type: ignore[attr-defined]


class ResumeTests(InProcessDaemonMixin, TestCase):
    """
    scamper -> L{Relay} -> our daemon: the relay freezes the connection,
    then cuts it; scamper comes back 30 to 61 s later with MASTER_RES and
    both sides retransmit what the frozen relay swallowed.
    """

    def startAttach(self, socketName, commands, name):
        """Start sc_attach without waiting; returns (process, warts path)."""
        commandsFile = writeCommands(self.directory, name + ".cmds", commands)
        warts = os.path.join(self.directory, name + ".warts")
        process = spawn(
            self,
            reactor,
            [
                shutil.which("sc_attach"),
                "-R",
                os.path.join(self.directory, socketName),
                "-i",
                commandsFile,
                "-o",
                warts,
            ],
        )
        return process, warts

    @defer.inlineCallbacks
    def finished(self, process, warts):
        result = yield process.wait(60)
        self.assertEqual(result.exitCode, 0, result)
        text = yield wartsText(reactor, warts, self)
        return text

    @defer.inlineCallbacks
    def test_resumeAfterCut(self):
        """
        Results swallowed by the frozen relay in both directions arrive,
        exactly once, after the resume; the clients stay connected
        throughout, through a zombie period without a socket file, and the
        socket comes back under the new peer's name.
        """
        relay = Relay(reactor, self.port)
        yield relay.start()
        self.addCleanup(relay.stop)
        startScamper(self, reactor, relay.port)
        before = yield waitForSocket(reactor, self.directory, 10)
        vp = self.onlyVantagePoint()
        self.assertEqual(vp.session.resumes, 0)

        # A: a quick ping that completes before the freeze, and a slower
        # one whose result scamper sends while the relay is frozen.
        first, firstWarts = self.startAttach(
            before, ["ping -c 1 127.0.0.1", "ping -c 6 -i 1 127.0.0.2"], "first"
        )
        yield sleep(reactor, 2.5)
        # Both commands have reached scamper (so ping -c 6 is running).
        yield waitFor(reactor, lambda: vp.session.unacked == 0, 5, "scamper to acknowledge the commands")
        self.assertTrue(first.running, first.output())
        relay.freeze()
        yield sleep(reactor, 1.0)

        # B connects while the relay is frozen: its CHANNEL_NEW (and what
        # follows) waits, unacknowledged, in our daemon.
        second, secondWarts = self.startAttach(before, ["ping -c 2 -i 1 127.0.0.3"], "second")
        yield waitFor(reactor, lambda: len(vp.session.channels) == 2, 5, "the second channel")
        # ping -c 6 ends about 6.5 s after the start: its result is swallowed.
        yield sleep(reactor, 5.5)
        (frozen,) = relay.live
        # More than ACKs: the DATA of a ping result is a few hundred bytes.
        self.assertGreater(frozen.swallowed["toTarget"], 200, "no result from scamper was swallowed")
        self.assertGreater(frozen.swallowed["fromTarget"], 0, "nothing from the daemon was swallowed")
        self.assertGreater(vp.session.unacked, 0)
        relay.cut()

        # The zombie period: no socket file, clients still connected.
        yield waitFor(reactor, lambda: vp.connection is None, 5, "the daemon to see the cut")
        cutAt = reactor.seconds()
        self.assertEqual(self.controller.vantagePoints(), [vp])
        self.assertEqual(sockets(self.directory), [])
        yield sleep(reactor, 2.0)
        self.assertEqual(sockets(self.directory), [])
        self.assertTrue(first.running, first.output())
        self.assertTrue(second.running, second.output())
        self.assertEqual(len(vp.session.channels), 2)

        # scamper reconnects 30 to 61 s after the cut, with MASTER_RES.
        yield waitFor(
            reactor,
            lambda: vp.session.resumes == 1 and vp.connection is not None,
            75,
            "scamper to resume",
            interval=0.2,
        )
        outage = reactor.seconds() - cutAt
        self.assertTrue(25 <= outage <= 70, "resumed after %.1f s" % (outage,))
        self.assertEqual(self.controller.vantagePoints(), [vp])
        self.assertEqual(len(relay.pairs), 2)
        after = vp.name
        self.assertNotEqual(after, before)
        self.assertEqual(after, vp.peer)
        yield waitForSocket(reactor, self.directory, 5, name=after)
        self.assertEqual(sockets(self.directory), [after])

        firstText = yield self.finished(first, firstWarts)
        secondText = yield self.finished(second, secondWarts)
        self.assertEqual(sorted(pingRecords(firstText)), ["127.0.0.1", "127.0.0.2"], firstText)
        self.assertEqual(replyCounts(firstText), {"127.0.0.1": 1, "127.0.0.2": 6}, firstText)
        self.assertEqual(pingRecords(secondText), ["127.0.0.3"], secondText)
        self.assertEqual(replyCounts(secondText), {"127.0.0.3": 2}, secondText)
        self.assertEqual(vp.session.resumes, 1)
        self.assertEqual(vp.session.unacked, 0)

    test_resumeAfterCut.timeout = 150  # type: ignore[attr-defined]
