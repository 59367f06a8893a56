"""
The operator's view of the log (L{sc_remoted.logs}): text and JSON lines,
Twisted's port lines left out, a daemon's file or syslog (or a refusal
to run without either), the C{listening} line, mux clients named, and
magics kept out of C{--debug} lines.  The last test runs the installed
C{twistd} with the JSON logger, as the README shows it.
"""

import hashlib
import io
import json
import os
import re
import signal
import socket
import sys
import syslog
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, UNIXServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    capturedLogs,
    eventAsText,
    formatEvent,
    formatTime,
    globalLogPublisher,
)
from twisted.python import log as legacyLog
from twisted.python import syslog as twistedSyslog
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sc_remoted import logs
from sc_remoted.controller import Controller
from sc_remoted.mux.codec import encodeChannelOpen
from sc_remoted.mux.server import MuxFactory
from sc_remoted.service import ListeningService
from sc_remoted.wire import Frame, FrameDecoder, describeFrame, describeMagic, encodeMasterNew, encodeMasterRes

from .fakes import closeLogFiles
from .peer import ScamperPeer
from .peer_twisted import MemoryScamper, PeerProtocol
from .realprocs import LOOPBACK, makeSocketsDirectory, spawn, twistdScript, waitFor

MAGIC = bytes.fromhex("6c3d5f18a7e2c904")
MAGIC_FORMS = (repr(MAGIC), MAGIC.hex(), MAGIC.decode("latin-1"), repr(MAGIC)[2:-1])

# What Twisted's ports log, as legacy events: "<factory> starting on ..."
# and "(... Port ... Closed)".
PORT_NOISE = (
    "ScamperFactory starting on 31337",
    "LocalChannelFactory starting on '/run/scamper/vp1-192.0.2.1:1025'",
    "(TCP Port 31337 Closed)",
    "(UNIX Port /run/scamper/vp1-192.0.2.1:1025 Closed)",
    "(Port '/run/x' Closed)",
)


def emit(observer, text="{vp}: registered", level=LogLevel.info, namespace="sc_remoted.controller", **fields):
    """Log one event to C{observer} only, as the daemon's modules do."""
    logger = Logger(namespace=namespace, observer=observer)
    logger.emit(level, text, **fields)


def legacyEvents(observer, *texts):
    """Log C{texts} with Twisted's legacy C{log.msg}, as its ports do, to C{observer}."""
    globalLogPublisher.addObserver(observer)
    try:
        for text in texts:
            legacyLog.msg(text)
    finally:
        globalLogPublisher.removeObserver(observer)


