"""
The process around the service tree, the same from both front doors
(C{twistd sc_remoted} and the C{sc_remoted} command): daemonizing, the
pidfile, the one-line startup errors and the exit statuses.  SIGTERM
and SIGINT are L{sc_remoted.shutdown}'s.

It does what twistd would do itself, in another order, because twistd's
order loses information and races:

  - twistd's daemon child reports a startup error to its parent in 100
    bytes, the repr of an exception line (C{An error has occurred:
    b'sc_remoted.service.StartupError: cannot listen for scamper on
    127.0.0.1:31353: Address already in '}); here the parent prints the
    child's whole line;
  - twistd writes the pidfile before anything listens and removes it
    after it has let the parent exit, so the parent's exit status can
    be seen while the pidfile is still there; here the pidfile is
    written once every listener listens, and a start that fails removes
    every file it made before the parent is told.

Exit statuses: 0 after a clean shutdown, L{EXIT_STARTUP} when the daemon
cannot start, L{EXIT_USAGE} for a bad command line.
"""

import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, TextIO

from twisted.application.service import IService, MultiService
from twisted.internet import defer
from twisted.internet.interfaces import IReactorDaemonize
from twisted.logger import LogLevel

from .collector import paceCollector
from .eventlog import EventLogger, setLogLevel
from .service import ListeningService, StartupError
from .shutdown import ShutdownSignals

log = EventLogger()

PROGRAM = "sc_remoted"
EXIT_STARTUP = 1
EXIT_USAGE = 2

# What a daemon child writes to its parent: b"0" once it runs, or
# FAILED and one line.
_STARTED = b"0"
_FAILED = b"1 "


def reportError(message: str, usage: Optional[str] = None, stream: Optional[TextIO] = None) -> None:
    """
    C{sc_remoted: message} on the process's own standard error (twistd
    points C{sys.stderr} into the log once logging starts), then the
    usage text if given.
    """
    stream = stream if stream is not None else sys.__stderr__
    assert stream is not None
    stream.write("%s: %s\n" % (PROGRAM, message))
    if usage is not None:
        stream.write(usage if usage.endswith("\n") else usage + "\n")
    stream.flush()


@dataclass(frozen=True)
class ProcessSettings:
    """
    @ivar daemon: detach from the terminal (C{-D}, twistd without C{-n}).
    @ivar pidfile: where to write the daemon's pid, if anywhere; a path
        as seen after the chroot.
    @ivar umask: the umask to set at startup, or L{None} to keep it.
    @ivar youngGeneration: the garbage collector's threshold for its
        youngest generation (L{sc_remoted.collector}), or L{None} to
        keep CPython's.
    @ivar logLevel: the least severe level of the daemon's events that
        are logged (L{sc_remoted.eventlog.setLogLevel}), or L{None} to
        log them all.
    """

    daemon: bool = False
    pidfile: Optional[str] = None
    umask: Optional[int] = None
    youngGeneration: Optional[int] = None
    logLevel: Optional[LogLevel] = None


