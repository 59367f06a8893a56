"""
Tests for TLS on the scamper port (L{sc_remoted.tls}): loading the files
and the passphrase, the command line, reloads, client-certificate names,
and whole sessions over TLS on 127.0.0.1, in process and through a real
C{twistd} (for SIGHUP and the passphrase prompt on a terminal).

Certificates are made at test time (L{tests.certs}).  The TLS client here
plays scamper: no SNI, the CA of C{-O cafile=}, optionally a client
certificate.
"""

import os
import pty
import select
import shutil
import signal
import sys
import sysconfig
import tempfile
import time
from typing import List, Optional

from OpenSSL import SSL
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    UNIXClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.error import ConnectError, ConnectionClosed, ConnectionDone
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, globalLogPublisher
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer

import sc_remoted
from sc_remoted.controller import Controller
from sc_remoted.naming import socketName
from sc_remoted.engine import REGISTRATION_TIMEOUT
from sc_remoted.service import SighupService, makeRemotedService
from sc_remoted.tap import Options, makeService
from sc_remoted.tls import (
    ClientNameCheck,
    ReloadableServerTLS,
    TLSConfigError,
    TLSFiles,
    clientNameProblem,
    loadServerTLS,
    nameMatches,
)

from .certs import CertificateAuthority, writeFile
from .fakes import SocketsReactor
from .peer import ScamperPeer
from .peer_twisted import PeerProtocol

LOOPBACK = "127.0.0.1"
PASSPHRASE = b"correct horse"
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(sc_remoted.__file__)))


def _tempDirectory(testCase) -> str:
    """Short (UNIX socket paths are limited), private, removed afterwards."""
    directory = tempfile.mkdtemp(dir="/tmp", prefix="sctls")
    testCase.addCleanup(shutil.rmtree, directory, True)
    return directory


def _events(events, name: str) -> list:
    return [e for e in events if e.get("sc_event") == name]


# Name matching ----------------------------------------------------------


class NameMatchTests(SynchronousTestCase):
    def test_exactIgnoresCase(self):
        self.assertTrue(nameMatches("vp1.example.net", "vp1.example.net"))
        self.assertTrue(nameMatches("VP1.Example.NET", "vp1.example.net"))
        self.assertTrue(nameMatches("vp1.example.net", "VP1.EXAMPLE.NET"))
        self.assertFalse(nameMatches("vp1.example.net", "vp2.example.net"))
        self.assertFalse(nameMatches("vp1.example", "vp1.example.net"))

    def test_wildcardOneLabel(self):
        self.assertTrue(nameMatches("vp1.example.net", "*.example.net"))
        self.assertTrue(nameMatches("VP1.EXAMPLE.net", "*.Example.NET"))
        self.assertFalse(nameMatches("a.vp1.example.net", "*.example.net"))
        self.assertFalse(nameMatches("example.net", "*.example.net"))
        self.assertFalse(nameMatches(".example.net", "*.example.net"))
        self.assertFalse(nameMatches("vp1.example.org", "*.example.net"))

    def test_wildcardOnlyLeading(self):
        """Only a whole leading C{*.} label is a wildcard."""
        self.assertFalse(nameMatches("vp1.example.net", "vp*.example.net"))
        self.assertFalse(nameMatches("vp1.example.net", "vp1.*.net"))
        self.assertFalse(nameMatches("vp1.example.net", "*"))
        self.assertFalse(nameMatches("a.b", "*."))
        self.assertFalse(nameMatches("*.example.net", "vp1.example.net"))

    def test_certificateNames(self):
        ca = CertificateAuthority()
        san = ca.issue("ignored.example.net", ["vp1.example.net", "*.pool.example.net"], client=True)
        cnOnly = ca.issue("VP2.example.net", client=True)
        noNames = ca.issue(None, ["vp3.example.net"], client=True)
        self.assertIsNone(clientNameProblem(san.certificate, "vp1.example.net"))
        self.assertIsNone(clientNameProblem(san.certificate, "x.pool.example.net"))
        # The subject CN is accepted as well as the SAN names, as upstream.
        self.assertIsNone(clientNameProblem(san.certificate, "ignored.example.net"))
        self.assertIsNone(clientNameProblem(cnOnly.certificate, "vp2.EXAMPLE.net"))
        self.assertIsNone(clientNameProblem(noNames.certificate, "vp3.example.net"))
        problem = clientNameProblem(san.certificate, "vp9.example.net")
        self.assertIn("vp9.example.net", problem)
        self.assertIn("vp1.example.net", problem)
        self.assertIn("no monitorname", clientNameProblem(san.certificate, None))
        self.assertIn("no client certificate", clientNameProblem(None, "vp1.example.net"))