class TextObserverTests(SynchronousTestCase):
    def test_timestamps(self):
        stream = io.StringIO()
        emit(logs.textObserver(stream), vp="vp1", sc_event="vp.registered")
        line = stream.getvalue()
        self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[sc_remoted.controller#info\] vp1: registered\n$")

    def test_noTimes(self):
        """Without timestamps a line starts with the system, never with a placeholder."""
        stream = io.StringIO()
        observer = logs.textObserver(stream, timestamps=False)
        emit(observer, vp="vp1")
        legacyEvents(observer, "Main loop terminated.")
        lines = stream.getvalue().splitlines()
        self.assertEqual(lines, ["[sc_remoted.controller#info] vp1: registered", "[-] Main loop terminated."])

    def test_stdoutLoggers(self):
        """What C{twistd --logger=sc_remoted.logs....StdoutLogger} makes: observers of stdout."""
        for factory, pattern in [
            (logs.textStdoutLogger, r"^\d{4}-\S+ \[sc_remoted.controller#info\] vp1: registered\n$"),
            (logs.noTimesStdoutLogger, r"^\[sc_remoted.controller#info\] vp1: registered\n$"),
            (logs.jsonStdoutLogger, r'^\{"vp": "vp1", .*"text": "vp1: registered"\}\n$'),
        ]:
            self.patch(sys, "stdout", io.StringIO())
            observer = factory()
            self.assertTrue(ILogObserver.providedBy(observer))
            emit(observer, vp="vp1")
            legacyEvents(observer, *PORT_NOISE)
            self.assertRegex(sys.stdout.getvalue(), pattern)

    def test_tracebackIndented(self):
        stream = io.StringIO()
        try:
            1 / 0
        except ZeroDivisionError:
            emit(logs.textObserver(stream, timestamps=False), "reload failed", log_failure=Failure())
        first, *rest = stream.getvalue().rstrip("\n").split("\n")
        self.assertEqual(first, "[sc_remoted.controller#info] reload failed")
        self.assertTrue(rest and all(line.startswith("\t") for line in rest), rest)
        self.assertIn("ZeroDivisionError", rest[-1])


class QuietTwistedTests(TestCase):
    def test_portLinesDropped(self):
        """Twisted's lines about its ports go; its other lines and ours stay."""
        kept = []
        legacyEvents(logs.quietTwisted(kept.append), *PORT_NOISE, "Main loop terminated.")
        self.assertEqual([event["log_text"] for event in kept], ["Main loop terminated."])
        emit(logs.quietTwisted(kept.append), "{what} starting on {address}", what="x", address="y")
        self.assertEqual(len(kept), 2)

    @defer.inlineCallbacks
    def test_realPorts(self):
        """
        A real TCP port and UNIX port, started and stopped: Twisted's
        lines about them reach an observer, and none passes quietTwisted.
        """
        everything, quiet = [], []
        filtered = logs.quietTwisted(quiet.append)
        globalLogPublisher.addObserver(everything.append)
        globalLogPublisher.addObserver(filtered)
        try:
            factory = Factory.forProtocol(Protocol)
            factory.noisy = False
            directory = makeSocketsDirectory(self)
            tcp = reactor.listenTCP(0, factory, interface=LOOPBACK)
            tcpPort = tcp.getHost().port
            unix = reactor.listenUNIX(os.path.join(directory, "vp"), factory)
            yield tcp.stopListening()
            yield unix.stopListening()
        finally:
            globalLogPublisher.removeObserver(everything.append)
            globalLogPublisher.removeObserver(filtered)
        noise = [event for event in everything if logs.isTwistedPortNoise(event)]
        texts = [event["log_text"] for event in noise]
        for expected in ("Factory starting on %d" % (tcpPort,), "(TCP Port", "Factory starting on '", "(UNIX Port"):
            self.assertTrue([text for text in texts if expected in text], (expected, texts))
        self.assertEqual([event for event in quiet if event in noise], [])


class LineObserverTests(SynchronousTestCase):
    """L{logs.LineObserver}: what quietTwisted(FileLogObserver(...)) wrote, in one call."""

    def test_portLinesDropped(self):
        """Twisted's port lines are not written; its other lines and ours are."""
        stream = io.StringIO()
        observer = logs.textObserver(stream, timestamps=False)
        legacyEvents(observer, *PORT_NOISE, "Main loop terminated.")
        emit(observer, "{what} starting on {address}", what="x", address="y")
        self.assertEqual(
            stream.getvalue(),
            "[-] Main loop terminated.\n[sc_remoted.controller#info] x starting on y\n",
        )

    def test_bytesStream(self):
        """A stream of bytes (as twistd's LogFile) gets the line in UTF-8."""
        stream = io.BytesIO()
        emit(logs.textObserver(stream, timestamps=False), "{vp}: registered", vp="vp-\u00e9")
        self.assertEqual(stream.getvalue(), "[sc_remoted.controller#info] vp-\u00e9: registered\n".encode("utf-8"))

    def test_flushedEachLine(self):
        """Every line is flushed when it is written; an event without text writes nothing."""
        calls = []

        class Stream(io.StringIO):
            def write(self, text):
                calls.append("write")
                return super().write(text)

            def flush(self):
                calls.append("flush")

        stream = Stream()
        observer = logs.LineObserver(stream, lambda event: event.get("line"))
        observer({"line": "one\n"})
        observer({"line": None})
        observer({"line": "two\n"})
        self.assertEqual(calls, ["write", "flush", "write", "flush"])
        self.assertEqual(stream.getvalue(), "one\ntwo\n")


class JsonObserverTests(SynchronousTestCase):
    def lines(self, *emitters):
        stream = io.StringIO()
        observer = logs.jsonObserver(stream)
        for emitter in emitters:
            emitter(observer)
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    def test_fields(self):
        """The named fields, then time, level, namespace and the text."""
        [event] = self.lines(
            lambda o: emit(o, "{vp}: freed: {reason}", LogLevel.warn, vp="vp1", reason="gone", identifier=3, sc_event="vp.freed")
        )
        self.assertEqual(
            {key: event[key] for key in ("sc_event", "vp", "reason", "identifier", "level", "namespace", "text")},
            {
                "sc_event": "vp.freed",
                "vp": "vp1",
                "reason": "gone",
                "identifier": 3,
                "level": "warn",
                "namespace": "sc_remoted.controller",
                "text": "vp1: freed: gone",
            },
        )
        self.assertRegex(event["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
        self.assertFalse([key for key in event if key.startswith("log_")], event)

    def test_valuesMadeText(self):
        """A value JSON has no type for is written as text; nothing is lost or refused."""
        [event] = self.lines(lambda o: emit(o, "{message!r}", message=(1, 2), ratio=float("nan"), peer=None))
        self.assertEqual((event["message"], event["ratio"], event["peer"]), ("(1, 2)", "nan", None))

    def test_failure(self):
        def failing(observer):
            try:
                1 / 0
            except ZeroDivisionError:
                emit(observer, "observer failed", LogLevel.critical, log_failure=Failure())

        [event] = self.lines(failing)
        self.assertIn("ZeroDivisionError", event["traceback"])

    def test_legacyEvents(self):
        """Twisted's legacy lines: their text, not their legacy keys; port lines dropped."""
        events = self.lines(lambda o: legacyEvents(o, "Main loop terminated.", *PORT_NOISE))
        self.assertEqual(
            [{key: event[key] for key in event if key != "time"} for event in events],
            [{"level": "info", "namespace": "log_legacy", "text": "Main loop terminated."}],
        )


class DaemonObserverTests(SynchronousTestCase):
    def setUp(self):
        self.directory = makeSocketsDirectory(self)
        self.logged = []
        self.opened = []
        self.patch(twistedSyslog.SyslogObserver, "openlog", self.openlog)
        self.patch(twistedSyslog.SyslogObserver, "syslog", self.syslog)

    def openlog(self, prefix, options, facility):
        self.opened.append((prefix, options, facility))

    def syslog(self, priority, text):
        self.logged.append((priority, text))

    def test_logfile(self):
        closeLogFiles(self)
        path = os.path.join(self.directory, "sc_remoted.log")
        observer = logs.daemonObserver(path)
        emit(observer, vp="vp1")
        legacyEvents(observer, "(TCP Port 31337 Closed)")
        with open(path) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].endswith(" [sc_remoted.controller#info] vp1: registered"), lines)

    def test_logfileUnusable(self):
        path = os.path.join(self.directory, "missing", "sc_remoted.log")
        with self.assertRaises(logs.LoggingError) as caught:
            logs.daemonObserver(path)
        self.assertEqual(str(caught.exception), "cannot open log file %s: No such file or directory" % (path,))

    def test_noSyslog(self):
        """Nothing listening where syslog would be: a refusal in one line, naming the way out."""
        for path in (os.path.join(self.directory, "log"), self.deadSocket()):
            with self.assertRaises(logs.LoggingError) as caught:
                logs.daemonObserver(None, syslogSocket=path)
            message = str(caught.exception)
            self.assertEqual(message, "no syslog daemon listens on %s; give --logfile FILE to log to a file" % (path,))
        self.assertEqual(self.opened, [])

    def deadSocket(self):
        """A socket file that nothing listens on any more, as a stopped syslog daemon leaves."""
        path = os.path.join(self.directory, "dead")
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dead.bind(path)
        dead.close()
        return path

    def test_syslog(self):
        """
        With a syslog daemon: facility daemon, the pid, each event at its
        level's priority, tagged with its namespace; Twisted's port lines
        left out.
        """
        path = os.path.join(self.directory, "log")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(listener.close)
        listener.bind(path)
        observer = logs.daemonObserver(None, syslogSocket=path)
        self.assertEqual(self.opened, [("sc_remoted", syslog.LOG_PID, syslog.LOG_DAEMON)])
        emit(observer, vp="vp1")
        emit(observer, "{vp}: socket failed", LogLevel.error, vp="vp1")
        emit(observer, "{peer} sent", LogLevel.debug, peer="p")
        legacyEvents(observer, *PORT_NOISE)
        self.assertEqual(
            self.logged,
            [
                (syslog.LOG_INFO, "[sc_remoted.controller] vp1: registered"),
                (syslog.LOG_ERR, "[sc_remoted.controller] vp1: socket failed"),
                (syslog.LOG_DEBUG, "[sc_remoted.controller] p sent"),
            ],
        )


class AddressTextTests(SynchronousTestCase):
    def test_addresses(self):
        self.assertEqual(logs.addressText(IPv4Address("TCP", "192.0.2.1", 31337)), "192.0.2.1:31337")
        self.assertEqual(logs.addressText(IPv4Address("TCP", "", 31337)), "0.0.0.0:31337")
        self.assertEqual(logs.addressText(IPv6Address("TCP", "::", 31337)), "[::]:31337")
        self.assertEqual(logs.addressText(IPv6Address("TCP", "2001:db8::1", 1)), "[2001:db8::1]:1")
        self.assertEqual(logs.addressText(UNIXAddress(b"/run/sc_remoted/mux")), "/run/sc_remoted/mux")


class ListeningEventTests(TestCase):
    """Each listener says what it is for and where, once it listens."""

    def listen(self, endpoint, what):
        service = ListeningService(endpoint, Factory.forProtocol(Protocol), what)
        with capturedLogs() as events:
            service.privilegedStartService()
            service.startService()
        self.addCleanup(service.stopService)
        [event] = [e for e in events if e.get("sc_event") == "listening"]
        return service, event

    def test_tcp(self):
        service, event = self.listen(TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK), "scamper")
        port = service.port.getHost().port
        self.assertEqual((event["what"], event["address"]), ("scamper", "%s:%d" % (LOOPBACK, port)))
        self.assertEqual(formatEvent(event), "listening for scamper on 127.0.0.1:%d" % (port,))

    def test_unix(self):
        path = os.path.join(makeSocketsDirectory(self), "mux")
        _, event = self.listen(UNIXServerEndpoint(reactor, path), "mux clients")
        self.assertEqual((event["what"], event["address"]), ("mux clients", path))


