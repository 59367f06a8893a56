"""
Where the daemon's log events go, and how they read there.

Every event an operator cares about is a C{twisted.logger} event with an
C{sc_event} field and named fields (README.rst, "Log events").  The
observers here turn them into output: text lines (L{textObserver}), one
JSON object per line (L{jsonObserver}), and, for a daemon, a file or
syslog (L{daemonObserver}).  C{twistd --logger} takes a callable without
arguments, hence L{textStdoutLogger}, L{noTimesStdoutLogger} and
L{jsonStdoutLogger}.

Each of them drops Twisted's own lines about its ports
(L{isTwistedPortNoise}): they name neither what a port is for nor, for
TCP, the address; the daemon's own C{listening} event says both
(L{addressText}).  (A vantage point's socket writes none of them:
L{sc_remoted.localport}.)

A line costs little: one observer call per event (L{LineObserver}), the
message formatted by C{str.format_map} (L{formatMessage}) rather than
twisted.logger's pure-Python formatter, and the timestamp formatted once
per second (L{TextLines}, L{JSONTime}); the text is the same as
twisted.logger's.  The daemon's observers write the lines of a reactor
turn in one call (L{sc_remoted.turnwrite}).
"""

import json
import math
import os
import re
import signal
import socket
import sys
import syslog
from datetime import datetime, timezone
from typing import IO, Any, Callable, Dict, Optional, Tuple, cast

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress
from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogEvent,
    LogLevel,
    PredicateResult,
    formatEvent,
    formatTime,
)
from twisted.python.compat import ioType
from twisted.python.log import ILogObserver as ILegacyLogObserver
from twisted.python.logfile import LogFile
from twisted.python.syslog import SyslogObserver
from zope.interface import implementer, provider

from .turnwrite import TurnWriter

PROGRAM = "sc_remoted"
SYSLOG_SOCKET = "/dev/log"

# Lines Twisted's ports log through the legacy log.msg: "<factory> starting
# on <port or path>" when one starts listening, "(TCP Port 31337 Closed)",
# "(UNIX Port /run/scamper/x:1025 Closed)" when one stops.
_PORT_NOISE = re.compile(r"^(?:\S.* starting on \S.*|\((?:\w+ )?Port \S.* Closed\))$")

# The keys Twisted's legacy log.msg adds, which say nothing the JSON's own
# fields do not: for such events they are left out.
_LEGACY_KEYS = frozenset({"message", "format", "isError", "system", "time", "why", "failure"})

_SYSLOG_PRIORITIES = {
    LogLevel.debug: syslog.LOG_DEBUG,
    LogLevel.info: syslog.LOG_INFO,
    LogLevel.warn: syslog.LOG_WARNING,
    LogLevel.error: syslog.LOG_ERR,
    LogLevel.critical: syslog.LOG_CRIT,
}


class LoggingError(Exception):
    """Logging cannot be set up as asked; the message is one line for the operator."""


# Filtering ----------------------------------------------------------------


def isTwistedPortNoise(event: LogEvent) -> bool:
    """
    Whether C{event} is one of Twisted's lines about a port starting or
    closing.  Only legacy events qualify: the daemon's own events are
    C{twisted.logger} events in its own namespaces, never legacy ones.
    """
    if event.get("log_namespace") != "log_legacy":
        return False
    return _PORT_NOISE.match(str(event.get("log_text", ""))) is not None


@provider(ILogFilterPredicate)
def _dropPortNoise(event: LogEvent) -> PredicateResult:
    return PredicateResult.no if isTwistedPortNoise(event) else PredicateResult.maybe


def quietTwisted(observer: ILogObserver) -> ILogObserver:
    """C{observer}, without Twisted's lines about its ports (L{isTwistedPortNoise})."""
    return FilteringLogObserver(observer, [_dropPortNoise])


# Formatting ---------------------------------------------------------------


