"""
L{sc_remoted.eventlog.EventLogger} makes the events twisted.logger's
C{Logger} makes, key for key, leaves a level that is not one to it, and
makes none below the process's log level.
"""

from typing import Any, Dict, List

from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from sc_remoted.eventlog import EventLogger, setLogLevel

log = EventLogger()


def withoutTimeAndLogger(event: Dict[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in event.items() if key not in ("log_time", "log_logger")}


class EventLoggerTests(SynchronousTestCase):
    def test_sameEventAsTwisted(self):
        """Every level: the same keys and values as Twisted's Logger gives."""
        ours: List[Dict[str, Any]] = []
        twisted: List[Dict[str, Any]] = []
        source = object()
        for level in LogLevel.iterconstants():
            EventLogger("ns", source, ours.append).emit(level, "{vp}: x", vp="vp1", sc_event="e")
            Logger("ns", source, twisted.append).emit(level, "{vp}: x", vp="vp1", sc_event="e")
        self.assertEqual(len(ours), 5)
        self.assertEqual([withoutTimeAndLogger(e) for e in ours], [withoutTimeAndLogger(e) for e in twisted])
        self.assertTrue(all(isinstance(e["log_logger"], EventLogger) for e in ours))
        self.assertTrue(all(isinstance(e["log_time"], float) for e in ours))

    def test_levelMethods(self):
        """info, warn, error, ... all go through emit at their level."""
        events: List[Dict[str, Any]] = []
        logger = EventLogger("ns", observer=events.append)
        logger.info("i")
        logger.warn("w")
        logger.error("e")
        self.assertEqual([e["log_level"] for e in events], [LogLevel.info, LogLevel.warn, LogLevel.error])

    def test_invalidLevel(self):
        """A level that is not twisted.logger's is reported as Twisted reports it, and not emitted."""
        events: List[Dict[str, Any]] = []
        EventLogger("ns", observer=events.append).emit("loud", "x")
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["log_level"], LogLevel.critical)
        self.assertIn("invalid log level", events[0]["log_format"])

    def test_trace(self):
        """An event with log_trace records the logger and its observer, as Twisted's does."""
        events: List[Dict[str, Any]] = []
        logger = EventLogger("ns", observer=events.append)
        trace: List[Any] = []
        logger.info("x", log_trace=trace)
        self.assertEqual(trace, [(logger, events.append)])

    def test_namespaceFromModule(self):
        """Without a namespace, the logger is named after the module that makes it."""
        self.assertEqual(log.namespace, __name__)


class LogLevelTests(SynchronousTestCase):
    """L{setLogLevel}: the events below it are not made."""

    def setUp(self):
        # Every level, as a process starts.
        self.addCleanup(setLogLevel, LogLevel.debug)

    def test_everyLevelByDefault(self):
        """Until a level is set, a debug event is made too."""
        events: List[Dict[str, Any]] = []
        EventLogger("ns", observer=events.append).debug("d")
        self.assertEqual([e["log_level"] for e in events], [LogLevel.debug])

    def test_belowLevelNotMade(self):
        """At warn, the debug and info events reach no observer; warn and above do, from every logger."""
        events: List[Dict[str, Any]] = []
        setLogLevel(LogLevel.warn)
        for logger in (EventLogger("one", observer=events.append), EventLogger("two", observer=events.append)):
            for level in LogLevel.iterconstants():
                logger.emit(level, "{x}", x=1)
        self.assertEqual(
            [(e["log_namespace"], e["log_level"]) for e in events],
            [(ns, level) for ns in ("one", "two") for level in (LogLevel.warn, LogLevel.error, LogLevel.critical)],
        )

    def test_lowered(self):
        """A level set lower again lets the events through again."""
        events: List[Dict[str, Any]] = []
        logger = EventLogger("ns", observer=events.append)
        setLogLevel(LogLevel.critical)
        logger.error("e")
        setLogLevel(LogLevel.info)
        logger.error("e")
        logger.info("i")
        logger.debug("d")
        self.assertEqual([e["log_level"] for e in events], [LogLevel.error, LogLevel.info])

    def test_invalidLevelStillReported(self):
        """A level that is not twisted.logger's is reported whatever the level."""
        events: List[Dict[str, Any]] = []
        setLogLevel(LogLevel.critical)
        EventLogger("ns", observer=events.append).emit("loud", "x")
        self.assertEqual([e["log_level"] for e in events], [LogLevel.critical])
