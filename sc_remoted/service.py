"""
The service tree: a L{ControllerService} owning the L{Controller}, beside
one listening service per scamper-facing endpoint.  Usable as is inside
another Twisted application.
"""

import signal
from typing import Iterable

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger

from .controller import Controller

log = Logger()


class ControllerService(Service):
    """
    Runs a L{Controller}: on stop, every vantage point is freed, so its
    socket file is removed and its clients and scamper connection closed.
    """

    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def stopService(self):
        Service.stopService(self)
        return self.controller.stopService()


class SighupService(Service):
    """
    Keep SIGHUP from killing the process (twistd installs no handler).
    The C daemon reloads its TLS files on SIGHUP; until there is anything
    to reload, the signal is logged and otherwise ignored.  A handler
    installed before ours is still called.
    """

    def startService(self):
        Service.startService(self)
        self._previous = signal.signal(signal.SIGHUP, self._received)

    def stopService(self):
        signal.signal(signal.SIGHUP, self._previous)
        return Service.stopService(self)

    def _received(self, signum, frame):
        log.info("SIGHUP received; nothing to reload", sc_event="reload")
        if callable(self._previous):
            self._previous(signum, frame)


def makeRemotedService(controller: Controller, endpoints: Iterable[IStreamServerEndpoint]) -> MultiService:
    """
    The whole daemon: the controller first, so that on shutdown the
    listeners (stopped in reverse order) close before the sessions are
    freed.
    """
    top = MultiService()
    ControllerService(controller).setServiceParent(top)
    factory = controller.scamperFactory()
    for endpoint in endpoints:
        listener = StreamServerEndpointService(endpoint, factory)
        # Fail the start, rather than only logging, when the port is taken.
        listener._raiseSynchronously = True
        listener.setServiceParent(top)
    return top
