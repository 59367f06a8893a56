"""
The daemon's L{EventLogger}: twisted.logger's C{Logger}, with an event
that costs less to make.

twisted.logger checks each event's level against its list of levels,
sorted anew for every event; with three events per channel and five per
vantage point arriving and leaving, that check was more than a quarter
of the time the daemon spent making its events (docs/performance.rst).
L{EventLogger} checks against a set made once.  The event is the one
twisted.logger makes, with the same keys, for the same observers; a
level that is not one of twisted.logger's goes to twisted.logger, which
reports it.

An event below the process's log level (L{setLogLevel}, the operator's
C{--log-level}) is not made at all: no event, no observer, no formatting,
only a set lookup.  A channel's three events are at level debug for that
reason: made at info, they were 15-25 % of the daemon's CPU time for a
round trip on a fresh channel (docs/performance.rst).
"""

from time import time
from typing import Any, Optional

from twisted.logger import Logger, LogLevel

# From the least severe to the most, as twisted.logger defines them.
_ORDER = tuple(LogLevel.iterconstants())
_LEVELS = frozenset(_ORDER)
# The levels whose events are made: every level until a process sets one.
_logged = _LEVELS


def setLogLevel(level: LogLevel) -> None:
    """
    Make only the events of C{level} and above, from every
    L{EventLogger} in the process.  Twisted's own events are its
    observers' to filter.
    """
    global _logged
    _logged = frozenset(_ORDER[_ORDER.index(level) :])


class EventLogger(Logger):
    """
    A C{Logger} whose C{emit} checks the level against a set made once,
    and makes no event below the process's log level.
    """

    def emit(self, level: Any, format: Optional[str] = None, **kwargs: object) -> None:
        if level not in _logged:
            if level not in _LEVELS:
                Logger.emit(self, level, format, **kwargs)
            return
        kwargs.update(
            log_logger=self,
            log_level=level,
            log_namespace=self.namespace,
            log_source=self.source,
            log_format=format,
            log_time=time(),
        )
        if "log_trace" in kwargs:
            kwargs["log_trace"].append((self, self.observer))  # type: ignore[attr-defined]
        self.observer(kwargs)
