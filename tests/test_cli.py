"""
Tests for the C{sc_remoted} command (L{sc_remoted.cli}): every C flag's
mapping onto the plugin and the process, the usage errors, and, with the
command run as a process, daemonizing, the pidfile, the one-line startup
errors, the exit statuses, and SIGTERM at every moment of a start.
"""

import io
import os
import random
import signal
import socket
import stat
import sys
import sysconfig
import time

from twisted.internet import defer, reactor
from twisted.logger import LogLevel
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

import sc_remoted
from sc_remoted import cli
from sc_remoted.collector import YOUNG_GENERATION
from sc_remoted.options import OPTIONS, configure
from sc_remoted.process import ProcessSettings

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


class FlagMappingTests(SynchronousTestCase):
    """Each C flag becomes the plugin option, or the process setting, of the same meaning."""

    def plugin(self, argv):
        return list(cli.parseCommandLine(argv).plugin)

    def test_required(self):
        self.assertEqual(self.plugin(BASE), ["--port=31337", "--sockets=/tmp"])

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
        ]:
            self.assertIn(expected, self.plugin(BASE + flags), flags)

    def test_everyLongOption(self):
        """Every option of twistd sc_remoted, by its long name (issue 11, item 1)."""
        for option in OPTIONS:
            argv = ["--" + option.name] + (["x"] if option.argument else [])
            expected = "--%s=x" % (option.name,) if option.argument else "--" + option.name
            self.assertIn(expected, self.plugin(BASE + argv), option.name)

    def test_repeatedO(self):
        args = self.plugin(BASE + ["-O", "allowgroup", "-O", "allowother", "-O", "debug"])
        self.assertEqual(args[2:], ["--allow-group", "--allow-other", "--debug"])

    def test_process(self):
        """-D, -e, -R, --logfile, -O select and -O notimes are the process's."""
        self.assertEqual(cli.parseCommandLine(BASE), cli.Invocation("run", ["--port=31337", "--sockets=/tmp"]))
        invocation = cli.parseCommandLine(
            BASE + ["-D", "-e", "run.pid", "-R", "/srv/jail", "--logfile", "x.log", "-O", "select", "-O", "notimes"]
        )
        self.assertEqual(
            invocation._replace(plugin=()),
            cli.Invocation("run", (), daemon=True, pidfile="run.pid", chroot="/srv/jail", logfile="x.log",
                           noTimes=True, reactor="select"),
        )
        self.assertEqual(list(invocation.plugin), ["--port=31337", "--sockets=/tmp"])
        self.assertEqual(cli.parseCommandLine(BASE + ["--daemon", "--pidfile", "p", "--chroot", "/j"])[2:5],
                         (True, "p", "/j"))

    def test_helpAndVersion(self):
        self.assertEqual(cli.parseCommandLine(["-?"]).action, "help")
        self.assertEqual(cli.parseCommandLine(["--help"]).action, "help")
        self.assertEqual(cli.parseCommandLine(["-v"]).action, "version")

    def test_errors(self):
        for argv, message in [
            (BASE + ["-x"], "option -x not recognized"),
            (BASE + ["--nonsense"], "option --nonsense not recognized"),
            (BASE + ["extra"], "unexpected argument 'extra'"),
            (BASE + ["-O", "fast"], "unknown -O option 'fast'"),
            (BASE + ["-P"], "requires argument"),
        ]:
            with self.assertRaises(cli.CommandLineError, msg=argv) as caught:
                cli.parseCommandLine(argv)
            self.assertIn(message, str(caught.exception), argv)

    def test_muxMakesSocketsOptional(self):
        """As in sc_remoted 1.162, -U may be left out when -M is given."""
        self.assertIn("--mux=/run/mux", self.plugin(["-P", "1", "-M", "/run/mux"]))

    def test_errorsNameCFlags(self):
        self.assertEqual(cli.cFlagsIn("--sockets /x: not a directory"), "-U /x: not a directory")
        self.assertEqual(cli.cFlagsIn("--zombie-time must be"), "-Z must be")
        self.assertEqual(cli.cFlagsIn("--tls-cert and --tls-key must be given together"), "-c and -p must be given together")
        self.assertEqual(cli.cFlagsIn("--skip-name-verification applies only with --tls-ca"),
                         "-O skipnameverification applies only with -C")
        self.assertEqual(cli.cFlagsIn("--status-port: bad"), "--status-port: bad")
        self.assertEqual(cli.cFlagsIn("--mux-port x, --mux y"), "--mux-port x, -M y")
        self.assertEqual(cli.cFlagsIn("--sockets /a--sockets: x"), "-U /a--sockets: x")


