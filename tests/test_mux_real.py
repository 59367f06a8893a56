"""
The mux with real programs and real sockets: Debian's C{scamper -R}
connects to our daemon (in this reactor, with no sockets directory: mux
only), and our Twisted mux client lists it with its metadata and measures
through it, over the UNIX socket, over TCP, and over TLS with client
certificates.  The scamper tests are skipped unless scamper is installed
and we are root.
"""

import binascii
import os

from twisted.internet import defer, reactor
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    UNIXClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.trial.unittest import TestCase

from sc_remoted.controller import Controller
from sc_remoted.mux.client import clientTLSOptions, connectMux
from sc_remoted.mux.listen import makeMuxServices, muxTLS
from sc_remoted.mux.metadata import Metadata
from sc_remoted.service import makeRemotedService
from sc_remoted.tls import ReloadableServerTLS, TLSFiles

from .certs import CertificateAuthority, writeFile
from .realprocs import (
    LOOPBACK,
    PortRecordingEndpoint,
    makeSocketsDirectory,
    replyCounts,
    requireRealScamper,
    runToCompletion,
    sleep,
    startScamper,
    waitFor,
)

META = "vpA cc NZ\nvpA place Hamilton\nvpA tag test-vp\nvpB shortname bee\n"


def wartsFromChannel(data: bytes) -> bytes:
    """
    The warts bytes in a channel's text: every C{DATA <len> [id-N]} line
    is followed by C{len} bytes of uuencoded lines.
    """
    out = bytearray()
    lines = data.split(b"\n")
    i = 0
    while i < len(lines):
        words = lines[i].split()
        i += 1
        if words[:1] != [b"DATA"]:
            continue
        left = int(words[1])
        while left > 0 and i < len(lines):
            out += binascii.a2b_uu(lines[i])
            left -= len(lines[i]) + 1
            i += 1
    return bytes(out)


class ChannelCollector(Protocol):
    """A mux channel's protocol: keeps what scamper sends, knows when it ended."""

    def __init__(self):
        self.data = b""
        self.ended = defer.Deferred()

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.reason = reason
        self.ended.callback(None)


class MuxDaemonMixin:
    """
    Our daemon on a free port of 127.0.0.1, mux only: the UNIX socket and
    a TCP port (TLS with client certificates when C{self.tls}).
    """

    tls = None

    @defer.inlineCallbacks
    def startDaemon(self):
        self.directory = makeSocketsDirectory(self)
        metaPath = os.path.join(self.directory, "meta")
        with open(metaPath, "w") as f:
            f.write(META)
        self.controller = Controller(reactor, None)
        scamperEndpoint = PortRecordingEndpoint(TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK))
        self.service = makeRemotedService(self.controller, [scamperEndpoint])
        self.muxPath = os.path.join(self.directory, "mux")
        muxEndpoint = PortRecordingEndpoint(TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK))
        for service in makeMuxServices(
            self.controller, Metadata(metaPath), self.muxPath, 0o700, [muxEndpoint], self.tls
        ):
            service.setServiceParent(self.service)
        yield self.service.privilegedStartService()
        yield self.service.startService()
        self.addCleanup(self._stopDaemon)
        self.port = scamperEndpoint.port
        self.muxPort = muxEndpoint.port
        self.muxes = []

    @defer.inlineCallbacks
    def _stopDaemon(self):
        for mux in self.muxes:
            if mux.lostReason is None:
                yield mux.close()
        yield self.service.stopService()
        yield sleep(reactor, 0.1)

    @defer.inlineCallbacks
    def connect(self, endpoint):
        mux = yield connectMux(endpoint)
        self.muxes.append(mux)
        return mux

    @defer.inlineCallbacks
    def measure(self, mux, vp, command):
        """Run C{command}, then C{done}; the warts file's text once scamper closes the channel."""
        collector = ChannelCollector()
        transport = mux.openChannel(vp, collector)
        transport.write(command.encode() + b"\n")
        transport.loseConnection()  # "done": scamper finishes the channel when the ping is over
        yield waitFor(reactor, lambda: collector.ended.called, 30, "the channel to close")
        warts = os.path.join(self.directory, "%s-%d.warts" % (vp.identifier, transport.channel))
        with open(warts, "wb") as f:
            f.write(wartsFromChannel(collector.data))
        result = yield runToCompletion(reactor, ["sc_warts2text", warts], 30, self)
        self.assertEqual(result.exitCode, 0, result)
        return result.out.decode("utf-8", "replace"), collector.data