# Files, passphrases, the command line -----------------------------------


class Files:
    """A CA, a server certificate and key, and a second, unrelated key."""

    def __init__(self, testCase, passphrase: Optional[bytes] = None) -> None:
        self.directory = _tempDirectory(testCase)
        self.ca = CertificateAuthority()
        self.caPath = os.path.join(self.directory, "ca.crt")
        writeFile(self.caPath, self.ca.certificatePEM())
        self.server = self.ca.issue("controller.example.net", ["controller.example.net"])
        self.certPath, self.keyPath = self.server.write(self.directory, "server", passphrase)
        other = self.ca.issue("other.example.net", ["other.example.net"])
        self.otherCertPath, self.otherKeyPath = other.write(self.directory, "other", passphrase)
        self.other = other
        self.passphrasePath = os.path.join(self.directory, "passphrase")
        writeFile(self.passphrasePath, (passphrase or b"") + b"\n", mode=0o600)


class LoadingTests(SynchronousTestCase):
    def test_plainKey(self):
        files = Files(self)
        tls = loadServerTLS(files.certPath, files.keyPath, prompt=self.fail)
        self.assertIsInstance(tls.context, SSL.Context)
        self.assertEqual(tls.files.certificate, files.server.certificate)

    def test_passphraseFile(self):
        files = Files(self, PASSPHRASE)
        tls = loadServerTLS(files.certPath, files.keyPath, passphraseFile=files.passphrasePath, prompt=self.fail)
        self.assertEqual(tls.files.passphrase, PASSPHRASE)

    def test_promptOnlyForEncryptedKey(self):
        files = Files(self, PASSPHRASE)
        asked = []

        def prompt(path):
            asked.append(path)
            return PASSPHRASE

        loadServerTLS(files.certPath, files.keyPath, prompt=prompt)
        self.assertEqual(asked, [files.keyPath])

    def test_wrongPassphrase(self):
        files = Files(self, PASSPHRASE)
        with self.assertRaises(TLSConfigError) as caught:
            loadServerTLS(files.certPath, files.keyPath, prompt=lambda path: b"wrong")
        self.assertEqual(str(caught.exception), "wrong passphrase for private key %s" % (files.keyPath,))

    def test_mismatchedKey(self):
        files = Files(self)
        with self.assertRaises(TLSConfigError) as caught:
            loadServerTLS(files.certPath, files.otherKeyPath)
        self.assertEqual(
            str(caught.exception),
            "private key %s does not match certificate %s" % (files.otherKeyPath, files.certPath),
        )

    def test_unreadableAndMalformed(self):
        files = Files(self)
        missing = os.path.join(files.directory, "missing.pem")
        garbage = os.path.join(files.directory, "garbage.pem")
        writeFile(garbage, b"not PEM at all\n")
        for args, message in [
            ((missing, files.keyPath), "cannot read certificate file %s: No such file or directory" % (missing,)),
            ((files.certPath, missing), "cannot read private key file %s" % (missing,)),
            ((garbage, files.keyPath), "certificate file %s holds no PEM certificate" % (garbage,)),
            ((files.certPath, garbage), "private key file %s holds no usable PEM private key" % (garbage,)),
            ((files.certPath, files.keyPath, garbage), "CA file %s holds no PEM certificate" % (garbage,)),
        ]:
            with self.assertRaises(TLSConfigError, msg=args) as caught:
                loadServerTLS(*args)
            self.assertIn(message, str(caught.exception))
            self.assertNotIn("\n", str(caught.exception))

    def test_reloadKeepsPreviousOnFailure(self):
        files = Files(self, PASSPHRASE)
        tls = loadServerTLS(files.certPath, files.keyPath, passphraseFile=files.passphrasePath)
        first = tls.context
        writeFile(files.certPath, b"garbage")
        with capturedLogs() as events:
            self.assertFalse(tls.reload())
        self.assertIs(tls.context, first)
        [failed] = _events(events, "tls.reload_failed")
        self.assertIn(files.certPath, failed["reason"])
        # The mismatched key is refused too.
        writeFile(files.certPath, files.other.certificatePEM())
        with capturedLogs() as events:
            self.assertFalse(tls.reload())
        self.assertIs(tls.context, first)
        self.assertIn("does not match", _events(events, "tls.reload_failed")[0]["reason"])
        # Once both files are replaced, the reload (reusing the passphrase) works.
        writeFile(files.keyPath, files.other.keyPEM(PASSPHRASE))
        os.remove(files.passphrasePath)
        with capturedLogs() as events:
            self.assertTrue(tls.reload())
        self.assertIsNot(tls.context, first)
        self.assertEqual(tls.files.certificate, files.other.certificate)
        self.assertEqual(len(_events(events, "tls.reloaded")), 1)


