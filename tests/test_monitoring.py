"""
Tests for what ships for monitoring: the metrics only the alerting rules
need (L{sc_remoted.opsmetrics}), docs/prometheus-alerts.yml and
docs/grafana-dashboard.json.  Both files must parse, and every metric they
use must be in the C{/metrics} of a running L{Status}.  Where Debian's
C{prometheus} package provides C{promtool}, the PromQL is checked too,
and each alert is run against series that should fire it and series
that should not.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile

from twisted.logger import Logger, LogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

import sc_remoted
from sc_remoted.limits import Limits
from sc_remoted.opsmetrics import WATCHED_EVENTS, LimitsCollector, LogEventCounter
from sc_remoted.status import Status, StatusSite, statusResource

from .fakes import FakeClient, makeController
from .peer_twisted import MemoryScamper
from .test_status import metrics, render

REPO = os.path.dirname(os.path.dirname(os.path.abspath(sc_remoted.__file__)))
RULES = os.path.join(REPO, "docs", "prometheus-alerts.yml")
DASHBOARD = os.path.join(REPO, "docs", "grafana-dashboard.json")

# Series that Prometheus makes itself rather than scraping.
PROMETHEUS_SERIES = {"up"}

# A metric name: the identifier in front of a selector's braces, or any
# sc_remoted_ identifier.
_SELECTOR = re.compile(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\s*\{")
_OURS = re.compile(r"\b(sc_remoted_[A-Za-z0-9_]+)")
_EVENT = re.compile(r'\bevent\s*=~?\s*"([^"]*)"')


def metricNames(expr: str) -> set:
    return set(_SELECTOR.findall(expr)) | set(_OURS.findall(expr))


def loadRules() -> dict:
    """
    The rules file, which is YAML written as JSON so that it parses
    without PyYAML; with PyYAML, both readings must agree.
    """
    with open(RULES) as f:
        text = f.read()
    rules = json.loads(text)
    try:
        import yaml
    except ImportError:
        pass
    else:
        assert yaml.safe_load(text) == rules
    return rules


def alertRules() -> list:
    return [rule for group in loadRules()["groups"] for rule in group["rules"]]


def dashboardExpressions() -> list:
    """Every query of the dashboard: its panels' targets and its variables."""
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            expressions.append(variable["query"]["query"])
    return expressions


def loggedEvents() -> set:
    """Every C{sc_event} name the package logs."""
    names = set()
    for directory, _, files in os.walk(os.path.join(REPO, "sc_remoted")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(directory, name)) as f:
                    names.update(re.findall(r'sc_event="([a-z_.]+)"', f.read()))
    return names


class ExposedMetrics:
    """
    The sample names of C{/metrics} with every kind of series present: a
    connected vantage point, a zombie, a channel, and the event counter.
    """

    def __init__(self, testCase) -> None:
        controller = makeController()
        status = Status(controller)
        events = LogEventCounter(LogPublisher())
        for port, magic in [(1, b"magic-one"), (2, b"magic-two")]:
            scamper = MemoryScamper(controller, "192.0.2.7", port, magic=magic, monitorname="vp%d" % (port,))
            scamper.register()
            scamper.received()
        FakeClient(controller.reactor, "vp1-192.0.2.7:1").write(b"x\n")
        scamper.lose()
        body, _ = render(statusResource(status, events), "metrics")
        self.samples = {key[0] for key in metrics(body.decode("utf-8"))}
        testCase.assertIn("sc_remoted_vp_connected", self.samples)