class RealScamperMuxTests(MuxDaemonMixin, TestCase):
    def setUp(self):
        requireRealScamper()
        return self.startDaemon()

    @defer.inlineCallbacks
    def test_pingThroughMuxSocket(self):
        """
        A real scamper with C{-M vpA} is listed on the mux socket with its
        metadata; C{ping -c 3 127.0.0.1} on a channel brings three replies.
        """
        startScamper(self, reactor, self.port, "vpA")
        mux = yield self.connect(UNIXClientEndpoint(reactor, self.muxPath))
        vp = yield mux.waitForVantagePoint("vpA")
        self.assertEqual(vp.identifier, 1)
        self.assertEqual((vp.name, vp.ipv4, vp.cc, vp.place, vp.tags), ("vpA", "127.0.0.1", "NZ", "Hamilton", ("test-vp",)))
        self.assertRegex(vp.arrival, r"^\d+\.\d{6}$")
        text, raw = yield self.measure(mux, vp, "ping -c 3 127.0.0.1")
        self.assertIn(b"DATA ", raw)
        self.assertEqual(replyCounts(text), {"127.0.0.1": 3}, text)
        self.assertEqual(text.count("bytes from 127.0.0.1"), 3, text)

    test_pingThroughMuxSocket.timeout = 60  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_twoVantagePointsAtOnceOverTCP(self):
        """Two scampers, listed over the TCP mux port; channels to both at once."""
        startScamper(self, reactor, self.port, "vpA")
        startScamper(self, reactor, self.port, "vpB")
        mux = yield self.connect(TCP4ClientEndpoint(reactor, LOOPBACK, self.muxPort))
        a = yield mux.waitForVantagePoint("vpA")
        b = yield mux.waitForVantagePoint("bee")
        self.assertEqual(sorted([a.identifier, b.identifier]), [1, 2])
        (textA, _), (textB, _) = yield defer.gatherResults(
            [self.measure(mux, a, "ping -c 3 127.0.0.1"), self.measure(mux, b, "ping -c 2 127.0.0.2")]
        )
        self.assertEqual(replyCounts(textA), {"127.0.0.1": 3}, textA)
        self.assertEqual(replyCounts(textB), {"127.0.0.2": 2}, textB)

    test_twoVantagePointsAtOnceOverTCP.timeout = 60  # type: ignore[attr-defined]


class TLSMuxTests(MuxDaemonMixin, TestCase):
    """The TCP mux port in TLS, with client certificates required."""

    def setUp(self):
        self.certs = makeSocketsDirectory(self)
        self.authority = CertificateAuthority("server CA")
        self.caPath = os.path.join(self.certs, "ca.crt")
        writeFile(self.caPath, self.authority.certificatePEM())
        certPath, keyPath = self.authority.issue("localhost", ["localhost"]).write(self.certs, "server")
        self.clientAuthority = CertificateAuthority("mux client CA")
        self.clientCAPath = os.path.join(self.certs, "clients.crt")
        writeFile(self.clientCAPath, self.clientAuthority.certificatePEM())
        self.tls = muxTLS(ReloadableServerTLS(TLSFiles(certPath, keyPath)), self.clientCAPath)
        return self.startDaemon()

    def endpoint(self, authority=None):
        """The README's recipe; without a client certificate when C{authority} is None."""
        if authority is None:
            options = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(self.authority.certificatePEM()))
        else:
            issued = authority.issue("analysis.example", client=True)
            certificatePath, keyPath = issued.write(makeSocketsDirectory(self), "client")
            options = clientTLSOptions("localhost", self.caPath, certificatePath, keyPath)
        return wrapClientTLS(options, TCP4ClientEndpoint(reactor, LOOPBACK, self.muxPort))

    @defer.inlineCallbacks
    def test_clientCertificate(self):
        """With a certificate from the mux client CA: GO, then the VPs."""
        mux = yield self.connect(self.endpoint(self.clientAuthority))
        self.assertTrue(mux.gotGo)
        self.assertEqual(mux.listVantagePoints(), [])

    test_clientCertificate.timeout = 20  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_noOrWrongCertificateRefused(self):
        """No client certificate, or one another CA signed: no GO, the connection ends."""
        for authority in (None, CertificateAuthority("stranger")):
            try:
                mux = yield connectMux(self.endpoint(authority))
            except Exception:
                continue
            self.muxes.append(mux)
            self.fail("a mux client without a good certificate got GO")

    test_noOrWrongCertificateRefused.timeout = 20  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_pingOverTLS(self):
        requireRealScamper()
        startScamper(self, reactor, self.port, "vpA")
        mux = yield self.connect(self.endpoint(self.clientAuthority))
        vp = yield mux.waitForVantagePoint("vpA")
        text, _ = yield self.measure(mux, vp, "ping -c 3 127.0.0.1")
        self.assertEqual(replyCounts(text), {"127.0.0.1": 3}, text)

    test_pingOverTLS.timeout = 60  # type: ignore[attr-defined]


class MuxSocketFileTests(MuxDaemonMixin, TestCase):
    """The mux socket file: mode, stale file removal, live one refused."""

    def test_modeAndStale(self):
        import socket as socketModule

        from sc_remoted.sockets import PathTaken, clearStaleSocket

        directory = makeSocketsDirectory(self)
        path = os.path.join(directory, "mux")
        stale = socketModule.socket(socketModule.AF_UNIX)
        stale.bind(path)
        stale.close()
        self.assertTrue(clearStaleSocket(path))
        self.assertFalse(os.path.exists(path))
        live = socketModule.socket(socketModule.AF_UNIX)
        live.bind(path)
        live.listen(1)
        self.addCleanup(live.close)
        self.assertRaises(PathTaken, clearStaleSocket, path)
        other = os.path.join(directory, "file")
        open(other, "w").close()
        self.assertRaises(PathTaken, clearStaleSocket, other)

    @defer.inlineCallbacks
    def test_socketMode(self):
        import stat

        yield self.startDaemon()
        self.assertEqual(stat.S_IMODE(os.stat(self.muxPath).st_mode), 0o700)