def formatMessage(event: LogEvent) -> str:
    """
    C{event}'s message, as twisted.logger's C{formatEvent} writes it, in
    one C call: C{str.format_map} does all that the daemon's formats use
    (names, attributes, conversions, format specs).  What it cannot do (a
    C{{name()}} call, a flattened event, a field that is missing) goes to
    Twisted's own formatter, which also says so when a format is broken.
    """
    format = event.get("log_format")
    if type(format) is str and "log_flattened" not in event:
        try:
            return format.format_map(event)
        except Exception:
            pass
    return formatEvent(event)


def _traceback(failure: Any) -> str:
    try:
        return str(failure.getTraceback())
    except BaseException as e:
        return "(UNABLE TO OBTAIN TRACEBACK FROM EVENT):" + str(e)


def _system(event: LogEvent) -> str:
    """C{[system]} of a text line: C{log_system}, else C{namespace#level}."""
    system = event.get("log_system")
    if system is not None:
        try:
            return str(system)
        except Exception:
            return "UNFORMATTABLE"
    level = event.get("log_level")
    return "%s#%s" % (event.get("log_namespace", "-"), "-" if level is None else level.name)


def _wholeSecond(when: float) -> Tuple[int, int]:
    """
    C{when} as whole seconds and microseconds, rounded as
    C{datetime.fromtimestamp} rounds (half to even), which may carry into
    the next second.
    """
    second = math.floor(when)
    micros = round((when - second) * 1e6)
    if micros >= 1000000:
        return second + 1, micros - 1000000
    return second, micros