class OpsMetricsTests(SynchronousTestCase):
    """The limits and the log event counts in /metrics."""

    def test_limits(self):
        limits = Limits(maxConnections=11, maxPerAddress=12, maxChannels=13, maxZombies=14, channelBudget=15,
                        vantagePointBudget=16, muxClientBudget=17, processBudget=18)
        controller = makeController(limits=limits)
        body, _ = render(statusResource(Status(controller)), "metrics")
        values = metrics(body.decode("utf-8"))
        self.assertEqual(
            [values[(name,)] for name in ("sc_remoted_max_connections", "sc_remoted_max_per_address",
                                          "sc_remoted_max_channels", "sc_remoted_max_zombies",
                                          "sc_remoted_channel_budget_bytes", "sc_remoted_vp_budget_bytes",
                                          "sc_remoted_mux_client_budget_bytes", "sc_remoted_queue_budget_bytes")],
            [11, 12, 13, 14, 15, 16, 17, 18],
        )
        self.assertEqual(list(LimitsCollector(Limits()).collect())[2].samples[0].value, Limits.maxChannels)

    def test_countsWhileStarted(self):
        publisher = LogPublisher()
        log = Logger(observer=publisher)
        counter = LogEventCounter(publisher)
        log.info("before", sc_event="vp.registered")
        counter.start()
        counter.start()
        log.info("one", sc_event="vp.registered")
        log.info("two", sc_event="vp.registered")
        log.info("no name")
        counter.stop()
        log.info("after", sc_event="vp.registered")
        self.assertEqual(dict(counter.counts), dict(dict.fromkeys(WATCHED_EVENTS, 0), **{"vp.registered": 2}))

    def test_watchedStartAtZero(self):
        """A rule's increase() sees the first event only if the series was there before it."""
        counter = LogEventCounter(LogPublisher())
        [family] = counter.collect()
        self.assertEqual({sample.labels["event"]: sample.value for sample in family.samples},
                         dict.fromkeys(WATCHED_EVENTS, 0))
        self.assertLessEqual(set(WATCHED_EVENTS), loggedEvents())

    def test_siteStartsCounting(self):
        """The status site counts while it listens, and stops observing after."""
        publisher = LogPublisher()
        counter = LogEventCounter(publisher)
        site = StatusSite(statusResource(Status(makeController()), counter), counter)
        site.doStart()
        self.assertTrue(counter.started)
        site.doStop()
        self.assertFalse(counter.started)
        self.assertEqual(publisher._observers, [])

    def test_rejectedResume(self):
        """A rejected MASTER_RES shows in the metric the ResumesRejected rule reads."""
        controller = makeController()
        counter = LogEventCounter()
        counter.start()
        self.addCleanup(counter.stop)
        MemoryScamper(controller, "192.0.2.7", 1, magic=b"unknown-magic").resume()
        body, _ = render(statusResource(Status(controller), counter), "metrics")
        values = metrics(body.decode("utf-8"))
        self.assertEqual(values[("sc_remoted_log_events_total", ("event", "vp.resume_rejected"))], 1)


class RulesTests(SynchronousTestCase):
    """docs/prometheus-alerts.yml."""

    def test_shape(self):
        rules = alertRules()
        names = [rule["alert"] for rule in rules]
        self.assertEqual(len(names), len(set(names)))
        for wanted in ["VantagePointDown", "ZombiesGrowing", "ResumesRejected", "ChannelsNearLimit"]:
            self.assertIn("ScRemoted" + wanted, names)
        for rule in rules:
            self.assertRegex(rule["for"], r"^[0-9]+[smh]$", rule["alert"])
            self.assertIn(rule["labels"]["severity"], ("warning", "critical"), rule["alert"])
            self.assertEqual(set(rule["annotations"]), {"summary", "description"}, rule["alert"])

    def test_metricsExist(self):
        exposed = ExposedMetrics(self).samples | PROMETHEUS_SERIES
        for rule in alertRules():
            names = metricNames(rule["expr"])
            self.assertTrue(names, rule["alert"])
            self.assertEqual(names - exposed, set(), rule["alert"])

    def test_eventsExist(self):
        logged = loggedEvents()
        used = {event for rule in alertRules() for event in _EVENT.findall(rule["expr"])}
        self.assertIn("vp.resume_rejected", used)
        self.assertEqual(used - logged, set())
        self.assertLessEqual(used, set(WATCHED_EVENTS))