class MuxClientNameTests(SynchronousTestCase):
    """Mux events name the client: its address, or the mux socket and its number."""

    def setUp(self):
        self.controller = Controller(MemoryReactorClock(), None)
        self.factory = MuxFactory(self.controller)

    def connect(self, peer, host):
        protocol = self.factory.buildProtocol(None)
        protocol.makeConnection(StringTransport(hostAddress=host, peerAddress=peer))
        return protocol

    def test_names(self):
        mux = UNIXAddress(b"/run/sc_remoted/mux")
        with capturedLogs() as events:
            first = self.connect(UNIXAddress(None), mux)
            second = self.connect(UNIXAddress(b""), mux)
            v4 = self.connect(IPv4Address("TCP", "192.0.2.7", 40312), IPv4Address("TCP", "0.0.0.0", 31339))
            v6 = self.connect(IPv6Address("TCP", "2001:db8::7", 40313), IPv6Address("TCP", "::", 31339))
        self.assertEqual(
            [first.peer, second.peer, v4.peer, v6.peer],
            ["unix:/run/sc_remoted/mux #1", "unix:/run/sc_remoted/mux #2", "192.0.2.7:40312", "[2001:db8::7]:40313"],
        )
        self.assertEqual(
            [formatEvent(e) for e in events if e.get("sc_event") == "mux.connected"][0],
            "mux client unix:/run/sc_remoted/mux #1 connected; told of 0 vantage points",
        )

    def test_channelOpened(self):
        scamper = MemoryScamper(self.controller, port=4000, magic=MAGIC, monitorname="vp1")
        scamper.register()
        [vp] = self.controller.vantagePoints()
        client = self.connect(UNIXAddress(None), UNIXAddress(b"/run/sc_remoted/mux"))
        with capturedLogs() as events:
            client.dataReceived(encodeChannelOpen(vp.identifier, 7))
        [opened] = [formatEvent(e) for e in events if e.get("sc_event") == "mux.channel_opened"]
        self.assertEqual(
            opened, "mux client unix:/run/sc_remoted/mux #1 opened channel 7 to vp1-127.0.0.1:4000 (scamper channel 1)"
        )


