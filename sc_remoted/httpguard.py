"""
An HTTP server's guard against hostile clients, for the status port
(L{sc_remoted.status}): a L{GuardedSite} serves like Twisted's C{Site}
but

  - gives each request head (request line and headers) one deadline,
    L{HEADERS_DEADLINE}, counted from the accept or from the end of the
    previous response on a kept-alive connection; bytes that trickle in
    do not extend it (Twisted's own idle timeout restarts on every read,
    so a client that sends a byte a second would never be cut);
  - bounds a request head (L{MAX_LINE}, L{MAX_HEADERS_SIZE},
    L{MAX_HEADER_LINES}) and answers what it refuses before closing:
    431 or 414 for a head too large, 400 when it does not parse, 405 for
    a method other than GET and HEAD, 413 for a request with a body,
    which is never read;
  - keeps at most L{MAX_CONNECTIONS} connections open, and closes those
    over it at once.

Every answer closes the connection.  The events (docs/security.rst) are
C{status.timeout}, once per connection cut at the deadline, and
C{status.rejected} and C{status.refused}, which a flood could repeat
without end, so at most one line a L{LOG_INTERVAL} says each
(L{LogThrottle}).
"""

from typing import Any, Dict, Iterable, Optional, Set, Tuple

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Site

from .eventlog import EventLogger
from .interfaces import connectedTransport
from .naming import peerName

log = EventLogger()

# Every client the status port is for (Prometheus, curl, a browser)
# sends its request head in one segment, within milliseconds; 20 s is
# ample for a congested remote link or a request typed into nc by hand,
# and bounds how long a connection that never finishes one holds a slot
# of MAX_CONNECTIONS.  It also closes kept-alive connections idle that
# long (a scraper's pool reconnects).
HEADERS_DEADLINE = 20.0

# A request line or one header line, in bytes: scrapers send lines of a
# few hundred bytes; 8 KiB is what common servers allow (Apache's
# LimitRequestLine, nginx's large_client_header_buffers).
MAX_LINE = 8192

# The request head as a whole (lines and their CRLFs), in bytes, and in
# lines (Apache's LimitRequestFields is 100).  A connection holds at most
# this much of a head, plus one line, in memory.
MAX_HEADERS_SIZE = 16384
MAX_HEADER_LINES = 100

# Status-port connections open at once.  Its clients are a few scrapers,
# a monitoring check and a person with a browser; 64 leaves them ample
# room and bounds what a flood costs in descriptors and memory (64 heads
# of at most 24 KiB).
MAX_CONNECTIONS = 64

# The shortest time between two lines of one throttled event.
LOG_INTERVAL = 10.0

ALLOWED_METHODS = (b"GET", b"HEAD")

