"""
Tests for L{sc_remoted.turnwrite}: a log stream written once per
reactor turn, at once when a turn will not end or a line is urgent.
"""

import io
import signal
import sys

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel
from twisted.python import threadable
from twisted.trial.unittest import SynchronousTestCase

from sc_remoted import logs
from sc_remoted.turnwrite import TurnWriter

from .fakes import closeLogFiles


class RecordingStream:
    """A stream that records each C{write} and C{flush} call."""

    def __init__(self):
        self.calls = []

    def write(self, data):
        self.calls.append(("write", data))

    def flush(self):
        self.calls.append(("flush",))

    def writes(self):
        return [call[1] for call in self.calls if call[0] == "write"]


def runningReactor():
    reactor = MemoryReactorClock()
    reactor.running = True
    return reactor


class TurnWriterTests(SynchronousTestCase):
    """L{TurnWriter}."""

    def setUp(self):
        # The reactor's thread is this one, as in the daemon.
        self.patch(threadable, "ioThread", threadable.getThreadID())
        self.reactor = runningReactor()
        self.stream = RecordingStream()
        self.writer = TurnWriter(self.stream.write, self.stream.flush, self.reactor, binary=True)

    def test_oneWritePerTurn(self):
        """The lines of a turn reach the stream in one write and one flush, when the turn ends."""
        self.writer(b"a\n")
        self.writer(b"b\n")
        self.writer(b"c\n")
        self.assertEqual(self.stream.calls, [])
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        self.reactor.advance(0)
        self.assertEqual(self.stream.calls, [("write", b"a\nb\nc\n"), ("flush",)])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_nextTurn(self):
        """A line after the turn's write waits for the next turn's."""
        self.writer(b"a\n")
        self.reactor.advance(0)
        self.writer(b"b\n")
        self.assertEqual(self.stream.writes(), [b"a\n"])
        self.reactor.advance(0)
        self.assertEqual(self.stream.writes(), [b"a\n", b"b\n"])

    def test_urgent(self):
        """An urgent line is written at once, after the lines before it, in the same write."""
        self.writer(b"a\n")
        self.writer(b"warning\n", urgent=True)
        self.assertEqual(self.stream.calls, [("write", b"a\nwarning\n"), ("flush",)])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.reactor.advance(0)
        self.assertEqual(len(self.stream.writes()), 1)

    def test_notRunning(self):
        """While the reactor is not running, no turn will end: every line is written at once."""
        self.reactor.running = False
        self.writer(b"a\n")
        self.assertEqual(self.stream.calls, [("write", b"a\n"), ("flush",)])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stoppedWithLinesWaiting(self):
        """A line after the reactor stopped running comes after those that waited for the turn."""
        self.writer(b"a\n")
        self.reactor.running = False
        self.writer(b"b\n")
        self.assertEqual(self.stream.writes(), [b"a\nb\n"])

    def test_shutdown(self):
        """What waits when the reactor shuts down is written by an after-shutdown trigger, registered once."""
        self.writer(b"a\n")
        self.reactor.advance(0)
        self.writer(b"b\n")
        triggers = self.reactor.triggers["after"]["shutdown"]
        self.assertEqual(len(triggers), 1)
        function, args, kwargs = triggers[0]
        function(*args, **kwargs)
        self.assertEqual(self.stream.writes(), [b"a\n", b"b\n"])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_otherThread(self):
        """A line from a thread other than the reactor's is written at once, and does not touch the turn's."""
        self.writer(b"a\n")
        self.patch(threadable, "ioThread", object())
        self.writer(b"thread\n")
        self.assertEqual(self.stream.writes(), [b"thread\n"])
        self.patch(threadable, "ioThread", threadable.getThreadID())
        self.reactor.advance(0)
        self.assertEqual(self.stream.writes(), [b"thread\n", b"a\n"])

    def test_text(self):
        """A text stream gets the lines joined as text."""
        stream = RecordingStream()
        writer = TurnWriter(stream.write, stream.flush, self.reactor, binary=False)
        writer("a\n")
        writer("b\n")
        self.reactor.advance(0)
        self.assertEqual(stream.writes(), ["a\nb\n"])