class EventLevelTests(SynchronousTestCase):
    """
    A vantage point's arrival is at level info, a channel's lines at
    debug (a busy platform opens thousands a second), local or mux.
    """

    class End:
        client = "local client"

        def deliver(self, payloads):
            pass

        def scamperFinished(self):
            pass

    def levels(self, events):
        return {e["sc_event"]: e["log_level"] for e in events if "sc_event" in e}

    def test_levels(self):
        controller = Controller(MemoryReactorClock(), None)
        peer = ScamperPeer(MAGIC, "vp1", autoAck=True, autoFinish=True)
        scamper = MemoryScamper(controller, port=4000, peer=peer)
        with capturedLogs() as events:
            scamper.register()
            [vp] = controller.vantagePoints()
            channel = vp.openChannel(self.End())
            vp.finish(channel)
            scamper.pump()
            mux = MuxFactory(controller).buildProtocol(None)
            mux.makeConnection(StringTransport(peerAddress=UNIXAddress(None)))
            mux.dataReceived(encodeChannelOpen(vp.identifier, 7))
        levels = self.levels(events)
        self.assertEqual(levels["vp.registered"], LogLevel.info)
        self.assertEqual(levels["mux.connected"], LogLevel.info)
        for event in ("channel.opened", "channel.client_finished", "channel.closed", "mux.channel_opened"):
            self.assertEqual(levels[event], LogLevel.debug, event)


