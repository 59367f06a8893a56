"""
The metrics that the shipped alerting rules (docs/prometheus-alerts.yml)
need and a vantage point's counters cannot give: the configured limits,
so that a rule can compare use with them, and how often each logged
event happened, for what leaves no trace in a vantage point (a rejected
resume, a refused connection).

Counting log events rather than adding a hook per event: every event an
operator cares about is already one C{twisted.logger} event carrying an
C{sc_event} name (README.rst, Log events), so the metric covers each of
them, with the same names.
"""

from collections import Counter
from typing import Iterator, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.logger import ILogObserver, LogPublisher, globalLogPublisher
from zope.interface import implementer

from .limits import Limits

# Reported from 0 before they first happen: a counter series that
# appears at 1 shows no increase to Prometheus, so the first rejected
# resume would not fire the rule that watches for it.
WATCHED_EVENTS = ("vp.resume_rejected", "limit.refused")


class LimitsCollector:
    """The C{--max-*} limits, one gauge each, named after the option."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def collect(self) -> Iterator[Metric]:
        for name, value, text in [
            ("sc_remoted_max_connections", self.limits.maxConnections, "--max-connections: scamper connections at once."),
            ("sc_remoted_max_per_address", self.limits.maxPerAddress, "--max-per-address: connections from one address."),
            ("sc_remoted_max_channels", self.limits.maxChannels, "--max-channels: channels open on one vantage point."),
            ("sc_remoted_max_zombies", self.limits.maxZombies, "--max-zombies: disconnected vantage points kept."),
            ("sc_remoted_channel_budget_bytes", self.limits.channelBudget, "--channel-budget: queued for one local client."),
            ("sc_remoted_vp_budget_bytes", self.limits.vantagePointBudget, "--vp-budget: queued for one VP's local clients."),
            ("sc_remoted_mux_client_budget_bytes", self.limits.muxClientBudget, "--mux-client-budget: queued for one mux client."),
            ("sc_remoted_queue_budget_bytes", self.limits.processBudget, "--queue-budget: queued for all slow clients."),
        ]:
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], value)
            yield gauge


@implementer(ILogObserver)
class LogEventCounter:
    """
    Counts the log events by their C{sc_event} name while started, as
    C{sc_remoted_log_events_total{event="..."}}.
    """

    def __init__(self, publisher: Optional[LogPublisher] = None) -> None:
        self.publisher = publisher if publisher is not None else globalLogPublisher
        self.counts: Counter = Counter(dict.fromkeys(WATCHED_EVENTS, 0))
        self.started = False

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.publisher.addObserver(self)

    def stop(self) -> None:
        if self.started:
            self.started = False
            self.publisher.removeObserver(self)

    def __call__(self, event: dict) -> None:
        name = event.get("sc_event")
        if isinstance(name, str):
            self.counts[name] += 1

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily(
            "sc_remoted_log_events", "Log events by their sc_event name (README.rst, Log events).", labels=["event"]
        )
        for name in sorted(self.counts):
            counter.add_metric([name], self.counts[name])
        yield counter