class OptionsTests(SynchronousTestCase):
    def setUp(self):
        self.files = Files(self, PASSPHRASE)
        self.sockets = _tempDirectory(self)

    def parse(self, *extra):
        options = Options()
        options.parseOptions(["--port", "127.0.0.1:31337", "--sockets", self.sockets, *extra])
        return options

    def assertUsage(self, message, *extra):
        with self.assertRaises(UsageError) as caught:
            self.parse(*extra)
        self.assertIn(message, str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))

    def test_noTLS(self):
        options = self.parse()
        self.assertIsNone(options["tls"])

    def test_pairs(self):
        f = self.files
        self.assertUsage("--tls-cert and --tls-key must be given together", "--tls-cert", f.certPath)
        self.assertUsage("--tls-cert and --tls-key must be given together", "--tls-key", f.keyPath)
        self.assertUsage("--tls-ca needs --tls-cert and --tls-key", "--tls-ca", f.caPath)
        self.assertUsage("--tls-passphrase-file needs", "--tls-passphrase-file", f.passphrasePath)
        self.assertUsage("--skip-name-verification needs", "--skip-name-verification")
        self.assertUsage(
            "--skip-name-verification applies only with --tls-ca",
            "-c", f.certPath, "-p", f.keyPath, "--tls-passphrase-file", f.passphrasePath,
            "--skip-name-verification",
        )

    def test_errorsAreUsageErrors(self):
        f = self.files
        wrong = os.path.join(f.directory, "wrong")
        writeFile(wrong, b"nope\n")
        self.assertUsage("wrong passphrase for private key", "-c", f.certPath, "-p", f.keyPath,
                         "--tls-passphrase-file", wrong)
        self.assertUsage("does not match certificate", "-c", f.certPath, "-p", f.otherKeyPath,
                         "--tls-passphrase-file", f.passphrasePath)
        self.assertUsage("cannot read passphrase file", "-c", f.certPath, "-p", f.keyPath,
                         "--tls-passphrase-file", wrong + "-missing")

    def test_service(self):
        """
        makeService wraps the listeners in TLS, gives SIGHUP the reload,
        and checks names only with --tls-ca and without
        --skip-name-verification.
        """
        f = self.files
        base = ["--tls-cert", f.certPath, "--tls-key", f.keyPath, "--tls-passphrase-file", f.passphrasePath]
        options = self.parse(*base)
        self.assertIsInstance(options["tls"], ReloadableServerTLS)
        top = makeService(options)
        controller = next(iter(top)).controller
        self.assertIsNone(controller.clientNameCheck)
        [sighup] = [s for s in top if isinstance(s, SighupService)]
        self.assertEqual(sighup._reload, options["tls"].reload)
        withCA = makeService(self.parse(*base, "--tls-ca", f.caPath))
        self.assertIsInstance(next(iter(withCA)).controller.clientNameCheck, ClientNameCheck)
        skipping = makeService(self.parse(*base, "--tls-ca", f.caPath, "--skip-name-verification"))
        self.assertIsNone(next(iter(skipping)).controller.clientNameCheck)

    def test_relativePaths(self):
        """The files are found again on reload even if the directory changes."""
        f = self.files
        cwd = os.getcwd()
        os.chdir(f.directory)
        try:
            options = self.parse("-c", "server.crt", "-p", "server.key", "--tls-passphrase-file", "passphrase")
        finally:
            os.chdir(cwd)
        self.assertEqual(options["tls"].files.certificatePath, f.certPath)
        self.assertTrue(options["tls"].reload())


class SighupTests(SynchronousTestCase):
    def test_reloadOnReactorThreadAndChain(self):
        """
        SIGHUP schedules the reload with callFromThread and still calls
        the handler that was installed before.
        """
        calls = []
        previous = signal.signal(signal.SIGHUP, lambda signum, frame: calls.append("previous"))
        self.addCleanup(signal.signal, signal.SIGHUP, previous)

        class Reactor:
            def callFromThread(self, f, *args):
                calls.append(("callFromThread", f))

        def reload():
            calls.append("reload")

        service = SighupService(reload, Reactor())
        service.startService()
        self.addCleanup(service.stopService)
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):  # the Python-level handler runs between bytecodes
            if calls:
                break
            time.sleep(0.01)
        self.assertEqual(calls, [("callFromThread", reload), "previous"])


# The TLS layer with a fake clock -----------------------------------------


