"""
Tests for the process around the service tree (L{sc_remoted.process})
and for SIGTERM and SIGINT (L{sc_remoted.shutdown}), in this process:
the pidfile's life, a failed start that leaves nothing behind, the
daemon's word to its parent, and the signal handling at each moment.
The same behaviour, as real processes, is in test_cli and test_twistd.
"""

import gc
import io
import os
import signal
import socket
from typing import Any, Dict, List

from twisted.internet import defer
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from sc_remoted.controller import Controller
from sc_remoted.eventlog import EventLogger, setLogLevel
from sc_remoted.process import ProcessService, ProcessSettings, waitForDaemon
from sc_remoted.service import makeRemotedService
from sc_remoted.shutdown import SIGNALS, ShutdownSignals

from .realprocs import makeSocketsDirectory


@implementer(IStreamServerEndpoint)
class TakenEndpoint:
    """A port somebody else listens on."""

    def listen(self, factory):
        return defer.fail(CannotListenError("127.0.0.1", 31337, OSError(98, "Address already in use")))


class FakeReactor(MemoryReactorClock):
    """A reactor that runs what signal handlers hand it only when told."""

    def __init__(self):
        MemoryReactorClock.__init__(self)
        self.fromThreads = []
        self.stops = 0

    def callFromThread(self, f, *args, **kwargs):
        self.fromThreads.append((f, args, kwargs))

    def runFromThreads(self):
        calls, self.fromThreads = self.fromThreads, []
        for f, args, kwargs in calls:
            f(*args, **kwargs)

    def stop(self):
        self.stops += 1
        if self.stops > 1:
            raise ReactorNotRunning()


def keepSignals(testCase):
    """Put SIGTERM's and SIGINT's handlers and the signal mask back after the test."""
    for number in SIGNALS:
        testCase.addCleanup(signal.signal, number, signal.getsignal(number))
    testCase.addCleanup(signal.pthread_sigmask, signal.SIG_SETMASK, signal.pthread_sigmask(signal.SIG_BLOCK, []))


class ProcessServiceTests(SynchronousTestCase):
    def setUp(self):
        keepSignals(self)
        self.directory = makeSocketsDirectory(self)
        self.reactor = FakeReactor()
        self.signals = ShutdownSignals(self.reactor)
        self.signals.install()
        self.stderr = io.StringIO()
        self.pidfile = os.path.join(self.directory, "pid")

    def process(self, endpoints, describe=lambda message: message):
        controller = Controller(self.reactor, self.directory)
        remoted = makeRemotedService(controller, endpoints)
        settings = ProcessSettings(pidfile=self.pidfile)
        return ProcessService(remoted, settings, self.signals, self.reactor, describe, self.stderr)

    def test_collectorPaced(self):
        """The settings' pace of garbage collection is set at the start; none keeps the process's."""
        self.addCleanup(gc.set_threshold, *gc.get_threshold())
        gc.set_threshold(700, 10, 10)
        controller = Controller(self.reactor, self.directory)
        service = ProcessService(
            makeRemotedService(controller, []), ProcessSettings(), self.signals, self.reactor, stderr=self.stderr
        )
        service.privilegedStartService()
        self.assertEqual(gc.get_threshold(), (700, 10, 10))
        controller = Controller(self.reactor, self.directory)
        service = ProcessService(
            makeRemotedService(controller, []),
            ProcessSettings(youngGeneration=4321),
            self.signals,
            self.reactor,
            stderr=self.stderr,
        )
        service.privilegedStartService()
        self.assertEqual(gc.get_threshold(), (4321, 10, 10))

    def test_logLevelSet(self):
        """The settings' log level is set at the start; none leaves the process's as it is."""
        self.addCleanup(setLogLevel, LogLevel.debug)
        events: List[Dict[str, Any]] = []
        logger = EventLogger("ns", observer=events.append)
        for settings in (ProcessSettings(), ProcessSettings(logLevel=LogLevel.warn)):
            controller = Controller(self.reactor, self.directory)
            service = ProcessService(
                makeRemotedService(controller, []), settings, self.signals, self.reactor, stderr=self.stderr
            )
            service.privilegedStartService()
            logger.info("i")
            logger.warn("w")
        self.assertEqual([e["log_format"] for e in events], ["i", "w", "w"])

    def test_pidfile(self):
        """Written once everything listens, holding our pid; removed at stop, after the tree."""
        service = self.process([UNIXServerEndpoint(self.reactor, os.path.join(self.directory, "s"))])
        service.privilegedStartService()
        with open(self.pidfile) as f:
            self.assertEqual(f.read(), "%d\n" % (os.getpid(),))
        service.startService()
        d = service.stopService()
        self.successResultOf(d)
        self.assertFalse(os.path.exists(self.pidfile))

    def test_failedStart(self):
        """
        One line on stderr, exit status 1, no pidfile, and the UNIX socket
        of a listener that had started is gone.
        """
        path = os.path.join(self.directory, "first")
        service = self.process([UNIXServerEndpoint(self.reactor, path), TakenEndpoint()], describe=str.upper)
        made = socket.socket(socket.AF_UNIX)  # what the real reactor would have made
        self.addCleanup(made.close)
        made.bind(path)
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        self.assertEqual(caught.exception.code, 1)
        self.assertEqual(self.stderr.getvalue(), "sc_remoted: CANNOT LISTEN FOR SCAMPER ON 127.0.0.1:31337: ADDRESS ALREADY IN USE\n")
        self.assertFalse(os.path.exists(self.pidfile))
        self.assertFalse(os.path.exists(path))

    def test_unwritablePidfile(self):
        self.pidfile = os.path.join(self.directory, "missing", "pid")
        service = self.process([])
        with self.assertRaises(SystemExit):
            service.privilegedStartService()
        self.assertIn("cannot write the pidfile %s: No such file or directory" % (self.pidfile,), self.stderr.getvalue())

    def test_signalBeforeStart(self):
        """A signal before the tree starts: exit status 0 at once, nothing made."""
        service = self.process([UNIXServerEndpoint(self.reactor, os.path.join(self.directory, "s"))])
        os.kill(os.getpid(), signal.SIGTERM)
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        self.assertEqual(caught.exception.code, 0)
        self.assertEqual(self.reactor.unixServers, [])
        self.assertFalse(os.path.exists(self.pidfile))