class RunTests(SynchronousTestCase):
    """L{cli.run} before anything starts: help, version, bad command lines."""

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
        for flag in ["-4", "-6", "-D", "-O", "-P", "-U", "-e", "-R", "-Z", "-c", "-p", "-C", "-M", "-m", "-v",
                     "--max-connections", "--tls-passphrase-file", "--insecure-sockets-dir", "--mux-port"]:
            self.assertIn("\n  %s" % (flag,), out)

    def test_version(self):
        status, out, err = self.run_(["-v"])
        self.assertEqual((status, out, err), (0, "sc_remoted %s (Python, on Twisted)\n" % (sc_remoted.__version__,), ""))

    def usageError(self, argv, message):
        status, out, err = self.run_(argv)
        self.assertEqual((status, out), (2, ""))
        first, rest = err.split("\n", 1)
        self.assertEqual(first, "sc_remoted: " + message)
        self.assertTrue(rest.startswith("usage: sc_remoted"))

    def test_unknownFlag(self):
        self.usageError(BASE + ["-q"], "option -q not recognized")

    def test_positional(self):
        self.usageError(BASE + ["now"], "unexpected argument 'now'")

    def test_badNumber(self):
        """-Z abc is a bad command line (issue 11, item 3): status 2, the C flag named."""
        self.usageError(BASE + ["-Z", "abc"], "-Z: 'abc' is not a whole number")
        self.usageError(BASE + ["--max-connections", "0"], "--max-connections must be at least 1")

    def test_required(self):
        self.usageError(["-U", "/tmp"], "-P is required")
        self.usageError(["-P", "1"], "-U is required, unless -M or --mux-port is given")

    def test_refused(self):
        """A well-formed command line that is refused: status 1, one line."""
        for argv, message in [
            (BASE + ["--status-port", "tcp:9"], "--status-port: 'tcp:9' is not a loopback address"),
            (["-P", "unix:/tmp/x", "-U", "/tmp"], "-P: 'unix:/tmp/x' is not TCP"),
        ]:
            status, out, err = self.run_(argv)
            self.assertEqual((status, out), (1, ""), argv)
            self.assertEqual(err.count("\n"), 1, err)
            self.assertTrue(err.startswith("sc_remoted: " + message), err)


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


def whenReady(ready, timeout=30.0):
    """
    What C{ready()} returns once it is true, polled in a tight loop that
    holds up this process's reactor: the moments that matter (after a
    listener starts, before the daemon's reactor runs) last milliseconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %r" % (timeout, ready))
        time.sleep(0.0002)


def pidIn(path):
    """The pid a complete pidfile holds, or None."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    return int(text) if text.endswith("\n") else None


