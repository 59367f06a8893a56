"""
The status port against hostile clients (L{sc_remoted.httpguard}): the
deadline for a request head, the limits on its size and what is refused
with which answer, and the cap on connections, each shown on the real
L{StatusSite} over string transports and a fake clock; then slow
clients over real sockets, on a shortened deadline.
"""

import json
from typing import Dict, List, Tuple

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody

from sc_remoted.controller import Controller
from sc_remoted.httpguard import (
    HEADERS_DEADLINE,
    LOG_INTERVAL,
    MAX_CONNECTIONS,
    MAX_HEADER_LINES,
    MAX_HEADERS_SIZE,
    MAX_LINE,
    GuardedChannel,
)
from sc_remoted.status import Status, StatusSite, makeStatusService, statusResource

from .fakes import makeController
from .realprocs import LOOPBACK, PortRecordingEndpoint, waitFor
from .test_hostile import Idle, _Once

GET_STATUS = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def parseResponse(data: bytes) -> Tuple[int, Dict[bytes, bytes], bytes]:
    """The status code, headers (lower-cased names) and body of one response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b": ")
        headers[name.lower()] = value
    return int(lines[0].split(b" ")[1]), headers, body


def headOf(size: int) -> bytes:
    """A GET of C{/status} whose head is C{size} bytes, in lines of at most 200."""
    lines = []
    filler = size - len(GET_STATUS)
    while filler:
        n = min(filler, 200)
        lines.append(b"X-A: " + b"a" * (n - 7) + b"\r\n")
        filler -= n
    return GET_STATUS[:-2] + b"".join(lines) + b"\r\n"


def named(events: List[dict], name: str) -> List[dict]:
    return [e for e in events if e.get("sc_event") == name]


class Connection:
    """A client of a site over a L{StringTransport}."""

    def __init__(self, site: StatusSite, port: int) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.protocol = site.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def response(self) -> Tuple[int, Dict[bytes, bytes], bytes]:
        """What the site answered so far, as one response, and forget it."""
        data = self.transport.value()
        self.transport.clear()
        return parseResponse(data)

    @property
    def closing(self) -> bool:
        return self.transport.disconnecting

    def lose(self) -> None:
        """The connection goes, as it does after the site closed it."""
        self.protocol.connectionLost(Failure(ConnectionDone()))


class SiteTestCase(SynchronousTestCase):
    """The status site of a fake controller, on its fake clock."""

    def setUp(self):
        controller = makeController()
        self.clock = controller.reactor
        self.site = StatusSite(statusResource(Status(controller)), reactor=self.clock)
        self.ports = iter(range(40000, 50000))

    def connect(self) -> Connection:
        return Connection(self.site, next(self.ports))

    def assertStatusServed(self, connection: Connection) -> None:
        """C{connection} asks for C{/status} and gets it, as JSON."""
        connection.send(GET_STATUS)
        code, headers, body = connection.response()
        self.assertEqual((code, headers[b"content-type"]), (200, b"application/json"))
        self.assertEqual(json.loads(body)["totals"]["vantagePoints"], 0)

    def assertRefused(self, connection: Connection, code: int) -> Dict[bytes, bytes]:
        """The site answered C{code} (and only that), and is closing."""
        got, headers, body = connection.response()
        self.assertEqual(got, code)
        self.assertEqual(headers[b"connection"], b"close")
        self.assertEqual(int(headers[b"content-length"]), len(body))
        self.assertTrue(connection.closing)
        # Nothing more is read or answered.
        connection.send(GET_STATUS)
        self.assertEqual(connection.transport.value(), b"")
        return headers

    def assertNoTimers(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])


class DeadlineTests(SiteTestCase):
    def test_trickleCutAtDeadline(self):
        """
        A byte a second does not extend the deadline: the connection is
        open until HEADERS_DEADLINE after the accept, then answered 408,
        closed, and logged once.
        """
        connection = self.connect()
        with capturedLogs() as events:
            for n in range(int(HEADERS_DEADLINE) - 1):
                self.clock.advance(1)
                connection.send(GET_STATUS[n : n + 1])
                self.assertFalse(connection.closing, n)
            self.clock.advance(0.5)
            self.assertFalse(connection.closing)
            self.assertEqual(connection.transport.value(), b"")
            self.clock.advance(0.5)
        self.assertRefused(connection, 408)
        [event] = named(events, "status.timeout")
        self.assertEqual((event["peer"], event["received"]), ("127.0.0.1:40000", HEADERS_DEADLINE - 1))
        connection.lose()
        self.assertEqual(self.site.channels, set())
        self.assertNoTimers()

    def test_silentConnection(self):
        """A connection that sends nothing is closed at the deadline, logged, without an answer."""
        connection = self.connect()
        with capturedLogs() as events:
            self.clock.advance(HEADERS_DEADLINE)
        self.assertTrue(connection.closing)
        self.assertEqual(connection.transport.value(), b"")
        self.assertEqual([e["received"] for e in named(events, "status.timeout")], [0])

    def test_keepAliveGetsItsOwnDeadline(self):
        """
        The next request on a kept-alive connection has HEADERS_DEADLINE
        from the end of the previous response, not from the accept.
        """
        connection = self.connect()
        self.clock.advance(HEADERS_DEADLINE - 5)
        self.assertStatusServed(connection)
        self.clock.advance(HEADERS_DEADLINE - 1)
        connection.send(b"GET /sta")
        self.assertFalse(connection.closing)
        self.clock.advance(1)
        self.assertRefused(connection, 408)

    def test_pipelinedRequestsEachServed(self):
        """Two requests in one read get two answers, and the deadline is then armed again."""
        connection = self.connect()
        connection.send(GET_STATUS + GET_STATUS)
        data = connection.transport.value()
        self.assertEqual(data.count(b"HTTP/1.1 200 OK\r\n"), 2)
        self.assertFalse(connection.closing)
        self.clock.advance(HEADERS_DEADLINE)
        self.assertTrue(connection.closing)

    def test_idleKeepAliveClosedQuietly(self):
        """A kept-alive connection idle since its response is closed at the deadline, with no answer or line."""
        connection = self.connect()
        self.assertStatusServed(connection)
        with capturedLogs() as events:
            self.clock.advance(HEADERS_DEADLINE)
        self.assertTrue(connection.closing)
        self.assertEqual(connection.transport.value(), b"")
        self.assertEqual(named(events, "status.timeout"), [])

    def test_abortedIfNotGone(self):
        """A connection still there abortTimeout after it was closed (its client does not read) is aborted."""
        connection = self.connect()
        connection.send(b"GET")
        self.clock.advance(HEADERS_DEADLINE)
        self.assertFalse(connection.transport.disconnected)
        self.clock.advance(GuardedChannel.abortTimeout)
        self.assertTrue(connection.transport.disconnected)


class RequestHeadTests(SiteTestCase):
    def test_longHeaderLine(self):
        """A 100 KiB header line: 431, and no more than one line is held."""
        connection = self.connect()
        connection.send(b"GET /status HTTP/1.1\r\nX-Big: " + b"a" * 100 * 1024)
        self.assertLessEqual(len(connection.protocol._buffer), MAX_LINE + 2)
        self.assertRefused(connection, 431)

    def test_longHeaderLineEnded(self):
        """The same with its CRLF and the rest of the head in the same read."""
        connection = self.connect()
        connection.send(b"GET /status HTTP/1.1\r\nX-Big: " + b"a" * 100 * 1024 + b"\r\n\r\n")
        self.assertRefused(connection, 431)

    def test_longRequestLine(self):
        """A request line past MAX_LINE: 414."""
        connection = self.connect()
        connection.send(b"GET /" + b"a" * 100 * 1024 + b" HTTP/1.1\r\n")
        self.assertRefused(connection, 414)

    def test_tooManyHeaders(self):
        connection = self.connect()
        connection.send(b"GET /status HTTP/1.1\r\n" + b"X-A: b\r\n" * MAX_HEADER_LINES)
        self.assertRefused(connection, 431)

    def test_headersTooLargeInTotal(self):
        """Lines each under MAX_LINE that together pass MAX_HEADERS_SIZE: 431 at the line that passes it."""
        line = b"X-A: " + b"a" * (MAX_HEADERS_SIZE // 3 - 7) + b"\r\n"
        self.assertLess(len(line), MAX_LINE)
        connection = self.connect()
        connection.send(b"GET /status HTTP/1.1\r\n" + line * 2)
        self.assertEqual(connection.transport.value(), b"")
        connection.send(line)
        self.assertRefused(connection, 431)

    def test_headAtTheLimit(self):
        """A head of MAX_HEADERS_SIZE bytes is served; one byte more, 431."""
        connection = self.connect()
        connection.send(headOf(MAX_HEADERS_SIZE))
        self.assertEqual(connection.response()[0], 200)
        connection = self.connect()
        connection.send(headOf(MAX_HEADERS_SIZE + 1))
        self.assertRefused(connection, 431)

    def test_linesAtTheLimit(self):
        """A head of MAX_HEADER_LINES lines (its blank line included) is served; one line more, 431."""
        connection = self.connect()
        connection.send(GET_STATUS[:-2] + b"X-A: b\r\n" * (MAX_HEADER_LINES - 3) + b"\r\n")
        self.assertEqual(connection.response()[0], 200)
        connection = self.connect()
        connection.send(GET_STATUS[:-2] + b"X-A: b\r\n" * (MAX_HEADER_LINES - 2) + b"\r\n")
        self.assertRefused(connection, 431)

    def test_garbageRequestLine(self):
        """Request lines that do not parse: 400, logged."""
        for garbage in [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"hello", b"GET /status", b"GET /status HTTP/2.0"]:
            connection = self.connect()
            with capturedLogs() as events:
                connection.send(garbage + b"\r\n")
            self.assertRefused(connection, 400)
            [event] = named(events, "status.rejected")
            self.assertEqual((event["code"], event["reason"]), (400, "malformed request line"))
            self.clock.advance(LOG_INTERVAL)

    def test_malformedHeader(self):
        connection = self.connect()
        connection.send(b"GET /status HTTP/1.1\r\nno colon here\r\n\r\n")
        self.assertRefused(connection, 400)

    def test_methodsOtherThanGetAndHead(self):
        """405 with Allow, as soon as the request line is in, before any header."""
        for method in [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"get"]:
            connection = self.connect()
            connection.send(method + b" /status HTTP/1.1\r\n")
            headers = self.assertRefused(connection, 405)
            self.assertEqual(headers[b"allow"], b"GET, HEAD")

    def test_postGibibyte(self):
        """POST announcing 1 GiB: answered at once (405, the method comes first), the body never read."""
        connection = self.connect()
        with capturedLogs() as events:
            connection.send(b"POST /status HTTP/1.1\r\nContent-Length: 1073741824\r\n\r\n")
        self.assertRefused(connection, 405)
        self.assertEqual([e["reason"] for e in named(events, "status.rejected")], ["method POST"])

    def test_getWithBody(self):
        """A GET with a body, announced by length or chunked: 413 at the end of the head, the body unread."""
        for header in [b"Content-Length: 1073741824", b"Content-Length: 1", b"Transfer-Encoding: chunked"]:
            connection = self.connect()
            connection.send(b"GET /status HTTP/1.1\r\n" + header + b"\r\nExpect: 100-continue\r\n\r\n")
            # Neither 100 Continue nor a response: only the 413.
            self.assertRefused(connection, 413)
            connection.send(b"x" * 1000)
            self.assertEqual((connection.transport.value(), connection.protocol._buffer), (b"", b""))

    def test_emptyBodyServed(self):
        connection = self.connect()
        connection.send(b"GET /status HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(connection.response()[0], 200)

    def test_headServed(self):
        connection = self.connect()
        connection.send(b"HEAD /status HTTP/1.1\r\n\r\n")
        code, headers, body = connection.response()
        self.assertEqual((code, headers[b"content-type"], body), (200, b"application/json", b""))

    def test_rejectionsThrottled(self):
        """A flood of bad requests: one line at once, one line per LOG_INTERVAL with the count after."""
        with capturedLogs() as events:
            for n in range(12):
                self.connect().send(b"garbage\r\n")
            self.assertEqual([e["count"] for e in named(events, "status.rejected")], [1])
            self.clock.advance(LOG_INTERVAL)
            self.assertEqual([e["count"] for e in named(events, "status.rejected")], [1, 11])
            self.clock.advance(LOG_INTERVAL)
        self.assertEqual(len(named(events, "status.rejected")), 2)


class ConnectionLimitTests(SiteTestCase):
    def test_limit(self):
        """The limit+1-th connection is closed at once; a slot freed is used again."""
        self.site.maxConnections = 3
        open = [self.connect() for _ in range(3)]
        with capturedLogs() as events:
            over = self.connect()
        self.assertNotIsInstance(over.protocol, GuardedChannel)
        self.assertTrue(over.transport.disconnected)
        self.assertEqual(over.transport.value(), b"")
        [event] = named(events, "status.refused")
        self.assertEqual((event["peer"], event["limit"]), ("127.0.0.1:40003", 3))
        self.assertEqual({c.protocol for c in open}, self.site.channels)
        open[0].lose()
        again = self.connect()
        self.assertIsInstance(again.protocol, GuardedChannel)
        self.assertStatusServed(again)

    def test_refusalsCounted(self):
        """Refusals are logged at most once per LOG_INTERVAL, with how many there were."""
        self.site.maxConnections = 0
        with capturedLogs() as events:
            for n in range(50):
                self.connect()
            self.clock.advance(LOG_INTERVAL)
        self.assertEqual([e["count"] for e in named(events, "status.refused")], [1, 49])
        self.assertEqual(named(events, "status.refused")[1]["peer"], "127.0.0.1:40049")

    def test_throttleFlushedOnStop(self):
        """Stopping the site says what was held, and leaves no timer."""
        self.site.maxConnections = 0
        with capturedLogs() as events:
            self.connect()
            self.connect()
            self.site.stopFactory()
        self.assertEqual([e["count"] for e in named(events, "status.refused")], [1, 1])
        self.assertNoTimers()


class AlongsideHostileTests(SiteTestCase):
    def test_statusBesideSlowClients(self):
        """
        /status answers while slow clients hold every slot but one; at the
        limit new connections are closed; once the slow ones are cut at
        the deadline, the slots are free again.
        """
        slow = [self.connect() for _ in range(MAX_CONNECTIONS - 1)]
        for second in range(5):
            self.clock.advance(1)
            for connection in slow:
                connection.send(GET_STATUS[second : second + 1])
        good = self.connect()
        self.assertStatusServed(good)
        self.assertStatusServed(good)
        over = self.connect()
        self.assertTrue(over.transport.disconnected)
        self.clock.advance(HEADERS_DEADLINE - 5)
        for connection in slow:
            self.assertRefused(connection, 408)
            connection.lose()
        self.assertEqual(self.site.channels, {good.protocol})
        self.assertStatusServed(self.connect())


class SlowHeaders(Idle):
    """An L{Idle} connection that keeps what it reads."""

    def __init__(self, dribble: bytes, interval: float) -> None:
        super().__init__(dribble, interval)
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class RealSocketTests(TestCase):
    """Slow clients and a good one on loopback, with the deadline shortened."""

    deadline = 2.0
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.events: List[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        endpoint = PortRecordingEndpoint(TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK))
        self.service = makeStatusService(Controller(reactor, None), endpoint)
        self.site = self.service.factory
        self.site.headersDeadline = self.deadline
        yield self.service.startService()
        self.addCleanup(self.service.stopService)
        self.port = endpoint.port

    @defer.inlineCallbacks
    def test_slowHeadersCutGoodClientServed(self):
        slow = [SlowHeaders(GET_STATUS, interval=0.25) for _ in range(10)]
        for protocol in slow:
            yield TCP4ClientEndpoint(reactor, LOOPBACK, self.port, timeout=5).connect(_Once(protocol))
        yield waitFor(reactor, lambda: len(self.site.channels) == 10, 5, "10 connections")

        response = yield Agent(reactor).request(b"GET", b"http://%s:%d/status" % (LOOPBACK.encode(), self.port))
        body = yield readBody(response)
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(body)["totals"]["vantagePoints"], 0)
        self.assertEqual([s.closedAt for s in slow], [None] * 10)

        yield waitFor(reactor, lambda: all(s.closedAt is not None for s in slow), self.deadline + 3, "the slow to be cut")
        for protocol in slow:
            self.assertGreaterEqual(protocol.closedAt - protocol.openedAt, self.deadline - 0.1)
            self.assertLess(protocol.closedAt - protocol.openedAt, self.deadline + 1.5)
            self.assertLess(protocol.sent, len(GET_STATUS))
            self.assertEqual(parseResponse(protocol.data)[0], 408)
        self.assertEqual(len(named(self.events, "status.timeout")), 10)
        yield waitFor(reactor, lambda: not self.site.channels, 2, "the server side to close")
