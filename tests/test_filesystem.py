"""
Filesystem safety: socket permissions exactly as configured whatever the
umask, no socket made through a symlink, names that cannot leave the
sockets directory, and a sockets directory nobody else can write to.
"""

import os
import socket
import stat
import tempfile

from twisted.internet import reactor
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sc_remoted.controller import Controller
from sc_remoted.flow import UNIX_SEND_BUFFER
from sc_remoted.lifecycle import State
from sc_remoted.service import StartupError
from sc_remoted.tap import Options, makeService
from sc_remoted.wire import MasterOk, WireError, parseControl

from .peer_twisted import MemoryScamper
from .realprocs import waitFor


class SocketPermissionTests(TestCase):
    """Real sockets, made by the real reactor, in a temporary directory."""

    def setUp(self):
        self.directory = tempfile.mkdtemp(dir="/tmp", prefix="scr")
        self.addCleanup(os.rmdir, self.directory)

    def register(self, mode, umask, port=4000):
        controller = Controller(reactor, self.directory, socketMode=mode)
        self.addCleanup(controller.stopService)
        previous = os.umask(umask)
        try:
            scamper = MemoryScamper(controller, port=port, magic=b"12345678")
            self.addCleanup(scamper.lose)
            scamper.register()
        finally:
            os.umask(previous)
        return controller, os.path.join(self.directory, "127.0.0.1:%d" % (port,))

    def test_modeExactlyAsConfigured(self):
        """0700, 0770 and 0777 whatever the umask, and the umask is kept."""
        before = os.umask(0o022)
        os.umask(before)
        port = 4000
        for mode in (0o700, 0o770, 0o777):
            for umask in (0, 0o022, 0o077):
                port += 1
                controller, path = self.register(mode, umask, port)
                self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), mode, (oct(mode), oct(umask)))
                self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
        after = os.umask(before)
        self.assertEqual(after, before)

    def test_symlinkNotFollowed(self):
        """
        A symlink where the socket would go makes registration fail,
        logged, and its target is left alone.
        """
        target = os.path.join(self.directory, "target")
        with open(target, "w") as f:
            f.write("precious")
        os.chmod(target, 0o600)
        self.addCleanup(os.unlink, target)
        link = os.path.join(self.directory, "127.0.0.1:4000")
        os.symlink(target, link)
        self.addCleanup(os.unlink, link)
        controller = Controller(reactor, self.directory)
        scamper = MemoryScamper(controller, port=4000, magic=b"12345678")
        self.addCleanup(scamper.lose)
        with capturedLogs() as events:
            scamper.register()
        self.assertTrue(scamper.closed)
        self.assertEqual(controller.vantagePoints(), [])
        self.assertTrue(os.path.islink(link))
        with open(target) as f:
            self.assertEqual(f.read(), "precious")
        self.assertEqual(stat.S_IMODE(os.stat(target).st_mode), 0o600)
        self.assertTrue(any(e.get("sc_event") == "vp.socket_error" for e in events))

    def test_resumeWithoutSocket(self):
        """
        A resume whose new socket cannot be made (here a file is in the
        way) still resumes, with nothing lost: the failure is logged and
        the vantage point stays reachable through the mux.
        """
        controller = Controller(reactor, self.directory)
        self.addCleanup(controller.stopService)
        first = MemoryScamper(controller, port=4000, magic=b"12345678")
        first.register()
        first.received()
        [vp] = controller.vantagePoints()
        first.lose()
        blocker = os.path.join(self.directory, "127.0.0.1:4001")
        open(blocker, "w").close()
        self.addCleanup(os.unlink, blocker)
        second = MemoryScamper(controller, port=4001, peer=first.peer)
        self.addCleanup(second.lose)
        with capturedLogs() as events:
            second.resume()
        frames = second.received()
        self.assertEqual(parseControl(frames[0].payload), MasterOk(0))
        self.assertFalse(second.closed)
        self.assertIs(vp.state, State.CONNECTED)
        self.assertEqual((vp.name, vp.listener), ("127.0.0.1:4001", None))
        self.assertEqual(vp.session.resumes, 1)
        kinds = [e.get("sc_event") for e in events]
        self.assertIn("vp.socket_error", kinds)
        self.assertIn("vp.resumed_without_socket", kinds)
        self.assertIn("vp.resumed", kinds)

    def test_clientSendBuffer(self):
        """
        Each local client's socket gets the larger kernel send buffer
        (as far as net.core.wmem_max allows), so that the daemon and a
        fast client do not take turns on a small buffer.
        """
        controller, path = self.register(0o700, 0o022)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(client.close)
        client.connect(path)
        d = waitFor(reactor, lambda: controller.vantagePoints()[0].session.channels, 5, "the channel")

        def check(_):
            [channel] = controller.vantagePoints()[0].session.channels.values()
            size = channel.end.transport.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            with open("/proc/sys/net/core/wmem_max") as f:
                ceiling = int(f.read())
            # Linux doubles the size asked for (for its bookkeeping).
            self.assertEqual(size, 2 * min(UNIX_SEND_BUFFER, ceiling))

        return d.addCallback(check)

    def test_removedWhenFreed(self):
        """The socket file is gone, and its descriptor closed, when the VP is freed: in the call."""
        controller, path = self.register(0o700, 0o022)
        self.assertTrue(os.path.exists(path))
        [vp] = controller.vantagePoints()
        port = vp.listener
        controller.free(vp, "test")
        self.assertFalse(os.path.exists(path))
        self.assertFalse(port.connected)
        self.assertNotIn(port, reactor.getReaders())
        self.successResultOf(controller.stopService())

    def test_removalFailsLogged(self):
        """A socket file that cannot be removed is one error line for its VP; the socket is closed."""
        controller, path = self.register(0o700, 0o022)
        [vp] = controller.vantagePoints()
        port = vp.listener

        def refuse(name):
            raise PermissionError(13, "Permission denied", name)

        self.addCleanup(os.unlink, path)
        self.patch(os, "unlink", refuse)
        with capturedLogs() as events:
            controller.free(vp, "test")
        [error] = [e for e in events if e.get("sc_event") == "vp.socket_error"]
        self.assertIn("cannot remove its socket: [Errno 13] Permission denied", formatEvent(error))
        self.assertFalse(port.connected)
        self.assertNotIn(port, reactor.getReaders())