class ProcessTests(TestCase):
    """The command as operators run it: a process of its own."""

    timeout = 120

    def setUp(self):
        commandEnvironment(self)
        self.directory = makeSocketsDirectory(self)

    @defer.inlineCallbacks
    def fails(self, argv, message, status=1):
        """C{argv} exits with C{status} after one line, C{message}, on stderr."""
        result = yield runToCompletion(reactor, COMMAND + argv, 30, self)
        self.assertEqual(result.exitCode, status, result)
        self.assertEqual(result.err.decode(), "sc_remoted: %s\n" % (message,), result)
        self.assertNotIn(b"Traceback", result.out, result)

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
        yield self.fails(
            ["-P", "unix:" + os.path.join(self.directory, "s"), "-U", self.directory],
            "-P: 'unix:%s/s' is not TCP, which scamper connects over: give PORT, IPv4:PORT, [IPv6]:PORT, or a "
            "tcp: or tcp6: description (for TLS, -c and -p)" % (self.directory,),
        )
        self.assertEqual(sorted(os.listdir(self.directory)), ["d" * 70, "file"])

    @defer.inlineCallbacks
    def test_portInUse(self):
        """
        A port in use: one whole line, in the foreground and with -D, no
        pidfile left, and no mux socket either (it was made before the
        status port failed).
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind((LOOPBACK, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        pidfile = os.path.join(self.directory, "pid")
        mux = os.path.join(self.directory, "mux")
        message = "cannot listen for scamper on 127.0.0.1:%d: Address already in use" % (port,)
        yield self.fails(["-P", "127.0.0.1:%d" % (port,), "-U", self.directory], message)
        for daemon in ([], ["-D", "--logfile", os.path.join(self.directory, "log")]):
            yield self.fails(["-P", "127.0.0.1:%d" % (port,), "-U", self.directory, "-e", pidfile] + daemon, message)
            self.assertFalse(os.path.exists(pidfile))
            yield self.fails(
                ["-P", "127.0.0.1:%d" % (freePort(),), "-U", self.directory, "-M", mux, "-e", pidfile,
                 "--status-port", str(port)] + daemon,
                "cannot listen for status requests on 127.0.0.1:%d: Address already in use" % (port,),
            )
            self.assertFalse(os.path.exists(pidfile))
            self.assertFalse(os.path.exists(mux))
        self.assertEqual(sockets(self.directory), [])

    test_portInUse.timeout = 120  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_failedDaemonLeavesNoPidfile(self):
        """
        -D with the port in use, again and again: the command's exit and
        the pidfile's absence are never out of order (issue 11, item 4b).
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind((LOOPBACK, 0))
        taken.listen(1)
        pidfile = os.path.join(self.directory, "pid")
        argv = ["-P", "%s:%d" % (LOOPBACK, taken.getsockname()[1]), "-U", self.directory, "-D", "-e", pidfile,
                "--logfile", os.path.join(self.directory, "log")]
        for attempt in range(8):
            result = yield runToCompletion(reactor, COMMAND + argv, 30, self)
            self.assertEqual(result.exitCode, 1, result)
            self.assertFalse(os.path.exists(pidfile), attempt)

    @defer.inlineCallbacks
    def test_usageErrorStatus(self):
        for argv in (BASE + ["-Q"], BASE + ["-Z", "abc"]):
            result = yield runToCompletion(reactor, COMMAND + argv, 30, self)
            self.assertEqual(result.exitCode, 2, result)
            self.assertIn(b"usage: sc_remoted", result.err)

    @defer.inlineCallbacks
    def test_noPidfileByDefault(self):
        """In the foreground, and no pidfile (twistd's twistd.pid) unless -e."""
        port = freePort()
        workdir = makeSocketsDirectory(self)
        process = spawn(self, reactor, COMMAND + ["-P", "127.0.0.1:%d" % (port,), "-U", self.directory], path=workdir)
        yield waitFor(reactor, lambda: accepts(port), 20, "the listener")
        self.assertTrue(process.running)
        self.assertEqual(os.listdir(workdir), [])
        process.kill(signal.SIGTERM)
        result = yield process.wait(20)
        self.assertEqual(result.exitCode, 0, result)

    @defer.inlineCallbacks
    def test_longOptions(self):
        """The long options twistd sc_remoted takes, and the errors that recommend them."""
        port = freePort()
        argv = ["--port", "127.0.0.1:%d" % (port,), "--sockets", self.directory, "--max-connections", "5",
                "--max-per-address", "2", "--max-channels", "3", "--max-zombies", "4", "--zombie-time", "60",
                "--insecure-sockets-dir", "--mux-port", str(freePort()), "--debug", "--allow-group"]
        process = spawn(self, reactor, COMMAND + argv)
        yield waitFor(reactor, lambda: accepts(port), 20, "the listener")
        process.kill(signal.SIGTERM)
        result = yield process.wait(20)
        self.assertEqual(result.exitCode, 0, result)
        os.chmod(self.directory, 0o770)
        self.addCleanup(os.chmod, self.directory, 0o700)
        yield self.fails(
            ["-P", str(port), "-U", self.directory],
            "-U %s: writable by group or others (mode 0770; --insecure-sockets-dir to accept)" % (self.directory,),
        )

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
        argv = COMMAND + ["-P", "127.0.0.1:%d" % (port,), "-U", sockdir, "-D", "-e", pidfile,
                          "--logfile", os.path.join(self.directory, "log")]
        result = yield runToCompletion(reactor, argv, 30, self)
        self.assertEqual((result.exitCode, result.err), (0, b""), result)
        pid = pidIn(pidfile)
        self.addCleanup(self._kill, pid)
        with open("/proc/%d/cmdline" % (pid,), "rb") as f:
            self.assertIn(b"sc_remoted.cli", f.read())
        with socket.create_connection((LOOPBACK, port), timeout=5):
            pass
        os.kill(pid, signal.SIGTERM)
        yield waitFor(reactor, lambda: processGone(pid), 20, "the daemon to exit")
        self.assertFalse(os.path.exists(pidfile))

    @defer.inlineCallbacks
    def test_encryptedKeyUnattended(self):
        """
        An encrypted key with --tls-passphrase-file, as the systemd unit
        would start it; a wrong passphrase is one line, exit status 1.
        """
        from .test_tls import PASSPHRASE, Files

        files = Files(self, PASSPHRASE)
        port = freePort()
        tls = ["-c", files.certPath, "-p", files.keyPath, "--tls-passphrase-file", files.passphrasePath]
        process = spawn(self, reactor, COMMAND + ["-P", "127.0.0.1:%d" % (port,), "-U", self.directory] + tls)
        yield waitFor(reactor, lambda: accepts(port), 20, "the listener")
        process.kill(signal.SIGTERM)
        result = yield process.wait(20)
        self.assertEqual((result.exitCode, result.signal), (0, None), result)
        tls[-1] = files.caPath
        yield self.fails(["-P", "127.0.0.1:%d" % (port,), "-U", self.directory] + tls,
                         "wrong passphrase for private key %s" % (files.keyPath,))

    @defer.inlineCallbacks
    def test_daemonWithoutSyslog(self):
        """-D with no syslog to log to and no --logfile: one line, exit status 1, nothing started."""
        from sc_remoted import logs

        if logs.syslogListens():
            raise SkipTest("a syslog daemon listens here")
        port = freePort()
        result = yield runToCompletion(reactor, COMMAND + ["-D", "-P", "127.0.0.1:%d" % (port,), "-U", self.directory,
                                                           "-e", os.path.join(self.directory, "pid")], 30, self)
        self.assertEqual(result.exitCode, 1, result)
        self.assertEqual(result.err.count(b"\n"), 1, result)
        self.assertIn(b"--logfile", result.err)
        self.assertEqual(os.listdir(self.directory), [])
        self.assertFalse(accepts(port))

    @defer.inlineCallbacks
    def test_chroot(self):
        """
        -R dir (C 2026): twistd's chroot, and every other path names a file
        inside dir: the sockets, the mux socket, the pidfile.
        """
        if os.geteuid() != 0:
            raise SkipTest("chroot needs root")
        from .test_twistd import connectWhenListening

        jail = self.directory
        os.mkdir(os.path.join(jail, "dev"))
        os.mknod(os.path.join(jail, "dev", "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # Twisted opens it
        os.mkdir(os.path.join(jail, "sockets"), 0o700)
        port = freePort()
        process = spawn(self, reactor, COMMAND + ["-R", jail, "-P", "127.0.0.1:%d" % (port,), "-U", "/sockets",
                                                  "-M", "mux", "-e", "/sc_remoted.pid"])
        scamper = yield connectWhenListening(port, 20)
        identity = yield waitFor(reactor, lambda: scamper.identity, 10, "MASTER_ID")
        yield waitFor(reactor, lambda: sockets(os.path.join(jail, "sockets")) == [identity], 10, "the VP's socket")
        self.assertEqual(pidIn(os.path.join(jail, "sc_remoted.pid")), process.pid)
        self.assertEqual(sockets(jail), ["mux"])
        process.kill(signal.SIGTERM)
        result = yield process.wait(20)
        self.assertEqual((result.exitCode, result.signal), (0, None), result)
        self.assertEqual(sorted(os.listdir(jail)), ["dev", "sockets"])
        self.assertEqual(os.listdir(os.path.join(jail, "sockets")), [])

    @defer.inlineCallbacks
    def test_reactor(self):
        """
        The daemon's own reactor (sc_remoted/reactor.py) unless -O select
        asks for Twisted's select reactor; twistd names it in the log.
        """
        for extra, expected in (([], "sc_remoted.reactor.EPollReactor"),
                                (["-O", "select"], "twisted.internet.selectreactor.SelectReactor")):
            output = yield self._outputOfOneArrival(extra)
            self.assertIn("reactor class: %s." % (expected,), output)

    @defer.inlineCallbacks
    def test_logLevel(self):
        """
        --log-level warn leaves out the info lines of a scamper's arrival,
        which the default level writes; Twisted's own lines are still there.
        """
        for extra, arrivalLogged in (([], True), (["--log-level", "warn"], False)):
            output = yield self._outputOfOneArrival(extra)
            self.assertIn("reactor class: ", output)
            self.assertEqual("connection from 127.0.0.1:" in output, arrivalLogged, output)
            self.assertEqual(": registered from 127.0.0.1:" in output, arrivalLogged, output)

    @defer.inlineCallbacks
    def _outputOfOneArrival(self, extra):
        """The output of the command run with C{extra} until one scamper is registered, then SIGTERM."""
        from .test_twistd import connectWhenListening

        port = freePort()
        process = spawn(self, reactor, COMMAND + ["-P", "127.0.0.1:%d" % (port,), "-U", self.directory] + extra)
        scamper = yield connectWhenListening(port, 20)
        yield waitFor(reactor, lambda: scamper.identity, 10, "MASTER_ID")
        process.kill(signal.SIGTERM)
        result = yield process.wait(20)
        self.assertEqual((result.exitCode, result.signal), (0, None), result)
        return process.output()

    def _kill(self, pid):
        if not processGone(pid):
            os.kill(pid, signal.SIGKILL)


class SignalTimingTests(TestCase):
    """
    SIGTERM at the moments a start goes through (issue 11, item 4a): as
    each listener starts, before the reactor runs, and at random, in the
    foreground and as a daemon.  Whenever it comes, every file the
    process made is gone and the exit status is 0, or the process died
    of the signal before it had made anything.
    """

    timeout = 240
    attempts = 5

    def setUp(self):
        commandEnvironment(self)
        self.directory = makeSocketsDirectory(self)
        self.sockets = os.path.join(self.directory, "sockets")
        os.mkdir(self.sockets, 0o700)
        self.mux = os.path.join(self.directory, "mux")
        self.pidfile = os.path.join(self.directory, "pid")

    def argv(self, *extra):
        return COMMAND + ["-P", "%s:%d" % (LOOPBACK, freePort()), "-U", self.sockets, "-M", self.mux,
                          "-e", self.pidfile] + list(extra)

    def assertCleanedUp(self, result, mayDieEarly=False):
        """
        Exit status 0, or, if it may have come before sc_remoted's code ran,
        death by SIGTERM; nothing left either way.
        """
        if not (mayDieEarly and result.signal == signal.SIGTERM):
            self.assertEqual((result.exitCode, result.signal), (0, None), result)
        self.assertFalse(os.path.exists(self.mux), result)
        self.assertFalse(os.path.exists(self.pidfile), result)
        self.assertEqual(os.listdir(self.sockets), [], result)

    @defer.inlineCallbacks
    def test_foreground(self):
        """As the mux socket appears (the first file), and as the pidfile does (the last)."""
        for ready in (lambda: os.path.exists(self.mux), lambda: pidIn(self.pidfile)) * self.attempts:
            process = spawn(self, reactor, self.argv())
            whenReady(ready)
            process.kill(signal.SIGTERM)
            result = yield process.wait(30)
            self.assertCleanedUp(result)

    @defer.inlineCallbacks
    def test_foregroundSIGINT(self):
        for attempt in range(self.attempts):
            process = spawn(self, reactor, self.argv())
            whenReady(lambda: os.path.exists(self.mux))
            process.kill(signal.SIGINT)
            result = yield process.wait(30)
            self.assertCleanedUp(result)

    @defer.inlineCallbacks
    def test_daemon(self):
        """The daemon's pid is known once its pidfile is written: signalled at once."""
        log = os.path.join(self.directory, "log")
        for attempt in range(self.attempts):
            starter = spawn(self, reactor, self.argv("-D", "--logfile", log))
            pid = whenReady(lambda: pidIn(self.pidfile))
            os.kill(pid, signal.SIGTERM)
            result = yield starter.wait(30)
            yield waitFor(reactor, lambda: processGone(pid), 20, "the daemon to exit")
            self.assertCleanedUp(result)

    @defer.inlineCallbacks
    def test_random(self):
        """At any moment after the start: no leftovers, ever."""
        chance = random.Random(11)
        for attempt in range(self.attempts * 2):
            process = spawn(self, reactor, self.argv())
            time.sleep(chance.uniform(0, 1.5))
            process.kill(signal.SIGTERM)
            result = yield process.wait(30)
            self.assertCleanedUp(result, mayDieEarly=True)


def accepts(port):
    """Whether something accepts connections on 127.0.0.1:C{port}."""
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
    except OSError:
        return False
    return True


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


class ProcessSettingsTests(SynchronousTestCase):
    """L{cli.processSettings}: what the command line asks of the process."""

    def test_settings(self):
        """-D and -e, the pidfile as seen after -R, and the daemon's pace of garbage collection."""
        invocation = cli.parseCommandLine(BASE + ["-D", "-e", "run/x.pid", "-R", "/srv/jail"])
        config = configure({"port": "1", "sockets": "/s", "log-level": "warn"})
        self.assertEqual(
            cli.processSettings(invocation, config),
            ProcessSettings(daemon=True, pidfile="/run/x.pid", youngGeneration=YOUNG_GENERATION, logLevel=LogLevel.warn),
        )
        self.assertEqual(
            cli.processSettings(cli.parseCommandLine(BASE), configure({"port": "1", "sockets": "/s"})),
            ProcessSettings(youngGeneration=YOUNG_GENERATION, logLevel=LogLevel.info),
        )
