"""
An HTTP status port (C{--status-port}, off by default): C{/status} as
JSON, C{/metrics} in the Prometheus text format, and C{/} as an HTML
page for a person (L{sc_remoted.statuspage}).

Nothing is counted twice or cached: a L{Status} reads the controller's
vantage points at each request, and remembers only what the controller
forgets, the counters of vantage points that have departed, so that the
process totals never go down.  The metrics go into a registry of their
own (not C{prometheus_client}'s global one), through a collector that
reads the same L{Status}.
"""

import json
import os
import time
from typing import Any, Dict, Iterator, List, Optional, Union

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from twisted.internet.interfaces import IReactorTime, IStreamServerEndpoint
from twisted.web.resource import Resource
from zope.interface import implementer

from . import __version__
from .endpoints import LOOPBACK, AddressError, ListenAddress, parseAddress
from .httpguard import GuardedSite
from .interfaces import IVantagePoint, IVantagePointObserver, IVantagePointRegistry
from .lifecycle import State
from .limits import Limits
from .opsmetrics import LimitsCollector, LogEventCounter
from .service import ListeningService
from .statuspage import StatusHTMLPage

_COUNTERS = ("bytesIn", "bytesOut", "framesIn", "framesOut")


def formatTime(seconds: float) -> str:
    """Unix time as ISO 8601 UTC, for reading C{/status} by eye."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class StatusEndpointError(ValueError):
    """A status address that cannot or may not be used."""


def checkStatusAddress(address: ListenAddress, allowRemote: bool = False) -> None:
    """
    The status port's rule: anything that is not loopback (or a UNIX
    socket) is refused unless C{allowRemote}, since the status pages name
    every vantage point and its address.

    @raise StatusEndpointError: saying why, for the operator.
    """
    if allowRemote:
        return
    loopback = address.isLoopback()
    if loopback is None:
        raise StatusEndpointError(
            "cannot tell whether %r is loopback; add --status-allow-remote to use it" % (address.text,)
        )
    if not loopback:
        raise StatusEndpointError(
            "%r is not a loopback address (the status port names every vantage point); "
            "use 127.0.0.1:PORT or add --status-allow-remote" % (address.text,)
        )


def parseStatusEndpoint(reactor, description: str, allowRemote: bool = False) -> IStreamServerEndpoint:
    """
    The endpoint of a status address (L{sc_remoted.endpoints.parseAddress}:
    a bare C{PORT} is on 127.0.0.1), refused as L{checkStatusAddress}
    says; for an embedding application, which has no command line.
    """
    try:
        address = parseAddress(description, LOOPBACK)
        checkStatusAddress(address, allowRemote)
        [endpoint] = address.endpoints(reactor)
    except AddressError as e:
        raise StatusEndpointError(str(e))
    return endpoint


@implementer(IVantagePointObserver)
class Status:
    """
    What the status port reports, read from the registry when asked.

    @ivar startedAt: when this was made, in the reactor's seconds.
    @ivar arrived: vantage points registered since then.
    @ivar departed: vantage points freed, expired or replaced since then.
    """

    def __init__(self, controller: IVantagePointRegistry, clock=None) -> None:
        self.controller = controller
        self.clock = clock if clock is not None else controller.reactor
        self.startedAt = self.clock.seconds()
        self.arrived = 0
        self.departed = 0
        self._retired = dict.fromkeys(_COUNTERS, 0)
        self._since: Dict[IVantagePoint, float] = {}
        controller.addObserver(self)

    # IVantagePointObserver ----------------------------------------------

    def vantagePointArrived(self, vp: IVantagePoint) -> None:
        self.arrived += 1
        self._since[vp] = self.clock.seconds()

    def vantagePointDisconnected(self, vp: IVantagePoint) -> None:
        self._since[vp] = self.clock.seconds()

    def vantagePointResumed(self, vp: IVantagePoint) -> None:
        self._since[vp] = self.clock.seconds()

    def vantagePointDeparted(self, vp: IVantagePoint) -> None:
        self.departed += 1
        self._since.pop(vp, None)
        for name in _COUNTERS:
            self._retired[name] += getattr(vp.session, name)

    # Reading ------------------------------------------------------------

    def since(self, vp: IVantagePoint) -> float:
        """When C{vp} entered its current state (connected or zombie)."""
        return self._since.get(vp, vp.connectedAt)

    def vantagePoint(self, vp: IVantagePoint) -> Dict[str, Any]:
        return {
            "id": vp.identifier,
            "name": vp.name,
            "monitorname": vp.monitorname,
            "peer": vp.peer,
            "state": vp.state.value,
            "since": self.since(vp),
            "sinceUTC": formatTime(self.since(vp)),
            "registeredAt": vp.connectedAt,
            "resumes": vp.session.resumes,
            "channels": len(vp.session.channels),
            "bytesIn": vp.session.bytesIn,
            "bytesOut": vp.session.bytesOut,
            "messagesIn": vp.session.framesIn,
            "messagesOut": vp.session.framesOut,
        }

    def totals(self, vps: Optional[List[IVantagePoint]] = None) -> Dict[str, Any]:
        """Process totals; the counters include departed vantage points."""
        if vps is None:
            vps = self.controller.vantagePoints()
        sums = dict(self._retired)
        for vp in vps:
            for name in _COUNTERS:
                sums[name] += getattr(vp.session, name)
        connected = sum(1 for vp in vps if vp.state is State.CONNECTED)
        return {
            "vantagePoints": len(vps),
            "connected": connected,
            "zombies": len(vps) - connected,
            "channels": sum(len(vp.session.channels) for vp in vps),
            "arrived": self.arrived,
            "departed": self.departed,
            "bytesIn": sums["bytesIn"],
            "bytesOut": sums["bytesOut"],
            "messagesIn": sums["framesIn"],
            "messagesOut": sums["framesOut"],
        }

    def snapshot(self) -> Dict[str, Any]:
        """Everything C{/status} shows."""
        vps = self.controller.vantagePoints()
        now = self.clock.seconds()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "startedAt": self.startedAt,
            "uptime": now - self.startedAt,
            "now": now,
            "totals": self.totals(vps),
            "vantagePoints": [self.vantagePoint(vp) for vp in vps],
        }


class StatusCollector:
    """
    A C{prometheus_client} collector reading a L{Status} at scrape time.
    Per-VP series carry the labels C{vp} (the socket name), C{monitorname}
    and C{id}.
    """

    def __init__(self, status: Status) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status = self.status
        vps = status.controller.vantagePoints()
        totals = status.totals(vps)
        start = GaugeMetricFamily("sc_remoted_start_time_seconds", "When this sc_remoted started (Unix time).")
        start.add_metric([], status.startedAt)
        yield start
        count = GaugeMetricFamily(
            "sc_remoted_vantage_points", "Vantage points by state (connected or zombie).", labels=["state"]
        )
        count.add_metric(["connected"], totals["connected"])
        count.add_metric(["zombie"], totals["zombies"])
        yield count
        channels = GaugeMetricFamily("sc_remoted_channels_open", "Channels open to all vantage points.")
        channels.add_metric([], totals["channels"])
        yield channels
        for name, key, text in [
            ("sc_remoted_vantage_points_arrived", "arrived", "Vantage points registered (MASTER_NEW)."),
            ("sc_remoted_vantage_points_departed", "departed", "Vantage points freed, expired or replaced."),
            ("sc_remoted_received_bytes", "bytesIn", "Payload bytes received from scamper."),
            ("sc_remoted_sent_bytes", "bytesOut", "Payload bytes of acknowledged messages sent to scamper."),
            ("sc_remoted_received_messages", "messagesIn", "Messages received from scamper."),
            ("sc_remoted_sent_messages", "messagesOut", "Acknowledged messages sent to scamper."),
        ]:
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], totals[key])
            yield counter

        labels = ["vp", "monitorname", "id"]
        perVP: Dict[str, Union[GaugeMetricFamily, CounterMetricFamily]] = {
            "connected": GaugeMetricFamily("sc_remoted_vp_connected", "1 if connected, 0 if a zombie.", labels=labels),
            "since": GaugeMetricFamily(
                "sc_remoted_vp_state_since_seconds", "When it entered its current state (Unix time).", labels=labels
            ),
            "channels": GaugeMetricFamily("sc_remoted_vp_channels_open", "Channels open.", labels=labels),
            "resumes": CounterMetricFamily("sc_remoted_vp_resumes", "Sessions resumed (MASTER_RES).", labels=labels),
            "bytesIn": CounterMetricFamily("sc_remoted_vp_received_bytes", "Payload bytes received.", labels=labels),
            "bytesOut": CounterMetricFamily("sc_remoted_vp_sent_bytes", "Payload bytes sent.", labels=labels),
            "messagesIn": CounterMetricFamily("sc_remoted_vp_received_messages", "Messages received.", labels=labels),
            "messagesOut": CounterMetricFamily("sc_remoted_vp_sent_messages", "Messages sent.", labels=labels),
        }
        for vp in vps:
            values = status.vantagePoint(vp)
            values["connected"] = 1 if values["state"] == "connected" else 0
            labelValues = [vp.name, vp.monitorname or "", str(vp.identifier)]
            for key, family in perVP.items():
                family.add_metric(labelValues, values[key])
        yield from perVP.values()


class StatusPage(Resource):
    """C{/status}: L{Status.snapshot} as JSON."""

    isLeaf = True

    def __init__(self, status: Status) -> None:
        Resource.__init__(self)
        self.status = status

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(self.status.snapshot(), indent=1, sort_keys=True).encode("utf-8") + b"\n"


class MetricsPage(Resource):
    """
    C{/metrics}: the registry in the format the scraper asks for.

    Not C{prometheus_client.twisted.MetricsResource}: that is a WSGI
    resource run in the reactor's thread pool, so the collector would read
    the controller from another thread while the reactor changes it.
    Here the exposition is made on the reactor thread, by
    C{prometheus_client}'s own encoder.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        Resource.__init__(self)
        self.registry = registry

    def render_GET(self, request) -> bytes:
        accept = request.getHeader(b"accept")
        encoder, contentType = choose_encoder(accept.decode("latin-1") if accept else "")
        request.setHeader(b"content-type", contentType.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return encoder(self.registry)


class StatusSite(GuardedSite):
    """
    No access log line per scrape.  C{events} counts the log events
    while the site listens (it is started and stopped with the port).
    Hostile clients are dealt with by L{GuardedSite}
    (L{sc_remoted.httpguard}).
    """

    noisy = False

    def __init__(
        self, resource: Resource, events: Optional[LogEventCounter] = None, reactor: Optional[IReactorTime] = None
    ) -> None:
        GuardedSite.__init__(self, resource, reactor)
        self.events = events

    def startFactory(self) -> None:
        GuardedSite.startFactory(self)
        if self.events is not None:
            self.events.start()

    def stopFactory(self) -> None:
        if self.events is not None:
            self.events.stop()
        GuardedSite.stopFactory(self)

    def log(self, request) -> None:
        pass


def statusResource(status: Status, events: Optional[LogEventCounter] = None) -> Resource:
    """
    The resource tree: C{/status}, C{/metrics} and the HTML page at C{/}.
    The metrics include the controller's limits and, with C{events}, the
    log event counts (L{sc_remoted.opsmetrics}).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    limits = getattr(status.controller, "limits", None)
    if isinstance(limits, Limits):
        registry.register(LimitsCollector(limits))
    if events is not None:
        registry.register(events)
    root = Resource()
    root.putChild(b"", StatusHTMLPage(status.snapshot))
    root.putChild(b"status", StatusPage(status))
    root.putChild(b"metrics", MetricsPage(registry))
    return root


def makeStatusService(controller: IVantagePointRegistry, endpoint: IStreamServerEndpoint) -> ListeningService:
    """The service serving C{/status} and C{/metrics} on C{endpoint}."""
    status = Status(controller)
    events = LogEventCounter()
    site = StatusSite(statusResource(status, events), events, status.clock)
    site.displayTracebacks = False
    service = ListeningService(endpoint, site, what="status requests")
    service.status = status  # type: ignore[attr-defined]
    return service