_PHRASES = {
    400: b"Bad Request",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


def errorResponse(code: int, headers: Iterable[bytes] = ()) -> bytes:
    """
    The whole answer of a refusal: status line, C{headers} (complete
    C{Name: value} lines) and a one-line text body; it says
    C{Connection: close}, as the connection closes after it.
    """
    phrase = _PHRASES[code]
    body = b"%d %s\n" % (code, phrase)
    head = [
        b"HTTP/1.1 %d %s" % (code, phrase),
        b"Connection: close",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Length: %d" % (len(body),),
    ]
    head.extend(headers)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def peerText(address: IAddress) -> str:
    """A client as a log line names it: as a scamper is (L{peerName}), or C{unix}."""
    if isinstance(address, (IPv4Address, IPv6Address)):
        return peerName(address)
    return "unix"


class LogThrottle:
    """
    Log lines that a flood could repeat without end, at most one per key
    every C{interval} seconds: the first at once, those that follow within
    the interval counted, and the last of them said at its end with the
    count (C{count} is 1 in a first line).
    """

    def __init__(self, clock: IReactorTime, interval: float) -> None:
        self.clock = clock
        self.interval = interval
        self._quiet: Dict[str, IDelayedCall] = {}
        self._held: Dict[str, Tuple[int, LogLevel, str, Dict[str, Any]]] = {}

    def emit(self, key: str, level: LogLevel, format: str, **fields: Any) -> None:
        if key in self._quiet:
            count = self._held[key][0] + 1 if key in self._held else 1
            self._held[key] = (count, level, format, fields)
            return
        log.emit(level, format, count=1, **fields)
        self._quiet[key] = self.clock.callLater(self.interval, self._endQuiet, key)

    def _say(self, key: str) -> bool:
        held = self._held.pop(key, None)
        if held is None:
            return False
        count, level, format, fields = held
        log.emit(level, format + " (the last of {count} in {interval:g} s)", count=count, interval=self.interval, **fields)
        return True

    def _endQuiet(self, key: str) -> None:
        del self._quiet[key]
        if self._say(key):
            self._quiet[key] = self.clock.callLater(self.interval, self._endQuiet, key)

    def flush(self) -> None:
        """Say what is held now, and stop every timer (the server stops)."""
        for key, call in list(self._quiet.items()):
            call.cancel()
            self._say(key)
        self._quiet.clear()


class GuardedChannel(HTTPChannel):
    """
    One connection of a L{GuardedSite}.  Its states:

      - I{reading a head}, from the accept and again after each response
        on a kept-alive connection: the deadline is armed, and each line
        is checked as it comes (size, count, request line, method); at
        the blank line that ends the head, a body refuses the request,
        else the deadline is disarmed and the request served;
      - I{serving}: Twisted's C{HTTPChannel} as usual, until the response
        is done;
      - I{closing}, after an answer that refuses, the deadline, or a
        response on a connection that is not kept alive: nothing more is
        read, and the connection is aborted if it is not gone within
        C{abortTimeout} seconds (a client that does not read the answer).

    Twisted's own limits (C{maxHeaders}, C{totalHeadersSize}) are set to
    ours, which are checked first: they answer 431 where Twisted's would
    answer 400.
    """

    MAX_LENGTH = MAX_LINE
    maxHeaders = MAX_HEADER_LINES
    totalHeadersSize = MAX_HEADERS_SIZE

    site: "GuardedSite"

    _deadline: Optional[IDelayedCall] = None
    _abortCall: Optional[IDelayedCall] = None
    _closing = False
    _lost = False
    # The present head: bytes and lines complete so far, and whether the
    # request line is still to come.
    _headBytes = 0
    _headLines = 0
    _awaitingRequestLine = True
    _served = 0

    def connectionMade(self) -> None:
        HTTPChannel.connectionMade(self)
        self.site.channels.add(self)
        self._startHead()

    def _startHead(self) -> None:
        self._headBytes = 0
        self._headLines = 0
        self._awaitingRequestLine = True
        self._stopDeadline()
        self._deadline = self.callLater(self.site.headersDeadline, self._headersTimedOut)

    def _stopDeadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    @property
    def peer(self) -> str:
        return peerText(connectedTransport(self).getPeer())

    # Reading a head -----------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if not self._closing:
            HTTPChannel.dataReceived(self, data)

    def lineReceived(self, line: bytes) -> None:
        if self._closing:
            return
        self._headBytes += len(line) + len(self.delimiter)
        self._headLines += 1
        if self._headBytes > MAX_HEADERS_SIZE:
            self.refuse(431, "request head over %d bytes" % (MAX_HEADERS_SIZE,))
            return
        if self._headLines > MAX_HEADER_LINES:
            self.refuse(431, "request head over %d lines" % (MAX_HEADER_LINES,))
            return
        requestLine = self._awaitingRequestLine and line != b""
        HTTPChannel.lineReceived(self, line)
        if requestLine and not self._closing:
            self._awaitingRequestLine = False
            if self._command not in ALLOWED_METHODS:
                method = self._command.decode("ascii")  # a token: Twisted checked it
                self.refuse(405, "method %s" % (method,), [b"Allow: " + b", ".join(ALLOWED_METHODS)])

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._closing:
            return
        if self._awaitingRequestLine:
            self.refuse(414, "request line over %d bytes" % (MAX_LINE,))
        else:
            self.refuse(431, "header line over %d bytes" % (MAX_LINE,))

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's answer to anything that does not parse.
        self.refuse(400, "malformed request line" if self._awaitingRequestLine else "malformed header")

    def allHeadersReceived(self) -> None:
        # Twisted's length of the body: 0 for none, None for chunked.
        if self.length is None:
            self.refuse(413, "a chunked body")
        elif self.length:
            self.refuse(413, "a body of %d bytes" % (self.length,))
        else:
            HTTPChannel.allHeadersReceived(self)

    def allContentReceived(self) -> None:
        self._stopDeadline()
        self._served += 1
        HTTPChannel.allContentReceived(self)

    def requestDone(self, request) -> None:
        # Before Twisted reads the next pipelined request, if any.
        if self.persistent and not (self._closing or self._lost):
            self._startHead()
        HTTPChannel.requestDone(self, request)

    def _headersTimedOut(self) -> None:
        self._deadline = None
        received = self._headBytes + len(self._buffer)
        # A kept-alive connection idle since its last response is closed
        # without a word: that is how its client expects it to end.
        if received or not self._served:
            log.info(
                "status port: no request head from {peer} within {deadline:g} s ({received} bytes); closing",
                peer=self.peer,
                deadline=self.site.headersDeadline,
                received=received,
                sc_event="status.timeout",
            )
        if received:
            connectedTransport(self).write(errorResponse(408))
        self.loseConnection()

    # Closing ------------------------------------------------------------

    def refuse(self, code: int, reason: str, headers: Iterable[bytes] = ()) -> None:
        """Answer C{code}, log it (throttled) and close; read nothing more."""
        if self._closing:
            return
        self._stopDeadline()
        connectedTransport(self).write(errorResponse(code, headers))
        self.site.throttle.emit(
            "status.rejected %d" % (code,),
            LogLevel.info,
            "status port: answered {code} to {peer}: {reason}",
            code=code,
            peer=self.peer,
            reason=reason,
            sc_event="status.rejected",
        )
        self.loseConnection()

    def loseConnection(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        self._stopDeadline()
        HTTPChannel.loseConnection(self)
        self._abortCall = self.callLater(self.abortTimeout, self._abort)

    def _abort(self) -> None:
        self._abortCall = None
        connectedTransport(self).abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self._stopDeadline()
        if self._abortCall is not None:
            self._abortCall.cancel()
            self._abortCall = None
        self.site.channels.discard(self)
        HTTPChannel.connectionLost(self, reason)


class _Refused(Protocol):
    """A connection over the limit: closed as soon as it is made."""

    def connectionMade(self) -> None:
        connectedTransport(self).abortConnection()


class GuardedSite(Site):
    """
    A C{Site} of L{GuardedChannel}s, at most C{maxConnections} of them
    open at once (those over it are closed at once, with a throttled
    C{status.refused} line); C{headersDeadline} and C{maxConnections}
    are attributes, so that a test can shorten them.

    @ivar channels: the connections open now.
    """

    protocol = GuardedChannel  # type: ignore[assignment]
    headersDeadline: float = HEADERS_DEADLINE
    maxConnections: int = MAX_CONNECTIONS

    def __init__(self, resource, reactor: Optional[IReactorTime] = None) -> None:
        Site.__init__(self, resource, reactor=reactor)
        self.channels: Set[GuardedChannel] = set()
        self.throttle = LogThrottle(self.reactor, LOG_INTERVAL)

    def buildProtocol(self, addr):
        if len(self.channels) >= self.maxConnections:
            self.throttle.emit(
                "status.refused",
                LogLevel.warn,
                "status port: refused a connection from {peer}: {limit} connections open",
                peer=peerText(addr),
                limit=self.maxConnections,
                sc_event="status.refused",
            )
            return _Refused()
        return Site.buildProtocol(self, addr)

    def stopFactory(self) -> None:
        self.throttle.flush()
        Site.stopFactory(self)
