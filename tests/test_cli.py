"""
Tests for the C{sc_remoted} command (L{sc_remoted.cli}): every C flag's
mapping onto twistd and the plugin, the usage errors, and, with the
command run as a process, daemonizing, the pidfile and the one-line
startup errors.
"""

import io
import os
import signal
import socket
import sys
import sysconfig

from twisted.internet import defer, reactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

import sc_remoted
from sc_remoted import cli

from .realprocs import (
    LOOPBACK,
    freePort,
    makeSocketsDirectory,
    runToCompletion,
    sockets,
    spawn,
    waitFor,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(sc_remoted.__file__)))

# The package under test (not an installed copy), as a command.
COMMAND = [
    sys.executable,
    "-c",
    "import sys; sys.path.insert(0, %r); from sc_remoted.cli import main; main()" % (REPO,),
]

BASE = ["-P", "31337", "-U", "/tmp"]


def twistdArgs(argv):
    return cli.parseCommandLine(argv).twistd


class FlagMappingTests(SynchronousTestCase):
    """Each C flag becomes the twistd or plugin option of the same meaning."""

    def pluginArgs(self, argv):
        args = twistdArgs(argv)
        return args[args.index("sc_remoted") + 1 :]

    def twistdOnly(self, argv):
        args = twistdArgs(argv)
        return args[: args.index("sc_remoted")]

    def test_required(self):
        self.assertEqual(self.pluginArgs(BASE), ["--port=31337", "--sockets=/tmp"])

    def test_pluginOptions(self):
        for flags, expected in [
            (["-P", "[::1]:41000"], "--port=[::1]:41000"),
            (["-U", "/run/scamper"], "--sockets=/run/scamper"),
            (["-Z", "60"], "--zombie-time=60"),
            (["-c", "cert.pem"], "--tls-cert=cert.pem"),
            (["-p", "key.pem"], "--tls-key=key.pem"),
            (["-C", "ca.pem"], "--tls-ca=ca.pem"),
            (["-M", "/run/mux"], "--mux=/run/mux"),
            (["-m", "meta.txt"], "--metadata=meta.txt"),
            (["-4"], "--ipv4-only"),
            (["-6"], "--ipv6-only"),
            (["-O", "allowgroup"], "--allow-group"),
            (["-O", "allowother"], "--allow-other"),
            (["-O", "debug"], "--debug"),
            (["-O", "skipnameverification"], "--skip-name-verification"),
            (["--status-port", "9100"], "--status-port=9100"),
            (["--status-allow-remote"], "--status-allow-remote"),
        ]:
            self.assertIn(expected, self.pluginArgs(BASE + flags), flags)

    def test_repeatedO(self):
        args = self.pluginArgs(BASE + ["-O", "allowgroup", "-O", "allowother", "-O", "debug"])
        self.assertEqual(args[2:], ["--allow-group", "--allow-other", "--debug"])

    def test_foregroundByDefault(self):
        """Without -D: twistd's --nodaemon, no pidfile, logs to stdout."""
        self.assertEqual(self.twistdOnly(BASE), ["--nodaemon", "--pidfile", ""])

    def test_daemon(self):
        """-D daemonizes, keeping the umask, and logs to syslog."""
        args = self.twistdOnly(BASE + ["-D"])
        self.assertNotIn("--nodaemon", args)
        mask = os.umask(0o022)
        self.addCleanup(os.umask, mask)
        args = self.twistdOnly(BASE + ["-D"])
        self.assertEqual(args[args.index("--umask") + 1], "0022")
        self.assertIn("--syslog", args)

    def test_pidfile(self):
        args = self.twistdOnly(BASE + ["-e", "run.pid"])
        self.assertEqual(args[args.index("--pidfile") + 1], os.path.abspath("run.pid"))

    def test_logfile(self):
        args = self.twistdOnly(BASE + ["-D", "--logfile", "x.log"])
        self.assertEqual(args[args.index("--logfile") + 1], os.path.abspath("x.log"))
        self.assertNotIn("--syslog", args)

    def test_select(self):
        """-O select picks twistd's select reactor, installed before the plugin loads."""
        invocation = cli.parseCommandLine(BASE + ["-O", "select"])
        self.assertEqual(invocation.reactor, "select")
        self.assertIsNone(cli.parseCommandLine(BASE).reactor)

    def test_notimes(self):
        args = self.twistdOnly(BASE + ["-O", "notimes"])
        self.assertEqual(args[args.index("--logger") + 1], cli.NO_TIMES_LOGGER)

    def test_notimesObserver(self):
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        observer = cli.noTimesLogObserver()
        observer({"log_format": "hello {who}", "who": "world", "log_time": 1e9, "log_system": "sc"})
        self.assertEqual(out.getvalue(), "- [sc] hello world\n")

    def test_helpAndVersion(self):
        self.assertEqual(cli.parseCommandLine(["-?"]).action, "help")
        self.assertEqual(cli.parseCommandLine(["-v"]).action, "version")

    def test_errors(self):
        for argv, message in [
            (BASE + ["-x"], "option -x not recognized"),
            (BASE + ["extra"], "unexpected argument 'extra'"),
            (BASE + ["-O", "fast"], "unknown -O option 'fast'"),
            (BASE + ["-P"], "requires argument"),
            (["-U", "/tmp"], "-P [ip:]port is required"),
            (["-P", "1"], "-U dir is required"),
        ]:
            with self.assertRaises(cli.CommandLineError, msg=argv) as caught:
                cli.parseCommandLine(argv)
            self.assertIn(message, str(caught.exception), argv)

    def test_muxMakesSocketsOptional(self):
        """As in sc_remoted 1.162, -U may be left out when -M is given."""
        self.assertIn("--mux=/run/mux", twistdArgs(["-P", "1", "-M", "/run/mux"]))

    def test_notSupportedYet(self):
        invocation = cli.parseCommandLine(BASE + ["-c", "c", "-p", "k", "-M", "m", "-O", "skipnameverification"])
        supported = {"port", "sockets"}
        with self.assertRaises(cli.NotSupported) as caught:
            cli.checkSupported(invocation, supported)
        self.assertEqual(str(caught.exception), "-c is not supported yet by this sc_remoted")
        supported |= {"tls-cert", "tls-key", "skip-name-verification"}
        with self.assertRaises(cli.NotSupported) as caught:
            cli.checkSupported(invocation, supported)
        self.assertEqual(str(caught.exception), "-M is not supported yet by this sc_remoted")

    def test_supportedOptions(self):
        supported = cli.supportedOptions()
        for name in ["port", "sockets", "zombie-time", "ipv4-only", "ipv6-only", "allow-group",
                     "allow-other", "debug", "status-port", "status-allow-remote"]:
            self.assertIn(name, supported)

    def test_errorsNameCFlags(self):
        self.assertEqual(cli._cFlagsIn("--sockets /x: not a directory"), "-U /x: not a directory")
        self.assertEqual(cli._cFlagsIn("--zombie-time must be"), "-Z must be")
        self.assertEqual(cli._cFlagsIn("--tls-cert and --tls-key"), "-c and --tls-key")
        self.assertEqual(cli._cFlagsIn("--status-port: bad"), "--status-port: bad")