class DashboardTests(SynchronousTestCase):
    """docs/grafana-dashboard.json."""

    def test_shape(self):
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        ids = [panel["id"] for panel in dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        for panel in dashboard["panels"]:
            self.assertEqual(set(panel["gridPos"]), {"x", "y", "w", "h"}, panel["title"])
            self.assertTrue(panel["targets"], panel["title"])
            self.assertEqual(panel["datasource"]["uid"], "${datasource}", panel["title"])

    def test_metricsExist(self):
        exposed = ExposedMetrics(self).samples
        for expr in dashboardExpressions():
            names = metricNames(expr)
            self.assertTrue(names, expr)
            self.assertEqual(names - exposed, set(), expr)


# Series for promtool's rule tests: for each alert, a case that must fire
# and one that must not.  A minute per step.
_BASE = {"job": "sc_remoted"}


def _series(name: str, values: str, **labels) -> dict:
    labels = dict(_BASE, **labels)
    selector = ",".join('%s="%s"' % item for item in sorted(labels.items()))
    return {"series": "%s{%s}" % (name, selector), "values": values}


def _alert(**labels) -> dict:
    return {"exp_labels": dict(_BASE, **labels)}


RULE_CASES = [
    (
        "ScRemotedDown",
        [_series("up", "1x5 0x10", instance="down"), _series("up", "1x15", instance="fine")],
        [("4m", []), ("12m", [_alert(instance="down", severity="critical")])],
    ),
    (
        "ScRemotedVantagePointDown",
        [
            _series("sc_remoted_vp_connected", "1x10 0x30", instance="c", monitorname="ams-nl", vp="ams-nl-x", id="1"),
            _series("sc_remoted_vp_connected", "1x40", instance="c", monitorname="lis-pt", vp="lis-pt-x", id="2"),
            # A scamper that reconnected: its new series is connected.
            _series("sc_remoted_vp_connected", "1x10 0x30", instance="c", monitorname="nrt-jp", vp="nrt-jp-a", id="3"),
            _series("sc_remoted_vp_connected", "_x12 1x28", instance="c", monitorname="nrt-jp", vp="nrt-jp-b", id="4"),
            _series("sc_remoted_start_time_seconds", "0x40", instance="c"),
        ],
        [("15m", []), ("30m", [_alert(instance="c", monitorname="ams-nl", severity="warning")])],
    ),
    (
        "ScRemotedZombiesGrowing",
        [
            _series("sc_remoted_vantage_points", "0+1x90", instance="growing", state="zombie"),
            _series("sc_remoted_vantage_points", "5x90", instance="steady", state="zombie"),
        ],
        [("20m", []), ("70m", [_alert(instance="growing", state="zombie", severity="warning")])],
    ),
    (
        "ScRemotedResumesRejected",
        [
            _series("sc_remoted_log_events_total", "0x20 1x20", instance="old", event="vp.resume_rejected"),
            _series("sc_remoted_start_time_seconds", "0x40", instance="old"),
            # Just restarted: the old sessions are gone, rejections expected.
            _series("sc_remoted_log_events_total", "0x20 1x20", instance="new", event="vp.resume_rejected"),
            _series("sc_remoted_start_time_seconds", "1200x40", instance="new"),
        ],
        [("19m", []), ("25m", [_alert(instance="old", event="vp.resume_rejected", severity="warning")])],
    ),
    (
        "ScRemotedChannelsNearLimit",
        [
            _series("sc_remoted_vp_channels_open", "900x20", instance="c", monitorname="busy", vp="busy-x", id="1"),
            _series("sc_remoted_vp_channels_open", "10x20", instance="c", monitorname="idle", vp="idle-x", id="2"),
            _series("sc_remoted_max_channels", "1024x20", instance="c"),
        ],
        [("3m", []), ("10m", [_alert(instance="c", monitorname="busy", vp="busy-x", id="1", severity="warning")])],
    ),
    (
        "ScRemotedZombiesNearLimit",
        [
            _series("sc_remoted_vantage_points", "90x20", instance="c", state="zombie"),
            _series("sc_remoted_max_zombies", "100x20", instance="c"),
        ],
        [("3m", []), ("10m", [_alert(instance="c", severity="warning")])],
    ),
    (
        "ScRemotedLimitRefusals",
        [_series("sc_remoted_log_events_total", "0x10 3x10", instance="c", event="limit.refused")],
        [("9m", []), ("15m", [_alert(instance="c", event="limit.refused", severity="warning")])],
    ),
]


class PromtoolTests(SynchronousTestCase):
    """The rules and the dashboard's queries as Prometheus itself reads them."""

    def setUp(self):
        self.program = shutil.which("promtool")
        if self.program is None:
            raise SkipTest("promtool is not installed (apt-get install prometheus)")
        self.directory = tempfile.mkdtemp(prefix="scr-promtool-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    def promtool(self, *arguments):
        result = subprocess.run(
            [self.program, *arguments], cwd=self.directory, capture_output=True, timeout=60, check=False
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def write(self, name, data):
        path = os.path.join(self.directory, name)
        with open(path, "w") as f:
            json.dump(data, f)
        return path

    def test_checkRules(self):
        self.promtool("check", "rules", RULES)

    def test_dashboardQueries(self):
        """Each dashboard query, with Grafana's variables filled in, as a recording rule."""
        grafana = {"$__rate_interval": "5m", "$instance": ".+"}
        rules = []
        for number, expr in enumerate(dashboardExpressions()):
            if expr.startswith("label_values("):
                continue
            for variable, value in grafana.items():
                expr = expr.replace(variable, value)
            rules.append({"record": "dashboard:query%d" % (number,), "expr": expr})
        self.promtool("check", "rules", self.write("dashboard.yml", {"groups": [{"name": "d", "rules": rules}]}))

    def test_alertsFire(self):
        """
        Each alert fires on the series meant to fire it and on no other.
        The rules are copied without their annotations, which promtool
        would otherwise compare too.
        """
        rules = loadRules()
        for group in rules["groups"]:
            for rule in group["rules"]:
                del rule["annotations"]
        self.assertEqual(sorted(name for name, _, _ in RULE_CASES), sorted(r["alert"] for r in alertRules()))
        tests = [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": at, "alertname": name, "exp_alerts": expected} for at, expected in checks
                ],
            }
            for name, series, checks in RULE_CASES
        ]
        self.write("rules.yml", rules)
        self.promtool("test", "rules", self.write("tests.yml", {"rule_files": ["rules.yml"], "tests": tests}))
