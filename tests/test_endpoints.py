"""
Tests for the one parser of listening addresses (L{sc_remoted.endpoints})
and its loopback check, shared by --port, --status-port and --mux-port.
"""

import os
import socket

from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sc_remoted.endpoints import LOOPBACK, AddressError, ListenAddress, parseAddress, splitDescription
from sc_remoted.listen import V6OnlyTCPServerEndpoint


class ParseTests(SynchronousTestCase):
    """The C daemon's forms and endpoint descriptions, read without building anything."""

    def test_barePort(self):
        """A bare PORT is every address of both families, or the host given for it."""
        self.assertEqual(parseAddress("31337"), ListenAddress("31337", "tcp", None, 31337))
        self.assertEqual(parseAddress("9100", LOOPBACK), ListenAddress("9100", "tcp", "127.0.0.1", 9100))

    def test_cForms(self):
        self.assertEqual(parseAddress("192.0.2.1:80"), ListenAddress("192.0.2.1:80", "tcp", "192.0.2.1", 80))
        self.assertEqual(parseAddress("[::1]:80"), ListenAddress("[::1]:80", "tcp6", "::1", 80))
        self.assertEqual(parseAddress("[fe80::1%lo]:80").host, "fe80::1%lo")

    def test_descriptions(self):
        tcp = parseAddress("tcp:9100:interface=127.0.0.2")
        self.assertEqual((tcp.type, tcp.host, tcp.port, tcp.description), ("tcp", "127.0.0.2", 9100, tcp.text))
        tcp6 = parseAddress(r"tcp6:port=7000:interface=\:\:1")
        self.assertEqual((tcp6.type, tcp6.host, tcp6.port), ("tcp6", "::1", 7000))
        self.assertEqual(parseAddress("tcp6:7000").host, "::")
        self.assertEqual(parseAddress("tcp:7000").host, "")
        unix = parseAddress("unix:/run/x.sock:mode=600")
        self.assertEqual((unix.type, unix.path), ("unix", "/run/x.sock"))
        self.assertEqual(parseAddress("unix:address=/run/y").path, "/run/y")
        systemd = parseAddress("systemd:domain=INET:index=0")
        self.assertEqual((systemd.type, systemd.host, systemd.port), ("systemd", None, None))

    def test_splitDescription(self):
        """Twisted's grammar: fields by ':', keywords by the first '=', '\\' quoting."""
        self.assertEqual(splitDescription(r"tcp6:80:interface=\:\:1"), ("tcp6", ["80"], {"interface": "::1"}))
        self.assertEqual(splitDescription(r"unix:/a\:b=c"), ("unix", [], {"/a:b": "c"}))
        self.assertEqual(splitDescription(r"unix:/a\=b"), ("unix", ["/a=b"], {}))
        self.assertEqual(splitDescription("ssl:443:privateKey=k.pem:certKey=c.pem"),
                         ("ssl", ["443"], {"privateKey": "k.pem", "certKey": "c.pem"}))

    def test_errors(self):
        for text, message in [
            ("0", "1 to 65535"),
            ("65536", "1 to 65535"),
            ("127.0.0.1:x", "1 to 65535"),
            ("127.0.0.1:", "1 to 65535"),
            ("host.example:80", "not an IP address"),
            ("300.1.1.1:80", "not an IP address"),
            ("[nonsense]:80", "not an IP address"),
            ("::1:80", "cannot parse"),
            ("localhost:80", "no endpoint type 'localhost'"),
            ("nonsense:1", "no endpoint type 'nonsense'"),
            ("tcp:http", "port 'http' is not a number"),
            ("tcp:70000", "from 0 to 65535"),
            ("tcp:interface=127.0.0.1", "port '' is not a number"),
            ("unix:", "no socket path"),
            ("", "cannot parse"),
        ]:
            with self.assertRaises(AddressError, msg=text) as caught:
                parseAddress(text)
            self.assertIn(message, str(caught.exception), text)
            self.assertNotIn("\n", str(caught.exception))


class LoopbackTests(SynchronousTestCase):
    """The one check of whether only this host can connect."""

    def test_loopback(self):
        for text in ["127.0.0.1:80", "127.0.0.2:80", "[::1]:80", "tcp:80:interface=127.0.0.1",
                     r"tcp6:80:interface=\:\:1", "unix:/run/x", "ssl:443:interface=127.0.0.1"]:
            self.assertIs(parseAddress(text).isLoopback(), True, text)
        self.assertIs(parseAddress("80", LOOPBACK).isLoopback(), True)

    def test_notLoopback(self):
        for text in ["80", "0.0.0.0:80", "192.0.2.1:80", "[::]:80", "tcp:80", "tcp6:80",
                     "tcp:80:interface=192.0.2.1", r"tcp6:80:interface=2001\:db8\:\:1"]:
            self.assertIs(parseAddress(text).isLoopback(), False, text)

    def test_cannotTell(self):
        """Endpoint types whose address is not read here, and host names."""
        for text in ["systemd:domain=INET:index=0", "tcp:80:interface=localhost"]:
            self.assertIsNone(parseAddress(text).isLoopback(), text)

    def test_tcp(self):
        self.assertTrue(parseAddress("80").isTCP)
        self.assertTrue(parseAddress("tcp6:80").isTCP)
        for text in ["unix:/x", "ssl:443", "systemd:domain=INET:index=0"]:
            self.assertFalse(parseAddress(text).isTCP, text)


class EndpointsTests(SynchronousTestCase):
    """The Twisted endpoints made at startup."""

    def setUp(self):
        self.reactor = MemoryReactorClock()

    def test_barePort(self):
        """Both families, the IPv6 one v6-only; -4 or -6 drops one."""
        v4, v6 = parseAddress("31337").endpoints(self.reactor)
        self.assertIsInstance(v4, TCP4ServerEndpoint)
        self.assertIsInstance(v6, V6OnlyTCPServerEndpoint)
        [only4] = parseAddress("31337").endpoints(self.reactor, ipv6=False)
        self.assertIsInstance(only4, TCP4ServerEndpoint)
        [only6] = parseAddress("31337").endpoints(self.reactor, ipv4=False)
        self.assertIsInstance(only6, V6OnlyTCPServerEndpoint)

    def test_listens(self):
        """What each form listens on, seen through the reactor."""
        factory = Factory.forProtocol(Protocol)
        for text, expected in [
            ("127.0.0.1:41000", (41000, "127.0.0.1")),
            ("9100", (9100, "")),
            ("tcp:7000:interface=127.0.0.2", (7000, "127.0.0.2")),
        ]:
            reactor = MemoryReactorClock()
            for endpoint in parseAddress(text).endpoints(reactor, ipv6=False):
                endpoint.listen(factory)
            [(port, _, _, interface)] = reactor.tcpServers
            self.assertEqual((port, interface), expected, text)

    def test_descriptions(self):
        self.assertIsInstance(parseAddress(r"tcp6:80:interface=\:\:1").endpoints(self.reactor)[0], TCP6ServerEndpoint)
        self.assertIsInstance(parseAddress("unix:/tmp/x").endpoints(self.reactor)[0], UNIXServerEndpoint)
        self.assertIsInstance(parseAddress("[::1]:80").endpoints(self.reactor)[0], V6OnlyTCPServerEndpoint)

    def test_cannotMake(self):
        """A description Twisted refuses at startup: one line."""
        with self.assertRaises(AddressError) as caught:
            parseAddress("ssl:443:privateKey=/nonexistent/key.pem").endpoints(self.reactor)
        self.assertIn("bad endpoint description 'ssl:443:privateKey=/nonexistent/key.pem'", str(caught.exception))


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