class RunTests(SynchronousTestCase):
    """L{cli.run} before anything starts: help, version, usage errors."""

    def run_(self, argv):
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        status = cli.run(argv)
        return status, out.getvalue(), err.getvalue()

    def test_help(self):
        status, out, err = self.run_(["-?"])
        self.assertEqual((status, err), (0, ""))
        self.assertTrue(out.startswith("usage: sc_remoted"))
        for flag in ["-4", "-6", "-D", "-O", "-P", "-U", "-e", "-Z", "-c", "-p", "-C", "-M", "-m", "-v"]:
            self.assertIn("\n  %s " % (flag,), out)

    def test_version(self):
        status, out, err = self.run_(["-v"])
        self.assertEqual((status, out, err), (0, "sc_remoted %s (Python, on Twisted)\n" % (sc_remoted.__version__,), ""))

    def test_unknownFlag(self):
        status, out, err = self.run_(BASE + ["-q"])
        self.assertEqual((status, out), (2, ""))
        first, rest = err.split("\n", 1)
        self.assertEqual(first, "sc_remoted: option -q not recognized")
        self.assertTrue(rest.startswith("usage: sc_remoted"))

    def test_positional(self):
        status, out, err = self.run_(BASE + ["now"])
        self.assertEqual(status, 2)
        self.assertIn("usage: sc_remoted", err)


def commandEnvironment(testCase):
    """Nothing here depends on it, but keep Python's output unbuffered."""
    old = os.environ.get("PYTHONUNBUFFERED")
    os.environ["PYTHONUNBUFFERED"] = "1"

    def restore():
        if old is None:
            os.environ.pop("PYTHONUNBUFFERED", None)
        else:
            os.environ["PYTHONUNBUFFERED"] = old

    testCase.addCleanup(restore)


def processGone(pid):
    try:
        with open("/proc/%d/stat" % (pid,)) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