class NameTests(SynchronousTestCase):
    def test_noPathSeparators(self):
        """A monitorname with '/' (or '..' tricks through it) is refused."""
        for name in (b"../etc", b"a/b", b"/abs", b"a\\b", b"a b"):
            payload = b"\x00\x08AAAAAAAA" + bytes((len(name) + 1,)) + name + b"\x00"
            self.assertRaises(WireError, parseControl, payload)

    def test_dotsStayInside(self):
        """Even '..' as a name becomes '..-peer', a file inside the directory."""
        controller = Controller(MemoryReactorClock(), "/sockets")
        scamper = MemoryScamper(controller, port=1, magic=b"12345678", monitorname="..")
        scamper.register()
        [(path, _, _, _, _)] = controller.reactor.unixServers
        self.assertEqual(os.path.dirname(path), "/sockets")
        self.assertEqual(os.path.basename(path), "..-127.0.0.1:1")


class DirectoryCheckTests(SynchronousTestCase):
    def setUp(self):
        self.directory = tempfile.mkdtemp(dir="/tmp", prefix="scr")
        self.addCleanup(os.rmdir, self.directory)

    def start(self, *extra):
        """The directory is checked when the service starts, not while parsing."""
        options = Options()
        options.reactor = MemoryReactorClock()
        options.parseOptions(["--port", "127.0.0.1:1", "--sockets", self.directory, *extra])
        makeService(options).privilegedStartService()

    def test_writableByOthers(self):
        for mode in (0o777, 0o770, 0o702):
            os.chmod(self.directory, mode)
            with self.assertRaises(StartupError) as caught:
                self.start()
            self.assertIn("writable by group or others", str(caught.exception))
        self.start("--insecure-sockets-dir")

    def test_otherOwner(self):
        if os.geteuid() != 0:
            raise self.skipTest("needs root to chown")
        os.chown(self.directory, 65534, -1)
        with self.assertRaises(StartupError) as caught:
            self.start()
        self.assertIn("owned by uid 65534", str(caught.exception))
        self.start("--insecure-sockets-dir")

    def test_private(self):
        os.chmod(self.directory, 0o755)
        self.start()
