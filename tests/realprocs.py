"""
Helpers for the tests that run the real programs: Debian's C{scamper},
C{sc_attach} and C{sc_warts2text}, and the installed C{twistd}.

Everything here is asynchronous, because in most of these tests our own
daemon runs in the same reactor as the test: a blocking call would
starve it.  Every process is started with C{reactor.spawnProcess} and
ended by its PID when the test is cleaned up (SIGTERM, then SIGKILL);
every temporary directory is removed; everything is on loopback.
"""

import os
import shutil
import signal
import socket
import stat
import sysconfig
import tempfile
from typing import Callable, List, Optional, Sequence

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest
from zope.interface import implementer

LOOPBACK = "127.0.0.1"
REAL_PROGRAMS = ("scamper", "sc_attach", "sc_warts2text")


def requireRealScamper() -> None:
    """
    Skip the calling test unless scamper and its tools are installed and
    we may probe (scamper needs root for its raw sockets).
    """
    missing = [name for name in REAL_PROGRAMS if shutil.which(name) is None]
    if missing:
        raise SkipTest("not installed: %s (apt-get install scamper)" % (", ".join(missing),))
    if os.geteuid() != 0:
        raise SkipTest("scamper must run as root to probe")


def twistdScript() -> str:
    """
    The path of the installed C{twistd} console script, to be run with
    C{sys.executable} so that the PID we get is the Python process itself
    (C{twistd} on C{PATH} may be a shell wrapper such as a pyenv shim).
    """
    candidates = [os.path.join(sysconfig.get_path("scripts"), "twistd")]
    found = shutil.which("twistd")
    if found is not None:
        candidates.append(found)
    for candidate in candidates:
        try:
            with open(candidate, "rb") as f:
                first = f.readline()
        except OSError:
            continue
        if first.startswith(b"#!") and b"python" in first:
            return candidate
    raise SkipTest("no Python twistd script found (looked at %s)" % (", ".join(candidates),))


def freePort() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@implementer(IStreamServerEndpoint)
class PortRecordingEndpoint:
    """
    A server endpoint that remembers the port number it got, so that the
    daemon can listen on port 0 and the test learn the real port.
    """

    def __init__(self, wrapped: IStreamServerEndpoint) -> None:
        self._wrapped = wrapped
        self.port = 0

    def listen(self, factory) -> defer.Deferred:
        def record(listening):
            self.port = listening.getHost().port
            return listening

        return self._wrapped.listen(factory).addCallback(record)


def makeSocketsDirectory(testCase) -> str:
    """
    A short, private temporary directory (UNIX socket paths are limited
    to 107 bytes), removed when the test is cleaned up.
    """
    directory = tempfile.mkdtemp(dir="/tmp", prefix="scr")
    testCase.addCleanup(shutil.rmtree, directory, True)
    return directory


def sockets(directory: str) -> List[str]:
    """The names of the UNIX sockets in C{directory}, sorted."""
    names = []
    for name in sorted(os.listdir(directory)):
        try:
            if stat.S_ISSOCK(os.lstat(os.path.join(directory, name)).st_mode):
                names.append(name)
        except FileNotFoundError:
            pass
    return names