class ProcessTests(TestCase):
    """The command as operators run it: a process of its own."""

    timeout = 60

    def setUp(self):
        commandEnvironment(self)
        self.directory = makeSocketsDirectory(self)

    @defer.inlineCallbacks
    def fails(self, argv, message, status=1):
        """C{argv} exits with C{status} after one line, C{message}, on stderr."""
        result = yield runToCompletion(reactor, COMMAND + argv, 30, self)
        self.assertEqual(result.exitCode, status, result)
        self.assertEqual(result.err.decode(), "sc_remoted: %s\n" % (message,), result)

    @defer.inlineCallbacks
    def test_startupErrors(self):
        """Every startup error is one line and exit status 1, nothing started."""
        port = freePort()
        missing = os.path.join(self.directory, "missing")
        yield self.fails(["-P", str(port), "-U", missing], "-U %s: No such file or directory" % (missing,))
        notDirectory = os.path.join(self.directory, "file")
        open(notDirectory, "w").close()
        yield self.fails(["-P", str(port), "-U", notDirectory], "-U %s: not a directory" % (notDirectory,))
        long = os.path.join(self.directory, "d" * 70)
        os.mkdir(long)
        result = yield runToCompletion(reactor, COMMAND + ["-P", str(port), "-U", long], 30, self)
        self.assertEqual(result.exitCode, 1, result)
        self.assertEqual(result.err.count(b"\n"), 1, result)
        self.assertIn(b"exceed the 107-byte limit", result.err)
        result = yield runToCompletion(
            reactor, COMMAND + ["-P", str(port), "-U", self.directory, "--status-port", "tcp:9"], 30, self
        )
        self.assertEqual(result.exitCode, 1, result)
        self.assertTrue(result.err.startswith(b"sc_remoted: --status-port: 'tcp:9' is not a loopback address"), result)

    @defer.inlineCallbacks
    def test_portInUse(self):
        """A port in use: one line, in the foreground and with -D."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind((LOOPBACK, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        message = "cannot listen for scamper on 127.0.0.1:%d: Address already in use" % (port,)
        yield self.fails(["-P", "127.0.0.1:%d" % (port,), "-U", self.directory], message)
        pidfile = os.path.join(self.directory, "pid")
        yield self.fails(["-P", "127.0.0.1:%d" % (port,), "-U", self.directory, "-D", "-e", pidfile], message)
        self.assertFalse(os.path.exists(pidfile))
        yield self.fails(
            ["-P", "127.0.0.1:%d" % (freePort(),), "-U", self.directory, "--status-port", str(port)],
            "cannot listen for status requests on 127.0.0.1:%d: Address already in use" % (port,),
        )
        self.assertEqual(sockets(self.directory), [])

    @defer.inlineCallbacks
    def test_usageErrorStatus(self):
        result = yield runToCompletion(reactor, COMMAND + BASE + ["-Q"], 30, self)
        self.assertEqual(result.exitCode, 2, result)
        self.assertIn(b"usage: sc_remoted", result.err)

    @defer.inlineCallbacks
    def test_noPidfileByDefault(self):
        """In the foreground, and no pidfile (twistd's twistd.pid) unless -e."""
        port = freePort()
        workdir = makeSocketsDirectory(self)
        process = spawn(self, reactor, COMMAND + ["-P", "127.0.0.1:%d" % (port,), "-U", self.directory], path=workdir)
        yield waitFor(reactor, lambda: b"starting on %d" % (port,) in process.output().encode(), 20, "the listener")
        self.assertTrue(process.running)
        self.assertEqual(os.listdir(workdir), [])
        process.kill(signal.SIGTERM)
        result = yield process.wait(20)
        self.assertEqual(result.exitCode, 0, result)

    @defer.inlineCallbacks
    def test_daemonPidfile(self):
        """
        With -D and -e, the command returns once the daemon runs, and the
        pidfile holds the daemon's own pid (not the C daemon's parent pid);
        SIGTERM to it removes the pidfile.
        """
        port = freePort()
        pidfile = os.path.join(self.directory, "sc_remoted.pid")
        sockdir = makeSocketsDirectory(self)
        argv = COMMAND + ["-P", "127.0.0.1:%d" % (port,), "-U", sockdir, "-D", "-e", pidfile]
        result = yield runToCompletion(reactor, argv, 30, self)
        self.assertEqual((result.exitCode, result.err), (0, b""), result)
        with open(pidfile) as f:
            pid = int(f.read())
        self.addCleanup(self._kill, pid)
        with open("/proc/%d/cmdline" % (pid,), "rb") as f:
            self.assertIn(b"sc_remoted.cli", f.read())
        with socket.create_connection((LOOPBACK, port), timeout=5):
            pass
        os.kill(pid, signal.SIGTERM)
        yield waitFor(reactor, lambda: processGone(pid), 20, "the daemon to exit")
        self.assertFalse(os.path.exists(pidfile))

    def _kill(self, pid):
        if not processGone(pid):
            os.kill(pid, signal.SIGKILL)


class ConsoleScriptTests(TestCase):
    """C{pip install .} installs the C{sc_remoted} console script."""

    timeout = 30

    @defer.inlineCallbacks
    def test_installed(self):
        script = os.path.join(sysconfig.get_path("scripts"), "sc_remoted")
        if not os.path.exists(script):
            raise SkipTest("sc_remoted is not installed in %s (pip install .)" % (script,))
        with open(script, "rb") as f:
            self.assertIn(b"sc_remoted.cli", f.read())
        result = yield runToCompletion(reactor, [sys.executable, script, "-v"], 20, self)
        self.assertEqual(result.exitCode, 0, result)
        self.assertTrue(result.out.startswith(b"sc_remoted "), result)
