"""
Tests for the HTML page at C{/} of the status port
(L{sc_remoted.statuspage}): what it renders from a controller driven by
fakes (rows, totals, the empty state, escaping of what peers control),
and the page as headless Chromium shows it while a real scamper is
connected.
"""

import shutil
import tempfile
from html.parser import HTMLParser

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from sc_remoted.status import Status, makeStatusService, statusResource
from sc_remoted.statuspage import COLUMNS, REFRESH_SECONDS, formatDuration, renderStatusPage

from .fakes import FakeClient, makeController
from .peer_twisted import MemoryScamper
from .realprocs import LOOPBACK, PortRecordingEndpoint, runToCompletion, startScamper, waitFor, waitForSocket
from .test_real_scamper import InProcessDaemonMixin
from .test_status import render


class PageReader(HTMLParser):
    """
    What a person reads on the page: C{rows}, one C{{column: text}} per
    vantage point (by the cells' classes), the C{totals} (C{{term: text}}),
    the text of a row saying there is none in C{notes}, and the refresh.
    """

    def __init__(self, page: str) -> None:
        HTMLParser.__init__(self)
        self.rows: list = []
        self.totals: dict = {}
        self.notes: list = []
        self.refresh = None
        self._row = None
        self._note = False
        self._cell = None
        self._term = None
        self._text: list = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "meta" and attributes.get("http-equiv") == "refresh":
            self.refresh = attributes.get("content")
        elif tag == "tr" and "vp" in classes:
            self._row = {"_id": attributes.get("id"), "_state": classes[1:]}
        elif tag == "tr" and "empty" in classes:
            self._note = True
            self._text = []
        elif tag == "td" and self._row is not None:
            self._cell = classes[0]
            self._text = []
        elif tag in ("dt", "dd"):
            self._text = []

    def handle_endtag(self, tag):
        text = "".join(self._text)
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row[self._cell] = text
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "tr" and self._note:
            self.notes.append(text)
            self._note = False
        elif tag == "dt":
            self._term = text
        elif tag == "dd":
            self.totals[self._term] = text

    def handle_data(self, data):
        self._text.append(data)