def sleep(reactor, seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


def waitFor(
    reactor,
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> defer.Deferred:
    """
    Poll C{predicate} every C{interval} seconds until it returns something
    true, and fire with that value; fail with L{AssertionError} naming
    C{what} after C{timeout} seconds.
    """
    deadline = reactor.seconds() + timeout
    result: defer.Deferred = defer.Deferred()

    def check() -> None:
        try:
            value = predicate()
        except Exception:
            loop.stop()
            result.errback(Failure())
            return
        if value:
            loop.stop()
            result.callback(value)
        elif reactor.seconds() >= deadline:
            loop.stop()
            result.errback(AssertionError("timed out after %.1f s waiting for %s" % (timeout, what)))

    loop = task.LoopingCall(check)
    loop.clock = reactor
    loop.start(interval, now=True)
    return result


def waitForSocket(reactor, directory: str, timeout: float = 10.0, name: Optional[str] = None) -> defer.Deferred:
    """
    Fire with the name of a socket file in C{directory} (C{name} itself,
    or the only one there) once it exists.
    """

    def present() -> Optional[str]:
        found = sockets(directory)
        if name is not None:
            return name if name in found else None
        if len(found) > 1:
            raise AssertionError("expected one socket in %s, found %r" % (directory, found))
        return found[0] if found else None

    return waitFor(reactor, present, timeout, "a socket %s in %s" % (name or "", directory))


# Processes --------------------------------------------------------------

_PR_SET_CHILD_SUBREAPER = 36


def _becomeSubreaper() -> bool:
    """
    Have orphaned descendants (scamper's privilege-separation child, which
    outlives its parent for a moment) reparented to this process rather
    than to PID 1, so that we can reap them: on some machines PID 1 is not
    an init that reaps, and they would stay as zombies.  Linux only.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def childrenOf(pid: int) -> List[int]:
    """The PIDs whose parent is C{pid}, from /proc."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % (entry,)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(entry))
    return children


def _reaped(pid: int) -> bool:
    """Reap C{pid} if it is our exited child; true once it is gone."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        # Not (or no longer) our child: gone, or still another's child.
        return not os.path.exists("/proc/%d" % (pid,))
    return done == pid


class ProcessResult:
    """What a finished process left: its output and how it ended."""

    def __init__(self, out: bytes, err: bytes, reason: Failure) -> None:
        self.out = out
        self.err = err
        self.exitCode: Optional[int] = reason.value.exitCode
        self.signal: Optional[int] = getattr(reason.value, "signal", None)

    def __repr__(self) -> str:
        return "<ProcessResult exit=%r signal=%r out=%r err=%r>" % (
            self.exitCode,
            self.signal,
            self.out[-2000:],
            self.err[-2000:],
        )


class _Collector(ProcessProtocol):
    def __init__(self, ended: defer.Deferred) -> None:
        self.ended = ended
        self.out: List[bytes] = []
        self.err: List[bytes] = []

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Failure) -> None:
        reason.trap(ProcessDone, ProcessTerminated)
        self.ended.callback(ProcessResult(b"".join(self.out), b"".join(self.err), reason))


class RealProcess:
    """
    A child process started by a test.

    @ivar pid: its PID, by which it is ended.
    @ivar ended: fires with a L{ProcessResult} when it has exited and its
        pipes are closed.
    """

    _subreaper: Optional[bool] = None

    def __init__(self, reactor, argv: Sequence[str], path: Optional[str] = None) -> None:
        if RealProcess._subreaper is None:
            RealProcess._subreaper = _becomeSubreaper()
        self._reactor = reactor
        self.argv = list(argv)
        self._ended: defer.Deferred = defer.Deferred()
        self.result: Optional[ProcessResult] = None
        self._ended.addCallback(self._gotResult)
        self._waiting: List[defer.Deferred] = []
        self.protocol = _Collector(self._ended)
        self.transport = reactor.spawnProcess(
            self.protocol,
            self.argv[0],
            self.argv,
            env=dict(os.environ),
            path=path,
        )
        self.pid: int = self.transport.pid

    def _gotResult(self, result: ProcessResult) -> None:
        self.result = result
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(result)

    @property
    def running(self) -> bool:
        return self.result is None

    def output(self) -> str:
        """What it has written so far (both streams), for messages."""
        return (b"".join(self.protocol.out) + b"".join(self.protocol.err)).decode("utf-8", "replace")

    def wait(self, timeout: Optional[float] = None) -> defer.Deferred:
        """
        Fire with the L{ProcessResult} once it has ended; with
        C{timeout}, fail with L{AssertionError} if it runs longer.
        """
        if self.result is not None:
            return defer.succeed(self.result)
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        if timeout is not None:
            d.addTimeout(timeout, self._reactor)

            def timedOut(f: Failure):
                f.trap(defer.TimeoutError)
                if d in self._waiting:
                    self._waiting.remove(d)
                raise AssertionError(
                    "%s still running after %.1f s; output so far: %r"
                    % (" ".join(self.argv), timeout, self.output()[-2000:])
                )

            d.addErrback(timedOut)
        return d

    def kill(self, sig: int) -> None:
        """Send C{sig} to our PID, if the process is still ours to signal."""
        if self.result is None and self.transport.pid is not None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    @defer.inlineCallbacks
    def stop(self, grace: float = 5.0):
        """
        SIGTERM by PID; SIGKILL if it is still there after C{grace} s.
        Children it leaves behind (scamper's privsep process) are ended
        the same way, by their PIDs, and reaped.
        """
        if self.result is None:
            orphans = childrenOf(self.pid)
            self.kill(signal.SIGTERM)
            try:
                yield self.wait(grace)
            except AssertionError:
                self.kill(signal.SIGKILL)
                yield self.wait(grace)
            if RealProcess._subreaper:
                for pid in orphans:
                    yield self._endOrphan(pid, grace)
        return self.result

    @defer.inlineCallbacks
    def _endOrphan(self, pid: int, grace: float):
        try:
            yield waitFor(self._reactor, lambda: _reaped(pid), grace, "orphan %d to exit" % (pid,))
        except AssertionError:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            yield waitFor(self._reactor, lambda: _reaped(pid), grace, "orphan %d to die" % (pid,))


def spawn(testCase, reactor, argv: Sequence[str], path: Optional[str] = None) -> RealProcess:
    """Start C{argv}; it is ended by PID when C{testCase} is cleaned up."""
    process = RealProcess(reactor, argv, path=path)
    testCase.addCleanup(process.stop)
    return process


@defer.inlineCallbacks
def runToCompletion(reactor, argv: Sequence[str], timeout: float, testCase=None):
    """
    Run a short-lived program (sc_attach, sc_warts2text) and fire with its
    L{ProcessResult}, failing if it takes longer than C{timeout}.
    """
    process = RealProcess(reactor, argv)
    if testCase is not None:
        testCase.addCleanup(process.stop)
    try:
        result = yield process.wait(timeout)
    finally:
        yield process.stop()
    return result


def startScamper(testCase, reactor, port: int, monitorname: Optional[str] = None) -> RealProcess:
    """A real scamper in remote-control mode, connecting to 127.0.0.1:C{port}."""
    argv = ["scamper", "-R", "%s:%d" % (LOOPBACK, port), "-p", "1000"]
    if monitorname is not None:
        argv += ["-M", monitorname]
    return spawn(testCase, reactor, [shutil.which("scamper")] + argv[1:])


def writeCommands(directory: str, name: str, commands: Sequence[str]) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        for command in commands:
            f.write(command + "\n")
    return path


@defer.inlineCallbacks
def wartsText(reactor, path: str, testCase=None):
    """The text C{sc_warts2text} makes of a warts file."""
    result = yield runToCompletion(reactor, [shutil.which("sc_warts2text"), path], 30, testCase)
    if result.exitCode != 0:
        raise AssertionError("sc_warts2text %s failed: %r" % (path, result))
    return result.out.decode("utf-8", "replace")


def replyCounts(text: str) -> dict:
    """
    C{{address: replies}} from C{sc_warts2text} output, counting the
    C{N bytes from ADDRESS} lines.
    """
    counts: dict = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 4 and words[1:3] == ["bytes", "from"]:
            address = words[3].rstrip(",:")
            counts[address] = counts.get(address, 0) + 1
    return counts


def pingRecords(text: str) -> List[str]:
    """The destination of every ping record in C{sc_warts2text} output."""
    destinations = []
    for line in text.splitlines():
        words = line.split()
        # "ping 127.0.0.1 to 127.0.0.2: 84 byte packets"
        if len(words) >= 4 and words[0] == "ping" and words[2] == "to":
            destinations.append(words[3].rstrip(":"))
    return destinations


# A TCP relay that can be frozen and cut ----------------------------------


class _RelaySide(Protocol):
    """One end of a relayed connection; L{_RelayPair} joins two of them."""

    pair: Optional["_RelayPair"] = None

    def dataReceived(self, data: bytes) -> None:
        assert self.pair is not None
        self.pair.received(self, data)

    def connectionLost(self, reason: Failure) -> None:
        if self.pair is not None:
            self.pair.lost(self)


class _RelayPair:
    """
    A connection accepted by the relay and its onward connection to the
    target.  Bytes are passed on unless frozen; while frozen both sides
    are still read, so the data piles up here (as in a stuck middlebox)
    rather than in the kernel.
    """

    def __init__(self, relay: "Relay", inbound: _RelaySide) -> None:
        self.relay = relay
        self.inbound = inbound
        self.outbound: Optional[_RelaySide] = None
        self.frozen = False
        self.closed = False
        self.swallowed = {"toTarget": 0, "fromTarget": 0}
        self._pending: List[bytes] = []
        inbound.pair = self

    def connected(self, outbound: _RelaySide) -> None:
        if self.closed:
            outbound.transport.abortConnection()
            return
        self.outbound = outbound
        outbound.pair = self
        pending, self._pending = self._pending, []
        for data in pending:
            outbound.transport.write(data)

    def received(self, side: _RelaySide, data: bytes) -> None:
        if self.closed:
            return
        toTarget = side is self.inbound
        if self.frozen:
            self.swallowed["toTarget" if toTarget else "fromTarget"] += len(data)
            return
        if toTarget:
            if self.outbound is None:
                self._pending.append(data)
            else:
                self.outbound.transport.write(data)
        else:
            self.inbound.transport.write(data)

    def lost(self, side: _RelaySide) -> None:
        # Either end closing ends the pair, abruptly, as the C relays did.
        self.cut()

    def cut(self) -> None:
        if self.closed:
            return
        self.closed = True
        for side in (self.inbound, self.outbound):
            if side is not None and side.transport is not None and side.transport.connected:
                side.transport.abortConnection()


class Relay:
    """
    A TCP relay on 127.0.0.1 for putting between scamper and the daemon.

    @ivar port: the port scamper should connect to.
    @ivar pairs: every connection relayed so far, oldest first.
    """

    def __init__(self, reactor, targetPort: int) -> None:
        self._reactor = reactor
        self._target = TCP4ClientEndpoint(reactor, LOOPBACK, targetPort, timeout=5)
        self.pairs: List[_RelayPair] = []
        self._listening = None
        self.port = 0

    @defer.inlineCallbacks
    def start(self):
        factory = Factory.forProtocol(_RelaySide)
        factory.buildProtocol = self._accepted  # type: ignore[method-assign]
        self._listening = yield TCP4ServerEndpoint(self._reactor, 0, interface=LOOPBACK).listen(factory)
        self.port = self._listening.getHost().port
        return self

    def _accepted(self, addr) -> _RelaySide:
        inbound = _RelaySide()
        pair = _RelayPair(self, inbound)
        self.pairs.append(pair)
        d = self._target.connect(Factory.forProtocol(_RelaySide))
        d.addCallbacks(pair.connected, lambda f: pair.cut())
        return inbound

    @property
    def live(self) -> List[_RelayPair]:
        return [pair for pair in self.pairs if not pair.closed]

    def freeze(self) -> None:
        """Stop forwarding on every live connection; keep reading."""
        for pair in self.live:
            pair.frozen = True

    def cut(self) -> None:
        """Close both sides of every live connection with RST."""
        for pair in self.live:
            pair.cut()

    @defer.inlineCallbacks
    def stop(self):
        self.cut()
        if self._listening is not None:
            yield self._listening.stopListening()
            self._listening = None
        # Let the aborted connections finish closing.
        yield sleep(self._reactor, 0.05)
