"""
Tests for the status port (L{sc_remoted.status}): which addresses it
accepts, what C{/status} and C{/metrics} report (with fakes, then with a
real scamper connected and measuring), and its C{twistd} options.
"""

import json
import os

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest

from sc_remoted.status import (
    Status,
    StatusEndpointError,
    makeStatusService,
    parseStatusEndpoint,
    statusResource,
)
from sc_remoted.tap import Options, makeService
from sc_remoted.wire import encodeMasterOk

from .fakes import FakeClient, makeController
from .peer_twisted import MemoryScamper
from .realprocs import LOOPBACK, PortRecordingEndpoint, makeSocketsDirectory, waitFor
from .test_real_scamper import InProcessDaemonMixin


class EndpointTests(SynchronousTestCase):
    def test_barePortIsLoopback(self):
        endpoint = parseStatusEndpoint(reactor, "9100")
        self.assertIsInstance(endpoint, TCP4ServerEndpoint)
        self.assertEqual((endpoint._port, endpoint._interface), (9100, "127.0.0.1"))

    def test_loopbackAccepted(self):
        self.assertIsInstance(parseStatusEndpoint(reactor, "tcp:9100:interface=127.0.0.2"), TCP4ServerEndpoint)
        self.assertIsInstance(parseStatusEndpoint(reactor, r"tcp6:9100:interface=\:\:1"), TCP6ServerEndpoint)
        self.assertIsInstance(parseStatusEndpoint(reactor, "unix:/tmp/status.sock"), UNIXServerEndpoint)

    def test_remoteRefused(self):
        for description in ["tcp:9100", "tcp:9100:interface=0.0.0.0", "tcp:9100:interface=192.0.2.1",
                            "tcp6:9100", "systemd:domain=INET:index=0"]:
            self.assertRaises(StatusEndpointError, parseStatusEndpoint, reactor, description)

    def test_remoteAllowed(self):
        endpoint = parseStatusEndpoint(reactor, "tcp:9100", allowRemote=True)
        self.assertEqual(endpoint._interface, "")

    def test_bad(self):
        self.assertRaises(StatusEndpointError, parseStatusEndpoint, reactor, "nonsense:1")


def render(resource, path):
    """GET C{path} from C{resource} (synchronous resources only)."""
    request = DummyRequest([path.encode("ascii")])
    child = resource.getChildWithDefault(path.encode("ascii"), request)
    request.postpath = []
    body = child.render(request)
    if body is not None and not isinstance(body, int):
        request.write(body)
    return b"".join(request.written), request


def metrics(text):
    """C{{(name, labels...): value}} of a Prometheus text exposition."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name,) + tuple(sorted(sample.labels.items()))] = sample.value
    return samples


class StatusTests(SynchronousTestCase):
    """What /status and /metrics say, from a controller driven by fakes."""

    def setUp(self):
        self.controller = makeController()
        self.reactor = self.controller.reactor
        self.reactor.advance(1000)
        self.status = Status(self.controller)
        self.resource = statusResource(self.status)

    def register(self, magic=b"magic-one", monitorname=None, host="192.0.2.7", port=1025):
        scamper = MemoryScamper(self.controller, host, port, magic=magic, monitorname=monitorname)
        scamper.register()
        scamper.received()
        return scamper

    def statusJSON(self):
        body, request = render(self.resource, "status")
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [b"application/json"])
        return json.loads(body)

    def test_empty(self):
        status = self.statusJSON()
        self.assertEqual(status["vantagePoints"], [])
        self.assertEqual(status["totals"]["vantagePoints"], 0)
        self.assertEqual(status["pid"], os.getpid())

    def test_vantagePoint(self):
        self.register(monitorname="vp1")
        self.reactor.advance(5)
        FakeClient(self.reactor, "vp1-192.0.2.7:1025").write(b"ping 192.0.2.1\n")
        [vp] = self.statusJSON()["vantagePoints"]
        self.assertEqual(
            {k: vp[k] for k in ["id", "name", "monitorname", "peer", "state", "since", "resumes", "channels"]},
            {
                "id": 1,
                "name": "vp1-192.0.2.7:1025",
                "monitorname": "vp1",
                "peer": "192.0.2.7:1025",
                "state": "connected",
                "since": 1000,
                "resumes": 0,
                "channels": 1,
            },
        )
        # CHANNEL_NEW (5 bytes) and the client's line sent; MASTER_NEW is
        # not counted as a session message.
        self.assertEqual((vp["messagesOut"], vp["bytesOut"]), (2, 5 + 15))
        self.assertEqual(vp["messagesIn"], 0)

    def test_zombieAndTotals(self):
        """A zombie is reported as such; departed VPs still count in totals."""
        first = self.register(b"magic-one", port=1)
        self.register(b"magic-two", port=2)
        FakeClient(self.reactor, "192.0.2.7:1").write(b"x\n")
        self.reactor.advance(10)
        first.lose()
        status = self.statusJSON()
        states = {vp["name"]: (vp["state"], vp["since"]) for vp in status["vantagePoints"]}
        self.assertEqual(states, {"192.0.2.7:1": ("zombie", 1010), "192.0.2.7:2": ("connected", 1000)})
        self.assertEqual(status["totals"]["zombies"], 1)
        self.reactor.advance(900)
        status = self.statusJSON()
        self.assertEqual([vp["name"] for vp in status["vantagePoints"]], ["192.0.2.7:2"])
        totals = status["totals"]
        self.assertEqual((totals["arrived"], totals["departed"]), (2, 1))
        self.assertEqual((totals["messagesOut"], totals["bytesOut"]), (2, 5 + 2))

    def test_resumed(self):
        scamper = self.register()
        scamper.lose()
        self.reactor.advance(30)
        again = MemoryScamper(self.controller, "192.0.2.7", 1026, peer=scamper.peer)
        again.resume()
        self.assertEqual(again.receivedBytes(), encodeMasterOk(0))
        [vp] = self.statusJSON()["vantagePoints"]
        self.assertEqual((vp["state"], vp["resumes"], vp["since"], vp["name"]), ("connected", 1, 1030, "192.0.2.7:1026"))

    def test_metrics(self):
        self.register(monitorname="vp1")
        FakeClient(self.reactor, "vp1-192.0.2.7:1025").write(b"abc")
        body, request = render(self.resource, "metrics")
        values = metrics(body.decode("utf-8"))
        labels = (("id", "1"), ("monitorname", "vp1"), ("vp", "vp1-192.0.2.7:1025"))
        self.assertEqual(values[("sc_remoted_vp_connected",) + labels], 1)
        self.assertEqual(values[("sc_remoted_vp_channels_open",) + labels], 1)
        self.assertEqual(values[("sc_remoted_vp_sent_bytes_total",) + labels], 5 + 3)
        self.assertEqual(values[("sc_remoted_vp_sent_messages_total",) + labels], 2)
        self.assertEqual(values[("sc_remoted_vp_resumes_total",) + labels], 0)
        self.assertEqual(values[("sc_remoted_vantage_points", ("state", "connected"))], 1)
        self.assertEqual(values[("sc_remoted_vantage_points", ("state", "zombie"))], 0)
        self.assertEqual(values[("sc_remoted_vantage_points_arrived_total",)], 1)
        self.assertEqual(values[("sc_remoted_sent_bytes_total",)], 8)
        self.assertEqual(values[("sc_remoted_start_time_seconds",)], 1000)

    def test_noGlobalRegistry(self):
        """Nothing is registered in prometheus_client's global registry."""
        before = set(REGISTRY._collector_to_names)
        statusResource(Status(makeController()))
        self.assertEqual(set(REGISTRY._collector_to_names), before)
        self.assertNotIn("sc_remoted_vantage_points", REGISTRY._names_to_collectors)


