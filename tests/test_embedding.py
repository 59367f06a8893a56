"""
The embedding API: the service tree built inside another application,
its controller's vantage points and observer events, and the example
C{examples/embed.tac} run by a real C{twistd}.
"""

import os
import sys

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from sc_remoted.interfaces import IVantagePointObserver
from sc_remoted.tap import Options, makeService

from .peer import ScamperPeer
from .peer_twisted import PeerProtocol
from .realprocs import (
    LOOPBACK,
    freePort,
    makeSocketsDirectory,
    sleep,
    sockets,
    spawn,
    twistdScript,
    waitFor,
)
from .test_cli import REPO

EXAMPLE = os.path.join(REPO, "examples", "embed.tac")


def embeddedScamper() -> PeerProtocol:
    """A scamper (L{tests.peer}) with C{-M embedded}: registers on connect."""
    return PeerProtocol(ScamperPeer(b"embedded-magic", "embedded"))


@implementer(IVantagePointObserver)
class Recorder:
    def __init__(self):
        self.events = []

    def vantagePointArrived(self, vp):
        self.events.append(("arrived", vp.name))

    def vantagePointDisconnected(self, vp):
        self.events.append(("zombie", vp.name))

    def vantagePointResumed(self, vp):
        self.events.append(("resumed", vp.name))

    def vantagePointDeparted(self, vp):
        self.events.append(("departed", vp.name))


class InProcessTests(TestCase):
    """makeService(options) as another application would use it."""

    timeout = 30

    @defer.inlineCallbacks
    def test_observeAndList(self):
        directory = makeSocketsDirectory(self)
        port = freePort()
        options = Options()
        options.parseOptions(["--port", "127.0.0.1:%d" % (port,), "--sockets", directory, "--zombie-time", "0"])
        top = makeService(options)
        recorder = Recorder()
        top.controller.addObserver(recorder)
        top.privilegedStartService()
        top.startService()
        self.addCleanup(lambda: top.stopService() if top.running else None)

        scamper = embeddedScamper()
        yield connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, port), scamper)
        yield waitFor(reactor, lambda: recorder.events, 10, "an arrival")
        yield scamper.waitFor(lambda: scamper.peer.established, "MASTER_ID")
        self.assertEqual(scamper.violations, [])
        [vp] = top.controller.vantagePoints()
        self.assertEqual(vp.monitorname, "embedded")
        self.assertEqual(recorder.events, [("arrived", vp.name)])
        self.assertEqual(sockets(directory), [vp.name])

        scamper.transport.loseConnection()
        yield waitFor(reactor, lambda: len(recorder.events) == 2, 10, "a departure")
        self.assertEqual(recorder.events[1], ("departed", vp.name))
        self.assertEqual(top.controller.vantagePoints(), [])
        yield top.stopService()
        yield sleep(reactor, 0.05)
        self.assertEqual(sockets(directory), [])


class ExampleTests(TestCase):
    """examples/embed.tac runs under twistd and does what it says."""

    timeout = 60

    def setEnvironment(self, **values):
        for name, value in values.items():
            old = os.environ.get(name)
            os.environ[name] = value
            self.addCleanup(self._restore, name, old)

    def _restore(self, name, old):
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old

    @defer.inlineCallbacks
    def test_exampleRuns(self):
        directory = makeSocketsDirectory(self)
        port, listPort = freePort(), freePort()
        self.setEnvironment(
            SC_REMOTED_PORT="127.0.0.1:%d" % (port,),
            SC_REMOTED_SOCKETS=directory,
            EXAMPLE_LIST_PORT="tcp:%d:interface=127.0.0.1" % (listPort,),
            PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
            PYTHONUNBUFFERED="1",
        )
        process = spawn(
            self,
            reactor,
            [sys.executable, twistdScript(), "-n", "--pidfile=", "-y", EXAMPLE],
            path=directory,
        )
        yield waitFor(reactor, lambda: "starting on %d" % (listPort,) in process.output(), 20, "the example to start")

        scamper = embeddedScamper()
        yield connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, port), scamper)
        yield waitFor(reactor, lambda: "arrived: embedded-127.0.0.1:" in process.output(), 20, "the arrival log")

        listing = Listing()
        yield connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, listPort), listing)
        text = yield listing.done
        [line] = text.decode().splitlines()
        name, peer, state = line.split()
        self.assertTrue(name.startswith("embedded-127.0.0.1:"), line)
        self.assertEqual(state, "connected")

        scamper.transport.loseConnection()
        yield waitFor(reactor, lambda: "zombie: " + name in process.output(), 20, "the zombie log")
        result = yield process.stop()
        self.assertEqual(sockets(directory), [], result)


class Listing(Protocol):
    def __init__(self):
        self.data = []
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.data.append(data)

    def connectionLost(self, reason):
        self.done.callback(b"".join(self.data))