class TextLines:
    """
    Events as text lines, as twisted.logger's C{eventAsText} makes them
    (C{2026-12-01T10:00:00+0000 [sc_remoted.controller#info] text}), with
    a traceback's lines indented by a tab.  The timestamp has a
    resolution of one second, so it is formatted once per second: it was
    a third of the cost of a line.
    """

    __slots__ = ("timestamps", "_second", "_stamp")

    def __init__(self, timestamps: bool = True) -> None:
        self.timestamps = timestamps
        self._second: Optional[int] = None
        self._stamp = ""

    def timestamp(self, when: Optional[float]) -> str:
        if when is None:
            return "-"
        second = _wholeSecond(when)[0]
        if second != self._second:
            self._stamp = formatTime(second)
            self._second = second
        return self._stamp

    def __call__(self, event: LogEvent) -> Optional[str]:
        text = formatMessage(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = text + "\n" + _traceback(failure)
        if not text:
            return None
        line = "[%s] %s" % (_system(event), text)
        if self.timestamps:
            line = self.timestamp(event.get("log_time")) + " " + line
        return line.rstrip("\n").replace("\n", "\n\t") + "\n"


class JSONTime:
    """
    C{log_time} as the JSON lines write it, UTC with microseconds
    (C{2026-12-01T10:00:00.250000+00:00}, as C{datetime.isoformat}), with
    the date and time of day formatted once per second.
    """

    __slots__ = ("_second", "_prefix")

    def __init__(self) -> None:
        self._second: Optional[int] = None
        self._prefix = ""

    def __call__(self, when: float) -> str:
        second, micros = _wholeSecond(when)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return "%s.%06d+00:00" % (self._prefix, micros)


# Text ---------------------------------------------------------------------


@implementer(ILogObserver)
class LineObserver:
    """
    One line per event on C{stream}, made by C{formatLine}, except for
    Twisted's lines about its ports (L{isTwistedPortNoise}): what
    C{quietTwisted(FileLogObserver(stream, formatLine))} does, in one
    call per event instead of a chain of three with a predicate list.

    Without a C{reactor} each line is written and flushed at once.  With
    one, the lines of a reactor turn are written together at its end
    (L{TurnWriter}), a warning or worse at once.
    """

    __slots__ = ("formatLine", "_out", "_encode")

    def __init__(
        self, stream: IO[Any], formatLine: Callable[[LogEvent], Optional[str]], reactor: Optional[Any] = None
    ) -> None:
        self.formatLine = formatLine
        # A stream of bytes (a twistd LogFile) gets UTF-8, as twisted.logger writes it.
        self._encode = ioType(stream) is not str
        self._out: Callable[[Any, bool], None]
        if reactor is None:
            self._out = _immediate(stream)
        else:
            self._out = TurnWriter(stream.write, stream.flush, reactor, binary=self._encode)

    def __call__(self, event: LogEvent) -> None:
        if isTwistedPortNoise(event):
            return
        line = self.formatLine(event)
        if line:
            self._out(line.encode("utf-8") if self._encode else line, event.get("log_level") in _URGENT)


# The levels a batched observer writes at once.
_URGENT = frozenset({LogLevel.warn, LogLevel.error, LogLevel.critical})


def _immediate(stream: IO[Any]) -> Callable[[Any, bool], None]:
    write, flush = stream.write, stream.flush

    def out(data: Any, urgent: bool) -> None:
        write(data)
        flush()

    return out


def textObserver(stream: IO[Any], timestamps: bool = True, reactor: Optional[Any] = None) -> ILogObserver:
    """
    One line per event on C{stream} (L{TextLines}): C{2026-12-01T10:00:00+0000
    [sc_remoted.controller#info] vp1-192.0.2.1:1025: registered ...}, or
    without C{timestamps} (C{-O notimes}) the same from C{[}, so that a
    line never starts with a placeholder.  With a C{reactor}, written
    once per turn (L{LineObserver}).
    """
    return LineObserver(stream, TextLines(timestamps), reactor)


def _globalReactor() -> Any:
    """The reactor the daemon runs in: for the observers twistd makes without arguments."""
    from twisted.internet import reactor

    return reactor


def textStdoutLogger() -> ILogObserver:
    """For C{twistd --logger}: L{textObserver} on stdout."""
    return textObserver(sys.stdout, reactor=_globalReactor())


def noTimesStdoutLogger() -> ILogObserver:
    """For C{twistd --logger}: L{textObserver} on stdout, without timestamps (C{-O notimes})."""
    return textObserver(sys.stdout, timestamps=False, reactor=_globalReactor())


def openLogFile(path: str) -> IO[Any]:
    """
    C{path} as a log file (a C{LogFile}) that rotates at 1 MB, as
    twistd's C{--logfile}.

    @raise LoggingError: if it cannot be opened.
    """
    try:
        return cast(IO[Any], LogFile.fromFullPath(os.path.abspath(path)))
    except OSError as e:
        raise LoggingError("cannot open log file %s: %s" % (path, e.strerror or e))


class TwistdLogfile:
    """
    For C{twistd --logfile FILE sc_remoted}: L{textObserver} into the
    rotating file twistd would open (C{LogFile}, 1 MB), rotated on
    SIGUSR1 as twistd rotates its own, rather than twistd's observer,
    which formats every line in pure Python and keeps Twisted's port
    lines.  twistd's C{--logger} names a factory without arguments, so
    the plugin sets L{path} on the one instance, L{twistdLogfile}, and
    names it (L{sc_remoted.tap}).
    """

    path = "twistd.log"

    def __call__(self) -> ILogObserver:
        logFile = openLogFile(self.path)
        if not signal.getsignal(signal.SIGUSR1):

            def rotate(signum: int, frame: object) -> None:
                from twisted.internet import reactor

                reactor.callFromThread(logFile.rotate)  # type: ignore[attr-defined]

            signal.signal(signal.SIGUSR1, rotate)
        return textObserver(logFile, reactor=_globalReactor())


twistdLogfile = TwistdLogfile()


# JSON ---------------------------------------------------------------------


def _jsonValue(value: object) -> object:
    """A field's value as JSON holds it: scalars as they are, anything else as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float)):
        return value
    return str(value)


def eventFields(event: LogEvent, formatTime: Callable[[float], str] = JSONTime()) -> Dict[str, object]:
    """
    What the JSON line of C{event} holds: its named fields (C{sc_event},
    C{vp}, C{peer}, ...), then C{time} (UTC, ISO 8601), C{level},
    C{namespace}, C{text} (the formatted message) and, after a failure,
    C{traceback}.  Twisted's own C{log_*} keys are left out.
    """
    legacy = event.get("log_namespace") == "log_legacy"
    fields: Dict[str, object] = {}
    for key, value in event.items():
        if key.startswith("log_") or (legacy and key in _LEGACY_KEYS):
            continue
        fields[key] = _jsonValue(value)
    when = event.get("log_time")
    if isinstance(when, (int, float)):
        fields["time"] = formatTime(when)
    fields["level"] = getattr(event.get("log_level"), "name", None)
    fields["namespace"] = event.get("log_namespace")
    fields["text"] = formatMessage(event)
    failure = event.get("log_failure")
    if failure is not None:
        fields["traceback"] = failure.getTraceback()
    return fields


def jsonObserver(stream: IO[Any], reactor: Optional[Any] = None) -> ILogObserver:
    """
    One JSON object per line on C{stream} (L{eventFields}), for C{jq} and
    log shippers; with a C{reactor}, written once per turn (L{LineObserver}).
    """
    formatTime = JSONTime()
    return LineObserver(stream, lambda event: json.dumps(eventFields(event, formatTime)) + "\n", reactor)


def jsonStdoutLogger() -> ILogObserver:
    """
    For C{twistd --logger}: L{jsonObserver} on stdout::

        twistd -n --logger=sc_remoted.logs.jsonStdoutLogger sc_remoted ...
    """
    return jsonObserver(sys.stdout, reactor=_globalReactor())


# Daemon -------------------------------------------------------------------


def syslogListens(path: str = SYSLOG_SOCKET) -> bool:
    """
    Whether a syslog daemon takes messages at C{path}: Python's C{syslog}
    drops them without a word when none does, so a daemon would run
    without a log.
    """
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        probe = socket.socket(socket.AF_UNIX, kind)
        try:
            probe.connect(path)
            return True
        except OSError:
            continue
        finally:
            probe.close()
    return False


def _syslogObserver() -> ILogObserver:
    """
    Events to syslog (facility daemon, with the pid), each at the priority
    of its level and tagged with its namespace, where Twisted's observer
    would log every event at C{info} and tag it C{[-]}.
    """
    syslogObserver = SyslogObserver(PROGRAM, syslog.LOG_PID, syslog.LOG_DAEMON)
    legacy = LegacyLogObserverWrapper(cast(ILegacyLogObserver, syslogObserver.emit))

    @provider(ILogObserver)
    def emit(event: LogEvent) -> None:
        event = dict(event)
        event.setdefault("syslogPriority", _SYSLOG_PRIORITIES.get(event.get("log_level"), syslog.LOG_INFO))
        event.setdefault("system", event.get("log_system") or event.get("log_namespace", "-"))
        legacy(event)

    return emit


def daemonObserver(
    logfile: Optional[str], syslogSocket: str = SYSLOG_SOCKET, reactor: Optional[Any] = None
) -> ILogObserver:
    """
    Where a daemon (C{-D}) logs: to C{logfile} when one is given (as
    C{twistd --logfile}: timestamped lines, rotated at 1 MB; with a
    C{reactor}, written once per turn), else to syslog.  Call it before
    daemonizing, so that the error reaches the operator.

    @raise LoggingError: if C{logfile} cannot be opened, or no syslog
        daemon listens on C{syslogSocket}.
    """
    if logfile is not None:
        return textObserver(openLogFile(logfile), reactor=reactor)
    if not syslogListens(syslogSocket):
        raise LoggingError("no syslog daemon listens on %s; give --logfile FILE to log to a file" % (syslogSocket,))
    return quietTwisted(_syslogObserver())


# Addresses ----------------------------------------------------------------


def addressText(address: IAddress) -> str:
    """
    An address as a log line names it: C{192.0.2.1:31337},
    C{[2001:db8::1]:31337}, C{0.0.0.0:31337} for every IPv4 address,
    C{[::]:31337} for every IPv6 one, or a UNIX socket's path.
    """
    if isinstance(address, IPv4Address):
        return "%s:%d" % (address.host or "0.0.0.0", address.port)
    if isinstance(address, IPv6Address):
        return "[%s]:%d" % (address.host, address.port)
    if isinstance(address, UNIXAddress):
        name = address.name
        return os.fsdecode(name) if name else "(unnamed UNIX socket)"
    return str(address)