class DebugRedactionTests(SynchronousTestCase):
    """C{--debug} lines show a magic's length and a short hash, never the magic."""

    def assertNoMagic(self, text):
        for form in MAGIC_FORMS:
            self.assertNotIn(form, text)

    def test_describeMagic(self):
        self.assertEqual(describeMagic(MAGIC), "<8 bytes, sha256 %s>" % (hashlib.sha256(MAGIC).hexdigest()[:8],))

    def test_frames(self):
        [new] = FrameDecoder().feed(encodeMasterNew(MAGIC, "vp1"))
        [res] = FrameDecoder().feed(encodeMasterRes(MAGIC, 5, 6, 7))
        short = describeMagic(MAGIC)
        self.assertEqual(describeFrame(new), "seq=0 chan=0 MasterNew(magic=%s, monitorname='vp1')" % (short,))
        self.assertEqual(
            describeFrame(res), "seq=0 chan=0 MasterRes(magic=%s, rcv_nxt=5, snd_una=6, snd_nxt=7)" % (short,)
        )
        self.assertEqual(describeFrame(Frame(9, 3, MAGIC)), "seq=9 chan=3 len=8 data")
        for frame in (new, res):
            self.assertNoMagic(describeFrame(frame))

    def test_debugSession(self):
        """A whole session under C{--debug}: every message logged, no magic in any line or field."""
        controller = Controller(MemoryReactorClock(), None, debug=True)
        with capturedLogs() as events:
            first = MemoryScamper(controller, port=4000, magic=MAGIC, monitorname="vp1")
            first.register()
            first.received()
            first.lose()
            second = MemoryScamper(controller, port=4001, peer=first.peer)
            second.resume()
            second.received()
        messages = [e for e in events if e.get("sc_event") == "scamper.message"]
        self.assertEqual(
            [e["frame"].split(" ", 2)[2].split("(")[0] for e in messages],
            ["MasterNew", "MasterId", "MasterRes", "MasterOk"],
        )
        self.assertIn(describeMagic(MAGIC), messages[0]["frame"])
        for event in events:
            self.assertNoMagic(formatEvent(event))
            self.assertNoMagic(repr({k: v for k, v in event.items() if not k.startswith("log_")}))


