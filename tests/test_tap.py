"""
Tests for C{twistd sc_remoted} (L{sc_remoted.tap}): the service tree its
options make, the checks made when the tree starts, the TLS read while
parsing (also under a chroot), and the twistd front door: errors and
exit statuses, and the process taken over from twistd.
"""

import io
import os
import signal
import socket
import sys

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel
from twisted.python.usage import UsageError
from twisted.scripts._twistd_unix import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

from sc_remoted.collector import YOUNG_GENERATION
from sc_remoted.process import ProcessService, ProcessSettings
from sc_remoted.service import ControllerService, ListeningService, StartupError
from sc_remoted.tap import Options, buildService, loadTLS, makeService, takeOverProcess
from sc_remoted.tls import ReloadableServerTLS

from .realprocs import makeSocketsDirectory
from .test_tls import PASSPHRASE, Files


def parse(*argv, chroot=None):
    options = Options()
    options.reactor = MemoryReactorClock()
    options.chroot = chroot
    options.parseOptions(list(argv))
    return options


class ServiceTests(SynchronousTestCase):
    def setUp(self):
        self.directory = makeSocketsDirectory(self)

    def test_makeService(self):
        """The service tree: the controller, then one listener per endpoint."""
        options = parse("--port", "31337", "--sockets", self.directory, "-Z", "60", "--allow-group")
        top = makeService(options)
        services = list(top)
        self.assertIsInstance(services[0], ControllerService)
        controller = services[0].controller
        self.assertEqual(
            (controller.socketsDirectory, controller.zombieTime, controller.socketMode),
            (self.directory, 60, 0o770),
        )
        listeners = [s for s in services if isinstance(s, StreamServerEndpointService)]
        self.assertEqual(len(listeners), 2)
        top.privilegedStartService()
        ports = sorted((port, interface) for port, _, _, interface in options.reactor.tcpServers)
        self.assertEqual(ports, [(31337, "")])  # the v6-only IPv6 one is adopted, not listenTCP'd
        self.assertEqual(len(options.reactor.adoptedPorts), 1)

    def test_oneFamily(self):
        top = makeService(parse("-P", "1", "-U", self.directory, "-4"))
        self.assertEqual(len([s for s in top if isinstance(s, ListeningService)]), 1)

    def test_startupChecks(self):
        """What needs the file system fails the start, before anything listens."""
        missing = os.path.join(self.directory, "missing")
        aFile = os.path.join(self.directory, "file")
        open(aFile, "w").close()
        deep = os.path.join(self.directory, "d" * 80)
        os.mkdir(deep)
        for argv, message in [
            (["--sockets", missing], "--sockets %s: No such file or directory" % (missing,)),
            (["--sockets", aFile], "--sockets %s: not a directory" % (aFile,)),
            (["--sockets", deep], "exceed the 107-byte limit"),
            (["--mux", os.path.join(missing, "mux")], "--mux %s/mux: no such directory %s" % (missing, missing)),
        ]:
            options = parse("--port", "127.0.0.1:1", *argv)
            with self.assertRaises(StartupError, msg=argv) as caught:
                makeService(options).privilegedStartService()
            self.assertIn(message, str(caught.exception), argv)
            self.assertEqual(options.reactor.tcpServers, [], argv)

    def test_endpointStartupError(self):
        """An endpoint Twisted cannot make is a startup error, named by its option."""
        options = parse("--port", "1", "--sockets", self.directory, "--status-port",
                        "ssl:1:privateKey=/nonexistent.pem:interface=127.0.0.1")
        with self.assertRaises(StartupError) as caught:
            buildService(options.config, reactor=options.reactor)
        self.assertTrue(str(caught.exception).startswith("--status-port: bad endpoint description"))

    def test_abandon(self):
        """A listener's UNIX socket file is removed at once when a start is given up."""
        path = os.path.join(self.directory, "mux")
        top = makeService(parse("--port", "1", "--mux", path))
        top.privilegedStartService()
        listener = socket.socket(socket.AF_UNIX)  # the MemoryReactor makes no file
        self.addCleanup(listener.close)
        listener.bind(path)
        for service in top:
            if isinstance(service, ListeningService):
                service.abandon()
        self.assertFalse(os.path.exists(path))


