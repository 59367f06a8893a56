"""
Tests for the command line (L{sc_remoted.tap.Options}) and the listening
address forms (L{sc_remoted.listen.parsePortSpec}).
"""

import os
import socket
import tempfile

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sc_remoted.listen import PortSpecError, V6OnlyTCPServerEndpoint, parsePortSpec
from sc_remoted.service import ControllerService
from sc_remoted.tap import Options, makeService


class PortSpecTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()

    def parse(self, spec, **kw):
        return parsePortSpec(self.reactor, spec, **kw)

    def test_barePort(self):
        """A bare port listens on all IPv4 and, v6-only, all IPv6 addresses."""
        v4, v6 = self.parse("31337")
        self.assertIsInstance(v4, TCP4ServerEndpoint)
        self.assertEqual((v4._port, v4._interface), (31337, ""))
        self.assertIsInstance(v6, V6OnlyTCPServerEndpoint)
        self.assertEqual((v6._port, v6._interface), (31337, "::"))

    def test_barePortOneFamily(self):
        [v4] = self.parse("31337", ipv6=False)
        self.assertIsInstance(v4, TCP4ServerEndpoint)
        [v6] = self.parse("31337", ipv4=False)
        self.assertIsInstance(v6, V6OnlyTCPServerEndpoint)

    def test_addresses(self):
        [v4] = self.parse("127.0.0.1:41001")
        self.assertEqual((v4._port, v4._interface), (41001, "127.0.0.1"))
        [v6] = self.parse("[::1]:41001")
        self.assertEqual((v6._port, v6._interface), (41001, "::1"))

    def test_endpointDescription(self):
        [endpoint] = self.parse(r"tcp6:31337:interface=\:\:1")
        self.assertIsInstance(endpoint, TCP6ServerEndpoint)

    def test_errors(self):
        for spec, kw, message in [
            ("0", {}, "1 to 65535"),
            ("65536", {}, "1 to 65535"),
            ("127.0.0.1:x", {}, "1 to 65535"),
            ("host.example:80", {}, "not an IP address"),
            ("localhost:80", {}, "bad endpoint description"),
            ("300.1.1.1:80", {}, "not an IP address"),
            ("::1:80", {}, "cannot parse"),
            ("127.0.0.1:80", {"ipv4": False}, "-6"),
            ("[::1]:80", {"ipv6": False}, "-4"),
            ("31337", {"ipv4": False, "ipv6": False}, "exclude"),
            ("tcp:80", {"ipv6": False}, "apply only"),
        ]:
            with self.assertRaises(PortSpecError, msg=spec) as caught:
                self.parse(spec, **kw)
            self.assertIn(message, str(caught.exception), spec)


class V6OnlyEndpointTests(TestCase):
    """The IPv6 listener really is v6-only, so it shares a port with IPv4."""

    def test_sharesPortWithIPv4(self):
        from twisted.internet import reactor

        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        try:
            socket.socket(socket.AF_INET6).close()
        except OSError:
            raise self.skipTest("no IPv6 here")
        factory = Factory.forProtocol(Protocol)
        v4 = reactor.listenTCP(port, factory, interface="127.0.0.1")
        self.addCleanup(v4.stopListening)
        d = V6OnlyTCPServerEndpoint(reactor, port, interface="::").listen(factory)

        def listening(v6):
            self.addCleanup(v6.stopListening)
            fd = v6.fileno()
            sock = socket.socket(fileno=os.dup(fd))
            try:
                self.assertEqual(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY), 1)
            finally:
                sock.close()

        return d.addCallback(listening)


class OptionsTests(SynchronousTestCase):
    def setUp(self):
        self.directory = tempfile.mkdtemp(dir="/tmp", prefix="scr")
        self.addCleanup(os.rmdir, self.directory)

    def parse(self, *argv):
        options = Options()
        options.reactor = MemoryReactorClock()
        options.parseOptions(list(argv))
        return options

    def test_defaults(self):
        options = self.parse("--port", "31337", "--sockets", self.directory)
        self.assertEqual(options["zombie-time"], 900)
        self.assertEqual(options["socket-mode"], 0o700)
        self.assertEqual(len(options["endpoints"]), 2)
        self.assertFalse(options["debug"])

    def test_shortFlagsAndPermissions(self):
        options = self.parse("-P", "127.0.0.1:1", "-U", self.directory, "-Z", "0", "--allow-group", "--allow-other", "--debug")
        self.assertEqual(options["socket-mode"], 0o777)
        self.assertEqual(options["zombie-time"], 0)
        self.assertTrue(options["debug"])
        options = self.parse("-P", "1", "-U", self.directory, "-4")
        self.assertEqual(len(options["endpoints"]), 1)

    def test_usageErrors(self):
        missing = os.path.join(self.directory, "missing")
        aFile = os.path.join(self.directory, "file")
        open(aFile, "w").close()
        self.addCleanup(os.unlink, aFile)
        deep = os.path.join(self.directory, "d" * 80)
        for argv, message in [
            (["--sockets", self.directory], "--port is required"),
            (["--port", "1"], "--sockets is required"),
            (["--port", "1", "--sockets", missing], "No such file or directory"),
            (["--port", "1", "--sockets", aFile], "not a directory"),
            (["--port", "1", "--sockets", deep], "too long"),
            (["--port", "99999", "--sockets", self.directory], "--port"),
            (["--port", "1", "--sockets", self.directory, "-Z", "10801"], "0 to 10800"),
            (["--port", "1", "--sockets", self.directory, "-Z", "x"], "invalid literal"),
        ]:
            if argv[-1] == deep:
                os.mkdir(deep)
                self.addCleanup(os.rmdir, deep)
            with self.assertRaises(UsageError, msg=argv) as caught:
                self.parse(*argv)
            self.assertIn(message, str(caught.exception), argv)

    def test_makeService(self):
        """The service tree: the controller, then one listener per endpoint."""
        options = self.parse("--port", "31337", "--sockets", self.directory, "-Z", "60", "--allow-group")
        top = makeService(options)
        services = list(top)
        self.assertIsInstance(services[0], ControllerService)
        controller = services[0].controller
        self.assertEqual(
            (controller.socketsDirectory, controller.zombieTime, controller.socketMode),
            (self.directory, 60, 0o770),
        )
        listeners = [s for s in services if isinstance(s, StreamServerEndpointService)]
        self.assertEqual([s.endpoint for s in listeners], options["endpoints"])
