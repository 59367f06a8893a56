"""
The service tree: a L{ControllerService} owning the L{Controller}, beside
one listening service per scamper-facing endpoint.  Usable as is inside
another Twisted application.
"""

import os
import signal
import stat
from typing import TYPE_CHECKING, Callable, Iterable, List, Optional, Sequence

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.address import UNIXAddress
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from zope.interface import implementer

from .controller import Controller
from .eventlog import EventLogger
from .logs import addressText
from .sockets import removeStaleSockets

if TYPE_CHECKING:  # pragma: no cover
    from .tls import ReloadableServerTLS

log = EventLogger()


class ControllerService(Service):
    """
    Runs a L{Controller}: on stop, every vantage point is freed, so its
    socket file is removed and its clients and scamper connection closed.

    @param startupChecks: what must hold before anything listens (a
        sockets directory that exists, a meta-file that parses), called
        first when the tree starts; each raises L{StartupError}.  They run
        after twistd's chroot and daemonizing, and so see the files as
        the daemon will.
    """

    def __init__(self, controller: Controller, startupChecks: Sequence[Callable[[], None]] = ()) -> None:
        self.controller = controller
        self.startupChecks = list(startupChecks)

    def privilegedStartService(self):
        Service.privilegedStartService(self)
        for check in self.startupChecks:
            check()

    def startService(self):
        Service.startService(self)
        if self.controller.socketsDirectory is not None:
            removeStaleSockets(self.controller.socketsDirectory)

    def stopService(self):
        Service.stopService(self)
        return self.controller.stopService()


class StartupError(Exception):
    """Why the daemon cannot start, in one line for the operator."""


class ListeningService(StreamServerEndpointService):
    """
    A listener whose start fails (rather than only logging) when it cannot
    listen, with a L{StartupError} naming what it was for.

    @ivar port: the listening port, once listening.
    """

    _raiseSynchronously = True
    port: Optional[IListeningPort] = None

    def __init__(self, endpoint: IStreamServerEndpoint, factory, what: str = "scamper") -> None:
        StreamServerEndpointService.__init__(self, endpoint, factory)
        self.what = what

    def privilegedStartService(self):
        # Listen through a wrapper that keeps the port: C{endpoint} itself
        # stays the caller's.
        endpoint, self.endpoint = self.endpoint, _PortKeeper(self.endpoint, self)
        try:
            return StreamServerEndpointService.privilegedStartService(self)
        except CannotListenError as e:
            error = e.socketError
            reason = getattr(error, "strerror", None) or str(error)
            where = "%s:%s" % (e.interface or "*", e.port)
            raise StartupError("cannot listen for %s on %s: %s" % (self.what, where, reason)) from None
        finally:
            self.endpoint = endpoint

    def abandon(self) -> None:
        """
        The process failed to start and is about to exit without running
        the reactor: remove the UNIX socket file this listener made, which
        Twisted would remove only from the running reactor.  The socket
        itself goes with the process.
        """
        if self.port is None:
            return
        address = self.port.getHost()
        if isinstance(address, UNIXAddress) and address.name:
            path = os.fsdecode(address.name)
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass


@implementer(IStreamServerEndpoint)
class _PortKeeper:
    """An endpoint that hands the port it listens on to a L{ListeningService}."""

    def __init__(self, endpoint: IStreamServerEndpoint, service: ListeningService) -> None:
        self._endpoint = endpoint
        self._service = service

    def listen(self, factory) -> defer.Deferred:
        def keep(port: IListeningPort) -> IListeningPort:
            self._service.port = port
            # Twisted's own line names neither the address nor what the
            # port is for, and is dropped from our logs (sc_remoted.logs).
            log.info(
                "listening for {what} on {address}",
                what=self._service.what,
                address=addressText(port.getHost()),
                sc_event="listening",
            )
            return port

        return self._endpoint.listen(factory).addCallback(keep)


class SighupService(Service):
    """
    Keep SIGHUP from killing the process (twistd installs no handler).
    The C daemon reloads its TLS files on SIGHUP: with C{reload} (see
    L{sc_remoted.tls.ReloadableServerTLS.reload}) so do we, on the reactor
    thread; without it the signal is logged and otherwise ignored.  A
    handler installed before ours is still called.
    """

    def __init__(self, reload: Optional[Callable[[], object]] = None, reactor=None) -> None:
        self._reload = reload
        self._reloads: List[Callable[[], object]] = []
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor

    def addReload(self, reload: Callable[[], object]) -> None:
        """Also call C{reload()} on SIGHUP (e.g. the mux's meta-file), after C{reload}."""
        self._reloads.append(reload)

    def _reloadAll(self) -> None:
        for reload in ([self._reload] if self._reload is not None else []) + self._reloads:
            try:
                reload()
            except Exception:
                log.failure("reload {reload!r} failed", reload=reload, sc_event="reload_failed")

    def startService(self):
        Service.startService(self)
        self._previous = signal.signal(signal.SIGHUP, self._received)

    def stopService(self):
        signal.signal(signal.SIGHUP, self._previous)
        return Service.stopService(self)

    def _received(self, signum, frame):
        if self._reload is None and not self._reloads:
            log.info("SIGHUP received; nothing to reload", sc_event="reload")
        else:
            # Not in the signal handler: callFromThread is signal-safe.
            self._reactor.callFromThread(self._reloadAll if self._reloads else self._reload)
        if callable(self._previous):
            self._previous(signum, frame)


def makeRemotedService(
    controller: Controller,
    endpoints: Iterable[IStreamServerEndpoint],
    tls: Optional["ReloadableServerTLS"] = None,
    startupChecks: Sequence[Callable[[], None]] = (),
) -> MultiService:
    """
    The whole daemon: the controller first, so that on shutdown the
    listeners (stopped in reverse order) close before the sessions are
    freed.  With C{tls}, every scamper connection is TLS.  The
    C{startupChecks} (see L{ControllerService}) run before any listener
    starts.
    """
    top = MultiService()
    ControllerService(controller, startupChecks).setServiceParent(top)
    factory: IProtocolFactory = controller.scamperFactory()
    if tls is not None:
        factory = tls.wrapFactory(factory, controller.reactor)
    for endpoint in endpoints:
        listener = ListeningService(endpoint, factory)
        listener.setServiceParent(top)
    # For an embedding application: the vantage points, observers.
    top.controller = controller  # type: ignore[attr-defined]
    return top
