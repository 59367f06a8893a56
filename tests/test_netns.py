"""
Real network faults: real scampers in network namespaces of their own,
each behind a veth link (L{tests.netns}), dial our daemon in the root
namespace, which listens on a bare port (every IPv4 and IPv6 address, as
C{--port 31337} does).  The links are cut, renumbered and slowed down
while C{sc_attach} clients measure, and every result must arrive exactly
once.

What the two ends do when the link fails (docs/protocol.rst 2.4, 2.6,
3.7 to 3.9): an outage shorter than both ends' 60-s silence timers is
bridged by TCP alone.  A longer one ends the connection at both ends:
the daemon drops it for silence and keeps a zombie whose socket file is
removed while its clients stay connected; scamper, which dials again at
once after 60 s without input, resumes as soon as its SYN gets through
(or, had its dial failed, 30 to 61 s later).

The long partition costs a minute of waiting, so its two cases (the
same address, and an address changed during the outage) run at once, in
two namespaces.  Skipped unless we are root with scamper, sc_attach,
sc_warts2text and iproute2 installed, and network namespaces can be made.
"""

import os
import shutil
import socket
from typing import Dict, List, Optional, Sequence, Tuple

from twisted.internet import defer, reactor
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from sc_remoted.controller import Controller
from sc_remoted.endpoints import parseAddress
from sc_remoted.lifecycle import State
from sc_remoted.mux.client import MuxClientFactory, MuxClientProtocol, connectMux
from sc_remoted.mux.listen import makeMuxServices
from sc_remoted.service import makeRemotedService

from .netns import NetnsLink, established, makeLink, requireNamespaces
from .realprocs import (
    PortRecordingEndpoint,
    makeSocketsDirectory,
    pingRecords,
    replyCounts,
    sleep,
    sockets,
    spawn,
    waitFor,
    waitForSocket,
    wartsText,
    writeCommands,
)
from .test_real_scamper import InProcessDaemonMixin

# Both ends' silence timer (docs/protocol.rst 2.4, 3.7).
SILENCE = 60.0
# Once the link is back: at once if scamper's SYN is waiting for it,
# 30 to 61 s if its dial had failed (2.6); a little more for slow machines.
RESUME_TIMEOUT = 75.0


def freeBarePort() -> int:
    """A port free on every IPv4 and every IPv6 address a moment ago."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
        return s.getsockname()[1]


Command = Tuple[str, str, int]


def ping(address: str, count: int, interval: str = "1") -> Command:
    """C{(command, destination, replies)} for a C{ping -c COUNT -i INTERVAL ADDRESS}."""
    return ("ping -c %d -i %s %s" % (count, interval, address), address, count)


def pings(prefix: str, counts: Sequence[int], first: int = 1, interval: str = "1") -> List[Command]:
    """
    A L{ping} of each count, to C{prefix.first}, C{prefix.first+1}, ...:
    one destination each, as scamper runs one task per destination at a
    time.
    """
    return [ping("%s.%d" % (prefix, first + i), count, interval) for i, count in enumerate(counts)]


class Client:
    """
    An C{sc_attach -R SOCKET -i cmds -o out.warts}, started at once;
    L{finished} checks that it got every result exactly once.
    """

    def __init__(self, testCase, directory: str, socketName: str, name: str, commands: Sequence[Command]) -> None:
        self.testCase = testCase
        self.commands = commands
        path = writeCommands(directory, name + ".cmds", [command for command, _, _ in commands])
        self.warts = os.path.join(directory, name + ".warts")
        argv = [shutil.which("sc_attach") or "sc_attach", "-R", os.path.join(directory, socketName), "-i", path, "-o", self.warts]
        self.process = spawn(testCase, reactor, argv)

    @defer.inlineCallbacks
    def finished(self, timeout: float):
        """Once it has exited: one ping record per command, each with all its replies."""
        result = yield self.process.wait(timeout)
        self.testCase.assertEqual(result.exitCode, 0, result)
        text = yield wartsText(reactor, self.warts, self.testCase)
        self.testCase.assertEqual(sorted(pingRecords(text)), sorted(address for _, address, _ in self.commands), text)
        self.testCase.assertEqual(replyCounts(text), {address: replies for _, address, replies in self.commands}, text)
        return text


class RecordingMux(MuxClientProtocol):
    """A mux client that keeps every VP_UPDATE and VP_DEPART, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: List[Tuple[str, int, Optional[str]]] = []

    def vantagePointUpdated(self, vp) -> None:
        self.events.append(("update", vp.identifier, vp.ipv4))

    def vantagePointDeparted(self, vp) -> None:
        self.events.append(("depart", vp.identifier, vp.ipv4))