def startTwistd(test, twistdOptions, pluginOptions):
    """
    The installed twistd running sc_remoted in the foreground on a free
    loopback port, in a directory of its own, ended when C{test} ends.
    """
    directory = makeSocketsDirectory(test)
    argv = [sys.executable, twistdScript(), "-n", "--pidfile="] + twistdOptions
    argv += ["sc_remoted", "--port", "tcp:0:interface=%s" % (LOOPBACK,), "--sockets", directory] + pluginOptions
    return spawn(test, reactor, argv, path=makeSocketsDirectory(test))


class TwistdJSONTests(TestCase):
    """
    The README's JSON log, from the installed C{twistd}: every line of its
    output is a JSON object, with the daemon's events and without
    Twisted's port lines or the magic.
    """

    @defer.inlineCallbacks
    def test_jsonLogger(self):
        twistd = startTwistd(self, ["--logger=sc_remoted.logs.jsonStdoutLogger"], ["--debug"])

        def events():
            out = b"".join(twistd.protocol.out).decode("utf-8", "replace")
            return [parse(line) for line in out.splitlines(True) if line.endswith("\n")]

        def parse(line):
            try:
                return json.loads(line)
            except ValueError:
                raise AssertionError("not a JSON line: %r; the output: %s" % (line, twistd.output()[-3000:]))

        def named(name):
            return [event for event in events() if event.get("sc_event") == name]

        [listening] = yield waitFor(reactor, lambda: named("listening"), 20, "the listening event")
        self.assertEqual(listening["what"], "scamper")
        host, port = listening["address"].rsplit(":", 1)
        self.assertEqual(host, LOOPBACK)
        scamper = yield connectProtocol(
            TCP4ClientEndpoint(reactor, LOOPBACK, int(port), timeout=5), PeerProtocol(ScamperPeer(MAGIC, "vp1"))
        )
        self.addCleanup(scamper.transport.loseConnection)
        yield waitFor(reactor, lambda: scamper.identity, 10, "MASTER_ID")
        [registered] = yield waitFor(reactor, lambda: named("vp.registered"), 10, "vp.registered")
        self.assertEqual(registered["vp"], "vp1-%s" % (scamper.identity,))

        twistd.kill(signal.SIGTERM)
        result = yield twistd.wait(10)
        parsed = [parse(line) for line in result.out.decode("utf-8").splitlines()]
        self.assertTrue(all(isinstance(event, dict) for event in parsed), result)
        kinds = {event.get("sc_event") for event in parsed}
        self.assertTrue({"listening", "scamper.connected", "vp.registered", "scamper.message"} <= kinds, kinds)
        self.assertIn("Server Shut Down.", [event["text"] for event in parsed])
        for event in parsed:
            self.assertNotRegex(event["text"], r" starting on |Port .* Closed\)", event)
        for form in MAGIC_FORMS[:2]:
            self.assertNotIn(form, result.out.decode("utf-8"))

    test_jsonLogger.timeout = 60  # type: ignore[attr-defined]