class MemoryTLSTests(SynchronousTestCase):
    def setUp(self):
        files = Files(self)
        self.tls = loadServerTLS(files.certPath, files.keyPath)
        self.reactor = SocketsReactor()
        self.controller = Controller(self.reactor, "/sockets")
        factory = self.tls.wrapFactory(self.controller.scamperFactory(), self.reactor)
        peer = IPv4Address("TCP", "192.0.2.7", 40000)
        self.transport = StringTransport(peerAddress=peer)
        self.protocol = factory.buildProtocol(peer)
        self.protocol.makeConnection(self.transport)

    def test_slowHandshake(self):
        """A client that never completes the handshake meets the registration deadline."""
        self.reactor.advance(REGISTRATION_TIMEOUT - 1)
        self.assertFalse(self.transport.disconnecting)
        with capturedLogs() as events:
            self.reactor.advance(1)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(_events(events, "scamper.registration_timeout")), 1)

    def test_plaintextLoggedOnce(self):
        with capturedLogs() as events:
            self.protocol.dataReceived(ScamperPeer(b"magic", "vp1").masterNew())
            self.assertTrue(self.transport.disconnecting)
            self.protocol.connectionLost(Failure(ConnectionDone()))
        [failed] = _events(events, "tls.handshake_failed")
        self.assertEqual(failed["peer"], "192.0.2.7:40000")
        self.assertTrue(failed["reason"])
        self.assertEqual(self.reactor.socketNames(), [])


# Sessions over TLS on 127.0.0.1 -----------------------------------------


@implementer(IOpenSSLClientConnectionCreator)
class ScamperClientTLS:
    """
    TLS as scamper does it: no SNI, the server certificate verified
    against C{caPath}, an optional client certificate.
    """

    def __init__(self, caPath, certPath=None, keyPath=None, maxVersion=None) -> None:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        if maxVersion is not None:
            context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
            context.set_min_proto_version(0)
            context.set_max_proto_version(maxVersion)
        context.load_verify_locations(caPath)
        context.set_verify(SSL.VERIFY_PEER)
        if certPath is not None:
            context.use_certificate_chain_file(certPath)
            context.use_privatekey_file(keyPath)
        self.context = context

    def clientConnectionForTLS(self, tlsProtocol):
        connection = SSL.Connection(self.context, None)
        connection.set_connect_state()
        return connection


def FakeScamper(magic: bytes = b"magic-1", monitorname: Optional[str] = None) -> PeerProtocol:
    """
    A scamper's side of a session (L{tests.peer.ScamperPeer}): MASTER_NEW
    on connect, every acked frame acknowledged, each channel's data kept;
    C{serverCertificate} is the daemon's once the handshake is done.
    """
    return PeerProtocol(ScamperPeer(magic, monitorname))