class NetnsDaemonMixin(InProcessDaemonMixin):
    """
    Our daemon in this reactor, listening for scamper on a bare port (two
    listeners, the IPv6 one v6-only, as C{--port PORT} makes them) and,
    with C{mux}, on a mux socket; the log events it emits are kept.
    """

    mux = False

    @defer.inlineCallbacks
    def setUp(self):
        requireNamespaces()
        self.directory = makeSocketsDirectory(self)
        self.controller = Controller(reactor, self.directory, zombieTime=self.zombieTime)
        port = freeBarePort()
        endpoints = [PortRecordingEndpoint(e) for e in parseAddress(str(port)).endpoints(reactor)]
        self.service = makeRemotedService(self.controller, endpoints)
        if self.mux:
            self.muxPath = os.path.join(makeSocketsDirectory(self), "mux")
            for service in makeMuxServices(self.controller, None, self.muxPath):
                service.setServiceParent(self.service)
        self.events: List[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        yield self.service.startService()
        self.addCleanup(self._stopService)
        self.assertEqual([endpoint.port for endpoint in endpoints], [port, port])
        self.port = port

    def logged(self, event: str, since: int = 0, **fields) -> List[dict]:
        """The daemon's C{sc_event=event} log events with those fields."""
        return [
            e
            for e in self.events[since:]
            if e.get("sc_event") == event and all(e.get(key) == value for key, value in fields.items())
        ]

    @defer.inlineCallbacks
    def connectScamper(self, link: NetnsLink, family: int = socket.AF_INET):
        """
        Start scamper in C{link}'s namespace, dialling the root end of the
        link, and fire with its vantage point once its socket exists, named
        after scamper's address and source port as C{ss} there shows them.
        """
        if family == socket.AF_INET6:
            host, target, form = link.address6, "[%s]:%d" % (link.rootAddress6, self.port), "%s.%d"
        else:
            host, target, form = link.address4, "%s:%d" % (link.rootAddress4, self.port), "%s:%d"
        spawn(self, reactor, [*link.prefix(), shutil.which("scamper") or "scamper", "-R", target, "-p", "1000"])
        connection = yield waitFor(
            reactor,
            lambda: next((c for c in established(link.connections(self.port)) if c.local == host), None),
            15,
            "scamper in %s to connect from %s" % (link.namespace, host),
            interval=0.1,
        )
        name = form % (host, connection.localPort)
        yield waitForSocket(reactor, self.directory, 10, name=name)
        (vp,) = [vp for vp in self.controller.vantagePoints() if vp.name == name]
        self.assertEqual((vp.address.host, vp.address.port), (host, connection.localPort))
        return vp

    def channelsOpen(self, vps) -> defer.Deferred:
        return waitFor(reactor, lambda: all(len(vp.session.channels) == 1 for vp in vps), 10, "the clients' channels")


class AddressingTests(NetnsDaemonMixin, TestCase):
    @defer.inlineCallbacks
    def test_socketNamesAndMeasurements(self):
        """
        An IPv4 and an IPv6 scamper in a namespace: their sockets are
        C{ADDR:PORT} and C{ADDR.PORT}, after the namespace's addresses and
        scamper's source ports; pings through each, to the namespace's
        loopback and to the root end of the link, get all their replies.
        """
        link = makeLink(self)
        vp4, vp6 = yield defer.gatherResults(
            [self.connectScamper(link, socket.AF_INET), self.connectScamper(link, socket.AF_INET6)],
            consumeErrors=True,
        )
        self.assertRegex(vp4.name, r"^198\.51\.100\.\d+:\d+$")
        self.assertEqual(vp4.name.rsplit(":", 1)[0], link.address4)
        self.assertRegex(vp6.name, r"^2001:db8:1234:([0-9a-f]+:)?:1\.\d+$")
        self.assertEqual(vp6.name.rsplit(".", 1)[0], link.address6)
        self.assertEqual(sorted(sockets(self.directory)), sorted([vp4.name, vp6.name]))
        clients = [
            Client(self, self.directory, vp4.name, "v4", [ping("127.0.0.1", 3), ping(link.rootAddress4, 2)]),
            Client(self, self.directory, vp6.name, "v6", [ping("127.0.0.2", 2), ping(link.rootAddress6, 2)]),
        ]
        yield defer.gatherResults([client.finished(30) for client in clients], consumeErrors=True)

    test_socketNamesAndMeasurements.timeout = 60  # type: ignore[attr-defined]


class OutageTests(NetnsDaemonMixin, TestCase):
    @defer.inlineCallbacks
    def test_shortOutage(self):
        """
        The link is down for 10 s while an IPv4 and an IPv6 scamper each
        run pings that end one a second: nothing crosses while it is down
        (scamper's TCP retransmits), and TCP alone bridges the gap: the same
        connections and sockets, no resume, no zombie; each client gets
        every result exactly once.
        """
        link = makeLink(self)
        vps = yield defer.gatherResults(
            [self.connectScamper(link, socket.AF_INET), self.connectScamper(link, socket.AF_INET6)],
            consumeErrors=True,
        )
        before = [(vp.connection, vp.name, vp.session.resumes) for vp in vps]
        tuples = sorted((c.local, c.localPort) for c in established(link.connections(self.port)))
        clients = [
            Client(self, self.directory, vp.name, "c%d" % (n,), pings("127.0.%d" % (n,), range(1, 17)))
            for n, vp in enumerate(vps)
        ]
        yield self.channelsOpen(vps)
        since = len(self.events)
        yield sleep(reactor, 3.5)
        link.down()
        downAt = reactor.seconds()
        yield sleep(reactor, 10)
        heard = [vp.connection.link.lastReceived for vp in vps]
        link.up()
        for vp, last in zip(vps, heard):
            self.assertLess(last, downAt + 0.5, "%s: heard from scamper while the link was down" % (vp.name,))
        yield defer.gatherResults([client.finished(60) for client in clients], consumeErrors=True)
        self.assertEqual([(vp.connection, vp.name, vp.session.resumes) for vp in vps], before)
        self.assertEqual(sorted(sockets(self.directory)), sorted(vp.name for vp in vps))
        after = link.connections(self.port)
        self.assertEqual(sorted((c.local, c.localPort) for c in established(after)), tuples)
        self.assertTrue(all(c.retransmitted for c in after), after)
        for event in ("scamper.silent", "vp.zombie", "scamper.connected", "vp.resumed"):
            self.assertEqual(self.logged(event, since), [])

    test_shortOutage.timeout = 90  # type: ignore[attr-defined]


class PartitionTests(NetnsDaemonMixin, TestCase):
    mux = True

    @defer.inlineCallbacks
    def partition(self, link: NetnsLink, vp, client: Client, newAddress: Optional[str] = None):
        """
        Cut C{link} (and renumber its namespace, with C{newAddress}) until
        the daemon has dropped the connection for silence and scamper has
        dialled again; then restore it and wait for the resume.  Checks the
        zombie on the way; fires with the timings.
        """
        before = vp.name
        link.down()
        downAt = reactor.seconds()
        lastHeard = vp.connection.link.lastReceived
        if newAddress is not None:
            link.changeAddress(newAddress)
        yield waitFor(reactor, lambda: vp.connection is None, SILENCE + 10, "the daemon to drop %s" % (before,), interval=0.1)
        droppedAt = reactor.seconds()
        self.assertTrue(SILENCE - 0.5 <= droppedAt - lastHeard <= SILENCE + 3, droppedAt - lastHeard)
        self.assertEqual(len(self.logged("scamper.silent", peer=before)), 1)
        self.assertIs(vp.state, State.ZOMBIE)
        self.assertIn(vp, self.controller.vantagePoints())
        yield sleep(reactor, 0.2)
        self.assertNotIn(before, sockets(self.directory))
        # The zombie's client stays connected, its channel kept (3.8).
        self.assertTrue(client.process.running, client.process.output())
        self.assertEqual(len(vp.session.channels), 1)
        # scamper gives up 60 s after its own last read and dials again at
        # once (2.4); its SYN waits for the link.  (Had its dial failed, it
        # would try again 30 to 61 s later, which the resume still awaits.)
        try:
            yield waitFor(
                reactor,
                lambda: [c for c in link.connections(self.port) if c.state == "SYN-SENT"],
                20,
                "scamper to dial again",
                interval=0.1,
            )
        except AssertionError:
            pass
        link.up()
        upAt = reactor.seconds()
        yield waitFor(
            reactor,
            lambda: vp.session.resumes == 1 and vp.connection is not None,
            RESUME_TIMEOUT,
            "scamper to resume %s" % (before,),
            interval=0.1,
        )
        resumedAt = reactor.seconds()
        self.assertEqual(vp.address.host, link.address4)
        self.assertNotEqual(vp.name, before)
        yield waitForSocket(reactor, self.directory, 5, name=vp.name)
        self.assertNotIn(before, sockets(self.directory))
        self.assertTrue(client.process.running, client.process.output())
        return {"dropped": droppedAt - downAt, "down": upAt - downAt, "resumed": resumedAt - upAt}

    @defer.inlineCallbacks
    def test_longPartitionAndAddressChange(self):
        """
        Two links are down for over 60 s, one namespace renumbered
        meanwhile.  The daemon drops each connection after 60 s of silence,
        keeps a zombie and removes its socket; the clients stay connected.
        When the link is back scamper resumes, from the same address or the
        new one; each socket comes back under its new name, the old one
        gone; the mux announces the renumbered vantage point again with its
        new address (and the other not at all); every result, including
        those of the pings that ended during the partition, arrives once.
        """
        same, renumbered = makeLink(self), makeLink(self)
        vps = yield defer.gatherResults([self.connectScamper(same), self.connectScamper(renumbered)], consumeErrors=True)
        mux = yield connectMux(UNIXClientEndpoint(reactor, self.muxPath), MuxClientFactory.forProtocol(RecordingMux))
        self.addCleanup(mux.close)
        oldAddress = renumbered.address4
        # Results before the cut (at 1 s), during it (15 s: the cut is from
        # 3 s to about 62 s) and after the resume (68 s).
        clients = [
            Client(self, self.directory, vp.name, "c%d" % (n,), pings("127.0.%d" % (n,), [1, 15, 68]))
            for n, vp in enumerate(vps)
        ]
        yield self.channelsOpen(vps)
        yield sleep(reactor, 3)
        timings: List[Dict[str, float]] = yield defer.gatherResults(
            [
                self.partition(same, vps[0], clients[0]),
                self.partition(renumbered, vps[1], clients[1], renumbered.spareAddress4()),
            ],
            consumeErrors=True,
        )
        self.assertEqual(vps[0].address.host, same.address4)
        self.assertEqual(vps[1].name.rsplit(":", 1)[0], renumbered.spareAddress4())
        self.assertEqual(sorted(sockets(self.directory)), sorted(vp.name for vp in vps))
        yield defer.gatherResults([client.finished(90) for client in clients], consumeErrors=True)
        for vp in vps:
            self.assertEqual((vp.session.resumes, vp.session.unacked), (1, 0))
        first, second = vps[0].identifier, vps[1].identifier
        self.assertEqual([e for e in mux.events if e[1] == first], [("update", first, same.address4)])
        self.assertEqual(
            [e for e in mux.events if e[1] == second],
            [("update", second, oldAddress), ("depart", second, oldAddress), ("update", second, renumbered.address4)],
        )
        for timing in timings:
            self.assertLess(timing["resumed"], RESUME_TIMEOUT)

    test_longPartitionAndAddressChange.timeout = 240  # type: ignore[attr-defined]


class RateLimitTests(NetnsDaemonMixin, TestCase):
    RATE = 256000  # bits per second
    BURST = 4096  # bytes

    @defer.inlineCallbacks
    def test_slowLink(self):
        """
        A token bucket of 256 kbit/s on what leaves the namespace, and 200
        pings that take about a second together (2 s in all without the
        bucket) but make some 135 kB on the wire: the link is the
        bottleneck (the bucket ran dry; the run took at least the bytes
        over the rate, over 4 s) and every result arrives, exactly once.
        """
        link = makeLink(self)
        vp = yield self.connectScamper(link)
        link.limitRate("%dbit" % (self.RATE,), "%d" % (self.BURST,), "10s")
        start = reactor.seconds()
        commands = pings("127.0.1", [5] * 200, interval="0.2")
        client = Client(self, self.directory, vp.name, "slow", commands)
        yield client.finished(60)
        elapsed = reactor.seconds() - start
        statistics = link.qdiscStatistics()
        needed = (statistics["sent"] - self.BURST) * 8.0 / self.RATE
        self.assertGreater(statistics["overlimits"], 0, statistics)
        self.assertGreater(needed, 3.0, statistics)
        self.assertGreaterEqual(elapsed, needed, statistics)
        self.assertEqual(vp.session.resumes, 0)

    test_slowLink.timeout = 60  # type: ignore[attr-defined]