class OptionsTests(SynchronousTestCase):
    def setUp(self):
        self.directory = makeSocketsDirectory(self)

    def test_off(self):
        options = Options()
        options.parseOptions(["--port", "31337", "--sockets", self.directory])
        top = makeService(options)
        self.assertEqual([s for s in top if getattr(s, "status", None) is not None], [])

    def test_statusPort(self):
        options = Options()
        options.parseOptions(["--port", "31337", "--sockets", self.directory, "--status-port", "9100"])
        top = makeService(options)
        [service] = [s for s in top if getattr(s, "status", None) is not None]
        self.assertIsInstance(service.factory, Site)
        self.assertIs(service.status.controller, top.controller)

    def test_remoteRefused(self):
        options = Options()
        with self.assertRaises(UsageError) as caught:
            options.parseOptions(["--port", "1", "--sockets", self.directory, "--status-port", "tcp:9100"])
        self.assertIn("not a loopback address", str(caught.exception))
        options = Options()
        options.parseOptions(
            ["--port", "1", "--sockets", self.directory, "--status-port", "tcp:9100", "--status-allow-remote"]
        )


class RealScamperStatusTests(InProcessDaemonMixin, TestCase):
    """/status and /metrics over HTTP while a real scamper is connected."""

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        yield InProcessDaemonMixin.setUp(self)
        endpoint = PortRecordingEndpoint(TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK))
        self.statusService = makeStatusService(self.controller, endpoint)
        yield self.statusService.startService()
        self.addCleanup(self.statusService.stopService)
        self.statusPort = endpoint.port

    @defer.inlineCallbacks
    def get(self, path):
        agent = Agent(reactor)
        response = yield agent.request(b"GET", b"http://127.0.0.1:%d%s" % (self.statusPort, path.encode("ascii")))
        body = yield readBody(response)
        return response, body

    @defer.inlineCallbacks
    def test_statusAndMetrics(self):
        from .realprocs import startScamper, waitForSocket

        startScamper(self, reactor, self.port, monitorname="statusvp")
        name = yield waitForSocket(reactor, self.directory, 20)
        yield self.attach(name, ["ping -c 2 127.0.0.1"])
        yield waitFor(reactor, lambda: not self.onlyVantagePoint().session.channels, 20, "the channel to close")
        vp = self.onlyVantagePoint()

        response, body = yield self.get("/status")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"application/json"])
        status = json.loads(body)
        [reported] = status["vantagePoints"]
        self.assertEqual(reported["name"], name)
        self.assertEqual(reported["monitorname"], "statusvp")
        self.assertTrue(reported["peer"].startswith("127.0.0.1:"), reported)
        self.assertEqual(reported["state"], "connected")
        self.assertEqual(reported["channels"], 0)
        self.assertGreater(reported["bytesIn"], 0)
        self.assertGreater(reported["messagesIn"], 0)
        self.assertGreater(reported["bytesOut"], len("ping -c 2 127.0.0.1\n"))
        # Counters keep moving (keepalive ACKs); compare against the VP.
        self.assertLessEqual(reported["bytesIn"], vp.session.bytesIn)
        self.assertEqual(status["totals"]["connected"], 1)

        response, body = yield self.get("/metrics")
        self.assertEqual(response.code, 200)
        values = metrics(body.decode("utf-8"))
        labels = (("id", str(vp.identifier)), ("monitorname", "statusvp"), ("vp", name))
        self.assertEqual(values[("sc_remoted_vp_connected",) + labels], 1)
        self.assertGreater(values[("sc_remoted_vp_received_bytes_total",) + labels], 0)
        self.assertEqual(values[("sc_remoted_vantage_points", ("state", "connected"))], 1)