class ProcessService(MultiService):
    """
    The service twistd runs: the daemon's tree (C{remoted}) inside the
    process's own start and stop.

    Start: L{ShutdownSignals.arm}, the umask, the collector's pace,
    daemonizing, the tree's listeners, the pidfile; then the tree's
    C{startService}, and only then is a waiting parent told that the
    daemon runs.  A failure on the way abandons what listens, removes
    the pidfile, reports one line (to stderr, or to the parent, which
    prints it) and exits with L{EXIT_STARTUP}.  Stop: the tree, then the
    pidfile.

    @param describe: rewrites an error message for the front door in
        use (the C{sc_remoted} command names C flags).
    """

    def __init__(
        self,
        remoted: IService,
        settings: ProcessSettings,
        signals: ShutdownSignals,
        reactor,
        describe: Callable[[str], str] = lambda message: message,
        stderr: Optional[TextIO] = None,
    ) -> None:
        MultiService.__init__(self)
        self.remoted = remoted
        remoted.setServiceParent(self)
        self.settings = settings
        self._signals = signals
        self._reactor = reactor
        self._describe = describe
        self._stderr = stderr
        self._parent: Optional[int] = None
        self._pidfileWritten = False

    def privilegedStartService(self) -> None:
        self._signals.arm()
        if self.settings.umask is not None:
            os.umask(self.settings.umask)
        if self.settings.youngGeneration is not None:
            paceCollector(self.settings.youngGeneration)
        if self.settings.logLevel is not None:
            setLogLevel(self.settings.logLevel)
        if self.settings.daemon:
            self._parent = daemonize(self._reactor, self._stderr)
        try:
            MultiService.privilegedStartService(self)
            self._writePidfile()
        except Exception as e:
            self._failed(e)

    def startService(self) -> None:
        try:
            MultiService.startService(self)
        except Exception as e:
            self._failed(e)
        self._tellParent(_STARTED)

    def stopService(self) -> defer.Deferred:
        d = defer.maybeDeferred(MultiService.stopService, self)
        d.addBoth(self._removePidfile)
        return d

    def _writePidfile(self) -> None:
        path = self.settings.pidfile
        if not path:
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self._pidfileWritten = True
            with os.fdopen(fd, "w") as f:
                f.write("%d\n" % (os.getpid(),))
        except OSError as e:
            raise StartupError("cannot write the pidfile %s: %s" % (path, e.strerror))

    def _removePidfile(self, result: object = None) -> object:
        if self._pidfileWritten:
            self._pidfileWritten = False
            assert self.settings.pidfile is not None
            try:
                os.unlink(self.settings.pidfile)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.error("cannot remove the pidfile {path}: {reason}", path=self.settings.pidfile, reason=e.strerror)
        return result

    def _failed(self, error: Exception) -> None:
        if isinstance(error, StartupError):
            message = str(error)
        else:
            log.failure("the daemon failed to start")
            message = "%s: %s" % (type(error).__name__, error)
        for listener in _listeners(self):
            listener.abandon()
        self._removePidfile()
        message = self._describe(message)
        if self._parent is not None:
            self._tellParent(_FAILED + message.encode("utf-8", "backslashreplace"))
        else:
            reportError(message, stream=self._stderr)
        raise SystemExit(EXIT_STARTUP)

    def _tellParent(self, status: bytes) -> None:
        if self._parent is None:
            return
        pipe, self._parent = self._parent, None
        try:
            os.write(pipe, status)
        finally:
            os.close(pipe)


def _listeners(service: IService) -> Iterator[ListeningService]:
    if isinstance(service, ListeningService):
        yield service
    if isinstance(service, MultiService):
        for child in service:
            yield from _listeners(child)


def daemonize(reactor, stderr: Optional[TextIO] = None) -> int:
    """
    Detach as C{daemon(1, 0)} does (the working directory is kept; the
    standard streams go to /dev/null), by the usual double fork.  The
    parent waits for the daemon's word and exits with the status it
    means, printing its error line to C{stderr}; the daemon gets the
    pipe to give it on.
    """
    if IReactorDaemonize.providedBy(reactor):
        reactor.beforeDaemonize()
    readEnd, writeEnd = os.pipe()
    if os.fork():
        os.close(writeEnd)
        os._exit(waitForDaemon(readEnd, stderr))
    os.close(readEnd)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    if IReactorDaemonize.providedBy(reactor):
        reactor.afterDaemonize()
    return writeEnd


def waitForDaemon(readEnd: int, stderr: Optional[TextIO] = None) -> int:
    """The daemon's word, read to the end: the exit status for its parent."""
    chunks = []
    while True:
        chunk = os.read(readEnd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(readEnd)
    status = b"".join(chunks)
    if status == _STARTED:
        return 0
    if status.startswith(_FAILED):
        message = status[len(_FAILED) :].decode("utf-8", "replace")
    else:
        message = "the daemon exited while starting; see its log"
    reportError(message, stream=stderr)
    return EXIT_STARTUP