class RenderingTests(SynchronousTestCase):
    """The page made from a controller driven by fakes."""

    def setUp(self):
        self.controller = makeController()
        self.reactor = self.controller.reactor
        self.reactor.advance(1000)
        self.status = Status(self.controller)
        self.resource = statusResource(self.status)

    def register(self, magic, port, monitorname=None):
        scamper = MemoryScamper(self.controller, "192.0.2.7", port, magic=magic, monitorname=monitorname)
        scamper.register()
        scamper.received()
        return scamper

    def page(self):
        body, request = render(self.resource, "")
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [b"text/html; charset=utf-8"])
        return body.decode("utf-8"), request

    def test_empty(self):
        """With no vantage point: zero totals and one line saying so."""
        page, _ = self.page()
        reader = PageReader(page)
        self.assertEqual(reader.rows, [])
        self.assertEqual(reader.notes, ["No vantage point is connected."])
        self.assertEqual(reader.totals["vantage points"], "0 (0 connected, 0 zombies)")
        self.assertEqual(reader.totals["channels open"], "0")

    def test_rows(self):
        """One row per vantage point, with every column the brief names."""
        self.register(b"magic-one", 1025, monitorname="vp1")
        self.reactor.advance(5)
        FakeClient(self.reactor, "vp1-192.0.2.7:1025").write(b"ping 192.0.2.1\n")
        [row] = PageReader(self.page()[0]).rows
        self.assertEqual(
            row,
            {
                "_id": "vp-1",
                "_state": ["connected"],
                "id": "1",
                "name": "vp1-192.0.2.7:1025",
                "monitorname": "vp1",
                "peer": "192.0.2.7:1025",
                "state": "connected",
                "since": "5s ago",
                "resumes": "0",
                "channels": "1",
                "bytesIn": "0",
                "bytesOut": "20",
            },
        )
        self.assertEqual([key for key in row if not key.startswith("_")], [key for key, _ in COLUMNS])

    def test_totals(self):
        """Totals above the table: by state, and counting departed vantage points."""
        first = self.register(b"magic-one", 1)
        self.register(b"magic-two", 2)
        FakeClient(self.reactor, "192.0.2.7:1").write(b"x\n")
        first.lose()
        reader = PageReader(self.page()[0])
        self.assertEqual(reader.totals["vantage points"], "2 (1 connected, 1 zombies)")
        self.assertEqual({row["name"]: row["state"] for row in reader.rows},
                         {"192.0.2.7:1": "zombie", "192.0.2.7:2": "connected"})
        self.reactor.advance(900)
        reader = PageReader(self.page()[0])
        self.assertEqual([row["name"] for row in reader.rows], ["192.0.2.7:2"])
        self.assertTrue(reader.totals["vantage points"].startswith("1 ("), reader.totals)
        self.assertEqual(reader.totals["arrived / departed"], "2 / 1")
        self.assertEqual(reader.totals["bytes from / to scamper"], "0 / 7")
        self.assertEqual(reader.totals["up for"], "15m")

    def test_escaped(self):
        """Whatever a peer sent is shown as text, never as markup."""
        self.register(b"magic-one", 1025, monitorname="vp1")
        snapshot = self.status.snapshot()
        hostile = "<script>alert(\"x\")</script><img src=x onerror='y'>&amp;"
        snapshot["vantagePoints"][0].update(monitorname=hostile, name=hostile, state='connected" onclick="z')
        page = renderStatusPage(snapshot)
        self.assertNotIn("<script", page)
        self.assertNotIn("<img", page)
        self.assertNotIn('" onclick', page)
        [row] = PageReader(page).rows
        self.assertEqual((row["monitorname"], row["name"]), (hostile, hostile))
        self.assertEqual(row["_state"], ['connected"', 'onclick="z'])

    def test_refreshesItself(self):
        """A meta refresh and no script, which the page's policy forbids anyway."""
        page, request = self.page()
        self.assertEqual(PageReader(page).refresh, str(REFRESH_SECONDS))
        self.assertNotIn("<script", page)
        [policy] = request.responseHeaders.getRawHeaders(b"content-security-policy")
        self.assertIn(b"default-src 'none'", policy)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"cache-control"), [b"no-store"])

    def test_otherPathsNotFound(self):
        _, request = render(self.resource, "nonsense")
        self.assertEqual(request.responseCode, 404)

    def test_formatDuration(self):
        self.assertEqual(
            [formatDuration(s) for s in (0, 7, 65, 3600, 3725, 90061, -3)],
            ["0s", "7s", "1m 5s", "1h", "1h 2m", "1d 1h", "0s"],
        )


BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class BrowserTests(InProcessDaemonMixin, TestCase):
    """The page in headless Chromium while a real scamper is connected."""

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.chromium = shutil.which("chromium")
        if self.chromium is None:
            raise SkipTest("chromium is not installed (apt-get install chromium)")
        yield InProcessDaemonMixin.setUp(self)
        endpoint = PortRecordingEndpoint(TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK))
        self.statusService = makeStatusService(self.controller, endpoint)
        yield self.statusService.startService()
        self.addCleanup(self.statusService.stopService)
        self.statusPort = endpoint.port

    @defer.inlineCallbacks
    def test_vantagePointRow(self):
        startScamper(self, reactor, self.port, monitorname="browservp")
        name = yield waitForSocket(reactor, self.directory, 20)
        yield waitFor(reactor, lambda: self.controller.vantagePoints(), 20, "the vantage point")
        profile = tempfile.mkdtemp(prefix="scr-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        url = "http://%s:%d/" % (LOOPBACK, self.statusPort)
        result = yield runToCompletion(
            reactor,
            [self.chromium] + BROWSER_FLAGS + ["--user-data-dir=" + profile, "--dump-dom", url],
            60,
            self,
        )
        self.assertEqual(result.exitCode, 0, result)
        reader = PageReader(result.out.decode("utf-8"))
        [row] = reader.rows
        vp = self.onlyVantagePoint()
        self.assertEqual(row["_id"], "vp-%d" % (vp.identifier,))
        self.assertEqual((row["name"], row["monitorname"], row["state"]), (name, "browservp", "connected"))
        self.assertTrue(row["peer"].startswith("127.0.0.1:"), row)
        self.assertEqual((row["resumes"], row["channels"]), ("0", "0"))
        self.assertTrue(row["since"].endswith(" ago"), row)
        self.assertEqual(reader.totals["vantage points"], "1 (1 connected, 0 zombies)")
        self.assertEqual(reader.refresh, str(REFRESH_SECONDS))