class TLSTests(SynchronousTestCase):
    """The TLS files, the one thing read while parsing."""

    def test_chroot(self):
        """
        Under a chroot the files are read from inside it at startup, and
        the reloads (after the chroot) use the paths as given.
        """
        files = Files(self, PASSPHRASE)
        jail = os.path.dirname(files.directory)
        inside = "/" + os.path.basename(files.directory)
        options = parse(
            "--port", "1", "--mux", inside + "/mux", "--mux-port", "7000",
            "--tls-cert", inside + "/server.crt", "--tls-key", inside + "/server.key",
            "--tls-passphrase-file", inside + "/passphrase", "--mux-tls-ca", inside + "/ca.crt",
            chroot=jail,
        )
        tls, mux = options["tls"], options["mux-tls"]
        self.assertIsInstance(tls, ReloadableServerTLS)
        self.assertEqual((tls.files.certificatePath, tls.files.keyPath), (inside + "/server.crt", inside + "/server.key"))
        self.assertEqual(tls.files.passphrase, PASSPHRASE)
        self.assertEqual(mux.files.caPath, inside + "/ca.crt")

    def test_noTLS(self):
        self.assertEqual(loadTLS(parse("--port", "1", "--mux", "/tmp/m").config), (None, None))

    def test_errorIsARefusal(self):
        """A TLS file that cannot be used: one line, exit status 1."""
        files = Files(self, PASSPHRASE)
        with self.assertRaises(UsageError) as caught:
            parse("--port", "1", "--mux", "/tmp/m", "-c", files.certPath, "-p", files.keyPath,
                  "--tls-passphrase-file", files.caPath)
        self.assertEqual(type(caught.exception).__name__, "ConfigurationError")
        self.assertIn("wrong passphrase", str(caught.exception))


class TwistdFrontDoorTests(SynchronousTestCase):
    """Options and makeService as twistd's sc_remoted subcommand."""

    def setUp(self):
        self.directory = makeSocketsDirectory(self)
        self.stderr = io.StringIO()
        self.patch(sys, "__stderr__", self.stderr)
        for number in (signal.SIGTERM, signal.SIGINT):
            self.addCleanup(signal.signal, number, signal.getsignal(number))

    def twistd(self, *argv):
        """twistd's options after parsing C{argv}, as twistd would."""
        config = ServerOptions()
        config.parseOptions(list(argv))
        return config

    def test_usageError(self):
        """A bad command line: one line, then the usage, on stderr; exit status 2."""
        with self.assertRaises(SystemExit) as caught:
            self.twistd("sc_remoted", "--port", "1", "--sockets", self.directory, "-Z", "abc")
        self.assertEqual(caught.exception.code, 2)
        first, rest = self.stderr.getvalue().split("\n", 1)
        self.assertEqual(first, "sc_remoted: --zombie-time: 'abc' is not a whole number")
        self.assertIn("Usage: twistd [options] sc_remoted", rest)
        self.assertIn("--max-connections", rest)

    def test_refusal(self):
        """A refused command line: one line, exit status 1."""
        with self.assertRaises(SystemExit) as caught:
            self.twistd("sc_remoted", "--port", "unix:/tmp/x", "--sockets", self.directory)
        self.assertEqual(caught.exception.code, 1)
        self.assertEqual(self.stderr.getvalue().count("\n"), 1)
        self.assertTrue(self.stderr.getvalue().startswith("sc_remoted: --port: 'unix:/tmp/x' is not TCP"))

    def test_takeOverProcess(self):
        """Daemonizing and the pidfile become the service's; twistd keeps neither."""
        config = self.twistd("--pidfile", "run.pid", "sc_remoted", "--port", "1", "--sockets", self.directory)
        settings = takeOverProcess(config, config.subOptions.config)
        self.assertEqual(
            settings,
            ProcessSettings(
                daemon=True,
                pidfile=os.path.abspath("run.pid"),
                umask=0o077,
                youngGeneration=YOUNG_GENERATION,
                logLevel=LogLevel.info,
            ),
        )
        self.assertEqual((config["nodaemon"], config["pidfile"]), (True, ""))
        config = self.twistd("-n", "--umask", "022", "--pidfile", "", "sc_remoted", "--port", "1", "--mux", "/tmp/m",
                             "--log-level", "error")
        self.assertEqual(
            takeOverProcess(config, config.subOptions.config),
            ProcessSettings(youngGeneration=YOUNG_GENERATION, logLevel=LogLevel.error),
        )

    def test_makeService(self):
        config = self.twistd("-n", "--pidfile", "", "sc_remoted", "--port", "1", "--sockets", self.directory)
        config.subOptions.reactor = MemoryReactorClock()
        service = makeService(config.subOptions)
        self.assertIsInstance(service, ProcessService)
        self.assertIsInstance(next(iter(service.remoted)), ControllerService)

    def test_chrootFromTwistd(self):
        """twistd's --chroot is the plugin's too: every path is inside it."""
        config = self.twistd("--chroot", "/srv/jail", "sc_remoted", "--port", "1", "--sockets", "sockets")
        self.assertEqual((config.subOptions.config.chroot, config.subOptions.config.sockets), ("/srv/jail", "/sockets"))