class LocalClient(Protocol):
    """A local program on a vantage point's UNIX socket."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = defer.Deferred()
        self._waiters: List[tuple] = []

    def dataReceived(self, data):
        self.received += data
        for waiter in list(self._waiters):
            if waiter[0] in self.received:
                self._waiters.remove(waiter)
                waiter[1].callback(None)

    def waitFor(self, needle: bytes) -> defer.Deferred:
        d = defer.Deferred()
        self._waiters.append((needle, d))
        self.dataReceived(b"")
        return d

    def connectionLost(self, reason):
        self.lost.callback(None)


@implementer(IStreamServerEndpoint)
class RecordingEndpoint:
    """A server endpoint that remembers the port it listened on."""

    def __init__(self, endpoint) -> None:
        self._endpoint = endpoint
        self.port = None

    def listen(self, factory):
        def listening(port):
            self.port = port
            return port

        return self._endpoint.listen(factory).addCallback(listening)


def _timeout(d: defer.Deferred, seconds: float = 10) -> defer.Deferred:
    from twisted.internet import reactor

    return d.addTimeout(seconds, reactor)


class Events:
    """Log events with an C{sc_event}, collected while a test runs."""

    def __init__(self, testCase) -> None:
        self.events: list = []
        self._waiters: List[tuple] = []
        globalLogPublisher.addObserver(self._observe)
        testCase.addCleanup(globalLogPublisher.removeObserver, self._observe)

    def _observe(self, event):
        if "sc_event" in event:
            self.events.append(event)
            for waiter in list(self._waiters):
                if waiter[0] == event["sc_event"]:
                    self._waiters.remove(waiter)
                    waiter[1].callback(event)

    def named(self, name: str) -> list:
        return _events(self.events, name)

    def waitFor(self, name: str, seen: int = 0) -> defer.Deferred:
        """The first event C{name} after the first C{seen} ones."""
        found = self.named(name)
        if len(found) > seen:
            return defer.succeed(found[seen])
        d = defer.Deferred()
        self._waiters.append((name, d))
        return _timeout(d)


class TLSSessionMixin:
    """An sc_remoted with TLS in this process, and scamper-like clients."""

    clientCA = False
    skipNameVerification = False
    zombieTime = 0

    def startServer(self):
        from twisted.internet import reactor

        self.files = Files(self)
        self.sockets = _tempDirectory(self)
        self.events = Events(self)
        caPath = None
        if self.clientCA:
            self.clientAuthority = CertificateAuthority("scamper client CA")
            caPath = os.path.join(self.files.directory, "clients.crt")
            writeFile(caPath, self.clientAuthority.certificatePEM())
        self.tls = ReloadableServerTLS(TLSFiles(self.files.certPath, self.files.keyPath, caPath))
        check = ClientNameCheck() if self.clientCA and not self.skipNameVerification else None
        self.controller = Controller(reactor, self.sockets, zombieTime=self.zombieTime, clientNameCheck=check)
        self.endpoint = RecordingEndpoint(TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK))
        self.service = makeRemotedService(self.controller, [self.endpoint], self.tls)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.port = self.endpoint.port.getHost().port
        self.connections: List[Protocol] = []
        self.addCleanup(self._closeConnections)

    def _closeConnections(self):
        waiting = []
        for protocol in self.connections:
            if protocol.transport is not None and not protocol.lost.called:
                waiting.append(protocol.lost)
                protocol.transport.abortConnection()
        return _timeout(defer.DeferredList(waiting), 10)

    def clientCertificate(self, commonName, dnsNames=(), authority=None):
        issued = (authority or self.clientAuthority).issue(commonName, dnsNames, client=True)
        return issued.write(self.files.directory, "client-%d" % (issued.serial,))

    def connect(self, protocol, creator=None, tls=True):
        from twisted.internet import reactor

        endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, self.port)
        if tls:
            endpoint = wrapClientTLS(creator or ScamperClientTLS(self.files.caPath), endpoint)
        self.connections.append(protocol)
        return _timeout(connectProtocol(endpoint, protocol))

    @defer.inlineCallbacks
    def openLocal(self, scamper):
        from twisted.internet import reactor

        name = socketName(scamper.identity, scamper.peer.monitorname)
        client = LocalClient()
        self.connections.append(client)
        yield connectProtocol(UNIXClientEndpoint(reactor, os.path.join(self.sockets, name)), client)
        return client

    @defer.inlineCallbacks
    def assertRelays(self, scamper, text=b"ping 192.0.2.1"):
        """A local client's bytes reach scamper, scamper's reach the client."""
        peer = scamper.peer
        client = yield self.openLocal(scamper)
        count = len(peer.channels)
        yield scamper.waitFor(lambda: len(peer.channels) > count, "CHANNEL_NEW")
        channel = peer.lastChannel()
        client.transport.write(text + b"\n")
        yield scamper.waitFor(lambda: peer.received(channel).endswith(text + b"\n"), "the client's line")
        scamper.sendData(channel, b"OK " + text + b"\n")
        yield _timeout(client.waitFor(b"OK " + text + b"\n"))
        client.transport.loseConnection()
        self.assertEqual(scamper.violations, [])

    @defer.inlineCallbacks
    def register(self, monitorname=None, creator=None, magic=b"magic-1"):
        scamper = FakeScamper(magic, monitorname)
        yield self.connect(scamper, creator)
        yield scamper.waitFor(lambda: scamper.identity is not None, "MASTER_ID")
        return scamper

    @defer.inlineCallbacks
    def assertRefused(self, scamper, creator, event):
        """The connection is closed, the event logged once, nothing registered."""
        from twisted.internet import reactor

        before = sorted(os.listdir(self.sockets))
        seen = len(self.events.named(event))
        yield self.connect(scamper, creator)
        yield _timeout(scamper.lost)
        self.assertIsNone(scamper.identity)
        logged = yield self.events.waitFor(event, seen)
        yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(self.events.named(event)), seen + 1)
        self.assertEqual(sorted(os.listdir(self.sockets)), before)
        return logged


class TLSSessionTests(TLSSessionMixin, TestCase):
    def setUp(self):
        self.startServer()

    @defer.inlineCallbacks
    def test_relay(self):
        """
        A scamper registers over TLS, without SNI, sees our certificate,
        and a local client talks to it through the UNIX socket.
        """
        scamper = yield self.register("vp1")
        self.assertEqual(scamper.serverCertificate, self.files.server.certificate)
        self.assertTrue(scamper.identity.startswith(LOOPBACK + ":"))
        yield self.assertRelays(scamper)
        yield self.assertRelays(scamper, b"trace 192.0.2.9")

    @defer.inlineCallbacks
    def test_plaintextClient(self):
        """A plaintext scamper is closed, logged once; a TLS session carries on."""
        good = yield self.register("vp1")
        plain = FakeScamper(b"magic-2", "vp2")
        yield self.connect(plain, tls=False)
        yield _timeout(plain.lost)
        self.assertIsNone(plain.identity)
        logged = yield self.events.waitFor("tls.handshake_failed")
        self.assertEqual(logged["peer"], "%s:%d" % (LOOPBACK, plain.address.port))
        self.assertEqual(len(self.events.named("tls.handshake_failed")), 1)
        yield self.assertRelays(good)

    @defer.inlineCallbacks
    def test_tls11Refused(self):
        """TLS 1.1 is not enough."""
        scamper = FakeScamper(b"magic-2", "vp2")
        yield self.assertRefused(
            scamper, ScamperClientTLS(self.files.caPath, maxVersion=SSL.TLS1_1_VERSION), "tls.handshake_failed"
        )

    @defer.inlineCallbacks
    def test_reloadInProcess(self):
        """After a reload, new sessions get the new certificate; the old one carries on."""
        first = yield self.register("vp1")
        writeFile(self.files.certPath, self.files.other.certificatePEM())
        writeFile(self.files.keyPath, self.files.other.keyPEM())
        self.assertTrue(self.tls.reload())
        second = yield self.register("vp2", magic=b"magic-2")
        self.assertEqual(second.serverCertificate, self.files.other.certificate)
        self.assertEqual(first.serverCertificate, self.files.server.certificate)
        yield self.assertRelays(first)
        yield self.assertRelays(second)


class ClientCertificateTests(TLSSessionMixin, TestCase):
    clientCA = True

    def setUp(self):
        self.startServer()

    def creator(self, certPath=None, keyPath=None):
        return ScamperClientTLS(self.files.caPath, certPath, keyPath)

    @defer.inlineCallbacks
    def test_matchingName(self):
        cert, key = self.clientCertificate("vp1.example.net", ["vp1.example.net"])
        scamper = yield self.register("VP1.example.net", self.creator(cert, key))
        yield self.assertRelays(scamper)

    @defer.inlineCallbacks
    def test_commonName(self):
        cert, key = self.clientCertificate("vp1.example.net")
        yield self.register("vp1.example.net", self.creator(cert, key))

    @defer.inlineCallbacks
    def test_wildcard(self):
        cert, key = self.clientCertificate("pool", ["*.pool.example.net"])
        yield self.register("vp7.pool.example.net", self.creator(cert, key))

    @defer.inlineCallbacks
    def test_wrongName(self):
        cert, key = self.clientCertificate("vp1.example.net", ["vp1.example.net"])
        logged = yield self.assertRefused(
            FakeScamper(b"magic-1", "vp2.example.net"), self.creator(cert, key), "tls.name_mismatch"
        )
        self.assertIn("vp2.example.net", logged["reason"])
        self.assertTrue(logged["peer"].startswith(LOOPBACK + ":"))

    @defer.inlineCallbacks
    def test_wildcardOneLabelOnly(self):
        cert, key = self.clientCertificate("pool", ["*.pool.example.net"])
        yield self.assertRefused(
            FakeScamper(b"magic-1", "a.b.pool.example.net"), self.creator(cert, key), "tls.name_mismatch"
        )

    @defer.inlineCallbacks
    def test_noMonitorname(self):
        cert, key = self.clientCertificate("vp1.example.net", ["vp1.example.net"])
        logged = yield self.assertRefused(FakeScamper(b"magic-1", None), self.creator(cert, key), "tls.name_mismatch")
        self.assertIn("no monitorname", logged["reason"])

    @defer.inlineCallbacks
    def test_noCertificate(self):
        logged = yield self.assertRefused(FakeScamper(b"magic-1", "vp1"), self.creator(), "tls.handshake_failed")
        self.assertIn("certificate", logged["reason"])

    @defer.inlineCallbacks
    def test_wrongCA(self):
        cert, key = self.clientCertificate("vp1.example.net", ["vp1.example.net"], authority=CertificateAuthority())
        yield self.assertRefused(FakeScamper(b"magic-1", "vp1.example.net"), self.creator(cert, key),
                                 "tls.handshake_failed")

    @defer.inlineCallbacks
    def test_refusalCostsOnlyThatConnection(self):
        cert, key = self.clientCertificate("vp1.example.net", ["vp1.example.net"])
        good = yield self.register("vp1.example.net", self.creator(cert, key))
        yield self.assertRefused(FakeScamper(b"magic-2", "vp1"), self.creator(), "tls.handshake_failed")
        yield self.assertRefused(FakeScamper(b"magic-3", "vp9.example.net"), self.creator(cert, key),
                                 "tls.name_mismatch")
        yield self.assertRelays(good)


class SkipNameVerificationTests(TLSSessionMixin, TestCase):
    clientCA = True
    skipNameVerification = True

    def setUp(self):
        self.startServer()

    @defer.inlineCallbacks
    def test_anyName(self):
        cert, key = self.clientCertificate("vp1.example.net", ["vp1.example.net"])
        creator = ScamperClientTLS(self.files.caPath, cert, key)
        scamper = yield self.register("elsewhere", creator)
        yield self.assertRelays(scamper)
        yield self.register(None, creator, magic=b"magic-2")

    @defer.inlineCallbacks
    def test_certificateStillRequired(self):
        yield self.assertRefused(
            FakeScamper(b"magic-1", "vp1"), ScamperClientTLS(self.files.caPath), "tls.handshake_failed"
        )


# Real processes: the passphrase prompt, SIGHUP -----------------------------


def _childEnvironment() -> dict:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [SOURCE_ROOT] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])
    )
    return environment


def _freePort() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _twistdScript() -> str:
    """The installed twistd script, to run with C{sys.executable}."""
    candidates = [os.path.join(sysconfig.get_path("scripts"), "twistd")]
    found = shutil.which("twistd")
    if found:
        candidates.append(found)
    for candidate in candidates:
        try:
            with open(candidate, "rb") as f:
                if b"python" in f.readline():
                    return candidate
        except OSError:
            pass
    raise SkipTest("no Python twistd script (looked at %s)" % (", ".join(candidates),))


_OPTIONS_PROGRAM = """
import sys
from twisted.python import usage
from sc_remoted.tap import Options
options = Options()
try:
    options.parseOptions(sys.argv[1:])