class BatchedObserverTests(SynchronousTestCase):
    """The observers the daemon installs write once per turn, a warning or worse at once."""

    def setUp(self):
        self.patch(threadable, "ioThread", threadable.getThreadID())
        self.reactor = runningReactor()

    def emit(self, observer, level, text):
        observer({"log_level": level, "log_format": text, "log_namespace": "sc_remoted.vp", "log_time": 0.0})

    def test_levels(self):
        """Info lines wait for the end of the turn; a warning takes them with it, in order."""
        stream = io.BytesIO()
        observer = logs.textObserver(stream, timestamps=False, reactor=self.reactor)
        self.emit(observer, LogLevel.info, "opened")
        self.assertEqual(stream.getvalue(), b"")
        self.emit(observer, LogLevel.warn, "stalled")
        self.assertEqual(
            stream.getvalue(), b"[sc_remoted.vp#info] opened\n[sc_remoted.vp#warn] stalled\n"
        )
        self.emit(observer, LogLevel.error, "failed")
        self.emit(observer, LogLevel.critical, "dying")
        self.assertIn(b"dying", stream.getvalue())

    def test_json(self):
        """The JSON observer batches too."""
        stream = io.StringIO()
        observer = logs.jsonObserver(stream, reactor=self.reactor)
        self.emit(observer, LogLevel.info, "one")
        self.emit(observer, LogLevel.info, "two")
        self.assertEqual(stream.getvalue(), "")
        self.reactor.advance(0)
        self.assertEqual([line.count('"text"') for line in stream.getvalue().splitlines()], [1, 1])

    def test_withoutReactor(self):
        """Without a reactor, every line is written at once (a library's observer, or a test's)."""
        stream = io.StringIO()
        observer = logs.textObserver(stream, timestamps=False)
        self.emit(observer, LogLevel.info, "opened")
        self.assertEqual(stream.getvalue(), "[sc_remoted.vp#info] opened\n")

    def test_twistdLoggers(self):
        """The observers twistd makes (C{--logger}, C{--logfile}) use the daemon's reactor."""
        self.patch(logs, "_globalReactor", lambda: self.reactor)
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        for factory in (logs.textStdoutLogger, logs.noTimesStdoutLogger, logs.jsonStdoutLogger):
            self.emit(factory(), LogLevel.info, factory.__name__)
        self.assertEqual(stdout.getvalue(), "")
        self.reactor.advance(0)
        for factory in (logs.textStdoutLogger, logs.noTimesStdoutLogger, logs.jsonStdoutLogger):
            self.assertIn(factory.__name__, stdout.getvalue())

    def test_logfile(self):
        """C{twistd --logfile}'s observer writes the file once per turn."""
        closeLogFiles(self)
        self.patch(logs, "_globalReactor", lambda: self.reactor)
        # As if twistd had its SIGUSR1 handler: the test process gets none.
        self.patch(logs.signal, "getsignal", lambda signum: signal.SIG_IGN)
        path = self.mktemp()
        self.patch(logs.twistdLogfile, "path", path)
        observer = logs.twistdLogfile()
        self.emit(observer, LogLevel.info, "opened")
        self.emit(observer, LogLevel.info, "closed")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"")
        self.reactor.advance(0)
        with open(path, "rb") as f:
            self.assertEqual(f.read().count(b"] "), 2)

    def test_daemonObserver(self):
        """C{-D --logfile FILE}: the file once per turn, with the reactor given."""
        closeLogFiles(self)
        path = self.mktemp()
        observer = logs.daemonObserver(path, reactor=self.reactor)
        self.emit(observer, LogLevel.info, "opened")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"")
        self.reactor.advance(0)
        with open(path, "rb") as f:
            self.assertIn(b"opened", f.read())


