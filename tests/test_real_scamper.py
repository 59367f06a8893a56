"""
Our daemon, in this process, driven by the real programs: Debian's
C{scamper -R} connects to it and C{sc_attach} measures through the UNIX
socket it makes, as operators use the C sc_remoted.

One test per capability: a measurement, two clients at once, the
monitorname, and a resume after the TCP connection is cut (the only slow
one: scamper waits 30 to 61 s before it reconnects, PROTOCOL.md 2.6).
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


class RealScamperTests(TestCase):
    """Real scamper and sc_attach against a L{Controller} in this reactor."""

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