except usage.UsageError as e:
    print("ERROR: " + str(e))
    sys.exit(2)
print("LOADED", options["tls"].files.passphrase == PASSPHRASE)
""".replace("PASSPHRASE", repr(PASSPHRASE))


class Terminal:
    """A program on a pseudo-terminal of its own, as an operator starts it."""

    def __init__(self, testCase, argv) -> None:
        self.output = b""
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover (the child)
            try:
                os.execve(argv[0], argv, _childEnvironment())
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.status: Optional[int] = None
        testCase.addCleanup(self.close)

    def readUntil(self, needle: bytes, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                return needle in self.output
            if not chunk:
                return needle in self.output
            self.output += chunk
        return True

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 30) -> int:
        self.readUntil(b"\0never\0", timeout)
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise AssertionError("still running: %r" % (self.output,))
            time.sleep(0.05)
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            self.status = -signal.SIGKILL
        os.close(self.fd)


class PassphrasePromptTests(SynchronousTestCase):
    """The passphrase is asked for on the terminal, before any daemonizing."""

    def setUp(self):
        self.files = Files(self, PASSPHRASE)
        self.sockets = _tempDirectory(self)
        self.arguments = ["--port", "127.0.0.1:31337", "--sockets", self.sockets,
                          "--tls-cert", self.files.certPath, "--tls-key", self.files.keyPath]

    def test_prompt(self):
        terminal = Terminal(self, [sys.executable, "-c", _OPTIONS_PROGRAM, *self.arguments])
        self.assertTrue(terminal.readUntil(b"Passphrase for %s: " % (os.fsencode(self.files.keyPath),)),
                        terminal.output)
        terminal.type(PASSPHRASE + b"\n")
        self.assertEqual(terminal.wait(), 0, terminal.output)
        self.assertIn(b"LOADED True", terminal.output)
        # Not echoed.
        self.assertNotIn(PASSPHRASE, terminal.output)

    def test_wrongPassphrase(self):
        terminal = Terminal(self, [sys.executable, "-c", _OPTIONS_PROGRAM, *self.arguments])
        self.assertTrue(terminal.readUntil(b"Passphrase for "), terminal.output)
        terminal.type(b"guess\n")
        self.assertEqual(terminal.wait(), 2, terminal.output)
        self.assertIn(b"ERROR: wrong passphrase for private key %s" % (os.fsencode(self.files.keyPath),),
                      terminal.output)

    def test_twistdWrongPassphrase(self):
        """twistd itself asks, and a wrong passphrase ends it with an error."""
        terminal = Terminal(self, [sys.executable, _twistdScript(), "-n", "--pidfile=", "sc_remoted", *self.arguments])
        self.assertTrue(terminal.readUntil(b"Passphrase for "), terminal.output)
        terminal.type(b"guess\n")
        self.assertNotEqual(terminal.wait(), 0, terminal.output)
        self.assertIn(b"wrong passphrase for private key %s" % (os.fsencode(self.files.keyPath),), terminal.output)

    def test_noTerminal(self):
        """Without a terminal and a passphrase file, startup fails clearly."""
        import subprocess

        result = subprocess.run(
            [sys.executable, "-c", _OPTIONS_PROGRAM, *self.arguments],
            env=_childEnvironment(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=60, start_new_session=True, check=False,
        )
        self.assertEqual(result.returncode, 2, result.stdout)
        self.assertIn(b"no terminal to ask for its passphrase; use --tls-passphrase-file", result.stdout)


class _Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended = defer.Deferred()
        self._waiters: List[tuple] = []

    def outReceived(self, data):
        self.output += data
        for waiter in list(self._waiters):
            if self.output.count(waiter[0]) >= waiter[1]:
                self._waiters.remove(waiter)
                waiter[2].callback(None)

    errReceived = outReceived

    def waitFor(self, needle: bytes, count: int = 1) -> defer.Deferred:
        d = defer.Deferred()
        self._waiters.append((needle, count, d))
        self.outReceived(b"")
        return _timeout(d, 30)

    def processEnded(self, reason):
        self.reason = reason
        self.ended.callback(None)


class TwistdReloadTests(TLSSessionMixin, TestCase):
    """
    SIGHUP to a running C{twistd -n sc_remoted}: the next connection gets
    the new certificate, a live session carries on, and a broken file
    leaves the current certificate in service.
    """

    @defer.inlineCallbacks
    def test_sighup(self):
        from twisted.internet import reactor

        self.files = files = Files(self, PASSPHRASE)
        self.sockets = _tempDirectory(self)
        self.connections = []
        self.addCleanup(self._closeConnections)
        self.port = _freePort()
        process = _Collect()
        argv = [sys.executable, _twistdScript(), "-n", "--pidfile=", "sc_remoted",
                "--port", "%s:%d" % (LOOPBACK, self.port), "--sockets", self.sockets,
                "--tls-cert", files.certPath, "--tls-key", files.keyPath,
                "--tls-passphrase-file", files.passphrasePath]
        transport = reactor.spawnProcess(process, argv[0], argv, env=_childEnvironment(), path=files.directory)
        pid = transport.pid
        self.addCleanup(self._end, pid, process)

        # Wait for the listener, then a first session with the first certificate.
        first = None
        deadline = time.monotonic() + 30
        while first is None:
            scamper = FakeScamper(b"magic-1", "vp1")
            try:
                yield self.connect(scamper)
                yield scamper.waitFor(lambda s=scamper: s.identity is not None, "MASTER_ID")
                first = scamper
            except (ConnectError, ConnectionClosed, defer.TimeoutError, SSL.Error):
                if time.monotonic() > deadline:
                    self.fail("twistd did not accept a session: %r" % (process.output,))
                yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(first.serverCertificate, files.server.certificate)
        yield self.assertRelays(first)

        # The passphrase is not read again: the file may go.
        os.remove(files.passphrasePath)
        writeFile(files.keyPath, files.other.keyPEM(PASSPHRASE))
        writeFile(files.certPath, files.other.certificatePEM())
        os.kill(pid, signal.SIGHUP)
        yield process.waitFor(b"TLS reloaded")
        second = yield self.register("vp2", magic=b"magic-2")
        self.assertEqual(second.serverCertificate, files.other.certificate)
        yield self.assertRelays(first, b"still here")
        yield self.assertRelays(second)

        # A broken certificate file keeps the current one in service.
        writeFile(files.certPath, b"-----BEGIN CERTIFICATE-----\ngarbage\n")
        os.kill(pid, signal.SIGHUP)
        yield process.waitFor(b"TLS reload failed")
        third = yield self.register("vp3", magic=b"magic-3")
        self.assertEqual(third.serverCertificate, files.other.certificate)
        yield self.assertRelays(first, b"and still")
        self.assertTrue(transport.pid, process.output)

    @defer.inlineCallbacks
    def _end(self, pid, process):
        if process.ended.called:
            return
        os.kill(pid, signal.SIGTERM)
        try:
            yield _timeout(process.ended, 10)
        except defer.TimeoutError:
            os.kill(pid, signal.SIGKILL)