class TwistdDefaultLogTests(TestCase):
    """
    Plain C{twistd -n sc_remoted}, the README's command: its text log
    names what listens where, and has no line of Twisted's about each
    vantage point's socket.
    """

    @defer.inlineCallbacks
    def test_noPortLines(self):
        twistd = startTwistd(self, [], [])
        line = yield waitFor(
            reactor,
            lambda: re.search(r"listening for scamper on %s:(\d+)" % (re.escape(LOOPBACK),), twistd.output()),
            20,
            "the listening line",
        )
        scamper = yield connectProtocol(
            TCP4ClientEndpoint(reactor, LOOPBACK, int(line.group(1)), timeout=5), PeerProtocol(ScamperPeer(MAGIC, "vp1"))
        )
        yield waitFor(reactor, lambda: scamper.identity, 10, "MASTER_ID")
        scamper.transport.loseConnection()
        yield waitFor(reactor, lambda: "kept 900 s for a resume" in twistd.output(), 10, "the zombie line")
        twistd.kill(signal.SIGTERM)
        result = yield twistd.wait(10)
        self.assertEqual(result.exitCode, 0, result)
        out = result.out.decode("utf-8")
        self.assertIn("registered from", out)
        self.assertNotRegex(out, r" starting on |Port .* Closed\)")

    test_noPortLines.timeout = 60  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_logfile(self):
        """
        C{twistd --logfile FILE sc_remoted}: the daemon's text lines in
        the file, no port lines, and SIGUSR1 rotates it as twistd does.
        """
        path = os.path.join(makeSocketsDirectory(self), "daemon.log")

        def text() -> str:
            try:
                with open(path) as f:
                    return f.read()
            except FileNotFoundError:
                return ""

        twistd = startTwistd(self, ["--logfile", path], [])
        line = yield waitFor(
            reactor, lambda: re.search(r"listening for scamper on %s:(\d+)" % (re.escape(LOOPBACK),), text()), 20, "the listening line"
        )
        scamper = yield connectProtocol(
            TCP4ClientEndpoint(reactor, LOOPBACK, int(line.group(1)), timeout=5), PeerProtocol(ScamperPeer(MAGIC, "vp1"))
        )
        yield waitFor(reactor, lambda: scamper.identity, 10, "MASTER_ID")
        scamper.transport.loseConnection()
        yield waitFor(reactor, lambda: "kept 900 s for a resume" in text(), 10, "the zombie line")
        twistd.kill(signal.SIGUSR1)
        yield waitFor(reactor, lambda: os.path.exists(path + ".1"), 10, "the rotated log")
        twistd.kill(signal.SIGTERM)
        result = yield twistd.wait(10)
        self.assertEqual(result.exitCode, 0, result)
        with open(path + ".1") as f:
            before = f.read()
        self.assertRegex(before, r"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[sc_remoted\.controller#info\] vp1-.* registered from")
        self.assertNotRegex(before + text(), r" starting on |Port .* Closed\)")
        self.assertIn("Server Shut Down.", text())

    test_logfile.timeout = 60  # type: ignore[attr-defined]


class Thing:
    """A field value with an attribute and a repr, for formats that use them."""

    name = "vp1"

    def __repr__(self) -> str:
        return "<Thing vp1>"

    def call(self) -> str:
        return "called"


def sampleEvents():
    """Events of every shape the daemon and Twisted emit, from a real Logger."""
    events: list = []
    log = Logger(namespace="sc_remoted.test", observer=events.append)
    log.info("{vp}: registered from {peer}", vp="vp1-192.0.2.1:1025", peer="192.0.2.1:1025", sc_event="vp.registered")
    log.warn("{vp}: {client} read nothing for {limit:.0f} s", vp="v", client="c", limit=60.0)
    log.info("{message!r} and {thing.name} and {thing!r}", message=b"x", thing=Thing())
    log.info("a call: {thing.call()}", thing=Thing())
    log.info("missing {field}")
    log.info("broken {")
    log.info("no fields, {{braces}}")
    log.info("")
    log.info("with a system", log_system="custom-system")
    log.error("lines\nand more lines\n", sc_event="x")
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("it failed: {why}", why="division")
    with capturedLogs() as legacy:
        legacyLog.msg("legacy %s", "message")
    return events + legacy


class FormattingTests(SynchronousTestCase):
    """L{logs.TextLines} and L{logs.JSONTime} write what twisted.logger writes, faster."""

    def test_textLinesAsTwisted(self):
        for event in sampleEvents():
            for timestamps in (True, False):
                expected = eventAsText(event, includeTimestamp=timestamps).rstrip("\n")
                expected = expected.replace("\n", "\n\t") + "\n" if expected else None
                self.assertEqual(logs.TextLines(timestamps)(event), expected, event)

    def test_messageAsTwisted(self):
        for event in sampleEvents():
            self.assertEqual(logs.formatMessage(event), formatEvent(event), event)

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.floats(min_value=0, max_value=4e9, allow_nan=False), min_size=1, max_size=20))
    def test_timestampsOncePerSecond(self, times):
        """The cached timestamps match Twisted's and datetime's for any times, in any order."""
        text, jsonTime = logs.TextLines(), logs.JSONTime()
        for when in times + sorted(times):
            self.assertEqual(text.timestamp(when), formatTime(when))
            self.assertEqual(jsonTime(when), datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="microseconds"))