class ShutdownSignalsTests(SynchronousTestCase):
    def setUp(self):
        keepSignals(self)
        self.reactor = FakeReactor()
        self.signals = ShutdownSignals(self.reactor)
        self.signals.install()

    def test_stopOnceArmed(self):
        """Each signal queues a stop for the reactor; a second stop is harmless."""
        self.signals.arm()
        for number in SIGNALS:
            os.kill(os.getpid(), number)
        self.assertEqual(self.reactor.stops, 0)
        self.reactor.runFromThreads()
        self.assertEqual(self.reactor.stops, 2)

    def test_earlySignal(self):
        os.kill(os.getpid(), signal.SIGINT)
        with self.assertRaises(SystemExit) as caught:
            self.signals.arm()
        self.assertEqual(caught.exception.code, 0)

    def test_reactorStartCannotTakeThem(self):
        """
        Blocked while the reactor starts (when it puts in its own SIGTERM
        handler), ours again after, and a signal from in between is ours.
        """
        self.signals.arm()
        [(block, args, _)] = self.reactor.triggers["before"]["startup"]
        block(*args)
        self.assertTrue(set(SIGNALS) <= signal.pthread_sigmask(signal.SIG_BLOCK, []))
        signal.signal(signal.SIGTERM, lambda number, frame: self.fail("the reactor's handler ran"))
        os.kill(os.getpid(), signal.SIGTERM)
        [(retake, args, _)] = self.reactor.triggers["after"]["startup"]
        retake(*args)
        self.assertFalse(set(SIGNALS) & signal.pthread_sigmask(signal.SIG_BLOCK, []))
        self.reactor.runFromThreads()
        self.assertEqual(self.reactor.stops, 1)


class WaitForDaemonTests(SynchronousTestCase):
    """What the parent makes of the daemon's word."""

    def word(self, data):
        readEnd, writeEnd = os.pipe()
        os.write(writeEnd, data)
        os.close(writeEnd)
        stderr = io.StringIO()
        return waitForDaemon(readEnd, stderr), stderr.getvalue()

    def test_started(self):
        self.assertEqual(self.word(b"0"), (0, ""))

    def test_failed(self):
        """The whole line, however long, as the daemon wrote it."""
        message = "cannot listen for scamper on 127.0.0.1:1: " + "x" * 300
        self.assertEqual(self.word(b"1 " + message.encode()), (1, "sc_remoted: %s\n" % (message,)))

    def test_died(self):
        self.assertEqual(self.word(b""), (1, "sc_remoted: the daemon exited while starting; see its log\n"))
