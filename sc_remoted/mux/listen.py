"""
Where the mux listens: the UNIX socket of C{--mux} and the TCP port of
C{--mux-port}, as services to add to the daemon's tree.

The TCP port is loopback-only unless it is protected: with TLS and
required client certificates (C{--mux-tls-ca}), or by the operator's
explicit C{--mux-port-insecure}.  Whoever reaches the mux can run
measurements from every vantage point.
"""

import os
from typing import TYPE_CHECKING, List, Optional

from twisted.application.service import IService
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.interfaces import IStreamServerEndpoint

from ..endpoints import ListenAddress
from ..eventlog import EventLogger
from ..service import ListeningService, StartupError
from ..sockets import SocketFileError, clearStaleSocket
from .metadata import Metadata
from .server import MuxFactory

if TYPE_CHECKING:  # pragma: no cover
    from ..tls import ReloadableServerTLS

log = EventLogger()


class MuxPortError(ValueError):
    """A C{--mux-port} that cannot or may not be used."""


def checkMuxPortAddress(address: ListenAddress, tls: bool = False, insecure: bool = False) -> None:
    """
    The mux port's rule: loopback only (L{ListenAddress.isLoopback}),
    unless it is TLS with required client certificates (C{tls}) or the
    operator allows plain TCP anywhere (C{insecure}).

    @raise MuxPortError: for an address that would take unauthenticated
        connections from other hosts, or that cannot be told.
    """
    if tls or insecure:
        return
    loopback = address.isLoopback()
    if loopback is None:
        raise MuxPortError(
            "cannot tell whether %r is loopback; use --mux-tls-ca (TLS with client "
            "certificates) or add --mux-port-insecure" % (address.text,)
        )
    if not loopback:
        raise MuxPortError(
            "%r is not a loopback address and the mux gives full control of every "
            "vantage point: use --mux-tls-ca (TLS with client certificates), or add "
            "--mux-port-insecure to serve it without" % (address.text,)
        )


def muxTLS(tls: "ReloadableServerTLS", caPath: str) -> "ReloadableServerTLS":
    """
    The mux port's TLS: the daemon's certificate and key (C{--tls-cert},
    C{--tls-key}, already loaded with their passphrase), and client
    certificates required, signed by C{caPath}.

    @raise sc_remoted.tls.TLSConfigError: if C{caPath} cannot be used.
    """
    from ..tls import ReloadableServerTLS, TLSFiles

    files = tls.files
    return ReloadableServerTLS(TLSFiles(files.certificatePath, files.keyPath, caPath, files.passphrase))


class MuxSocketService(ListeningService):
    """
    The mux UNIX socket: a stale file a dead daemon left is removed first,
    a live one refused; the socket is created under umask 077 so it is
    never more open than its mode.
    """

    def __init__(self, reactor, path: str, mode: int, factory: MuxFactory) -> None:
        ListeningService.__init__(self, UNIXServerEndpoint(reactor, path, mode=mode), factory, "mux clients")
        self.path = path

    def privilegedStartService(self):
        try:
            if clearStaleSocket(self.path):
                log.info("removed stale mux socket {path}", path=self.path, sc_event="mux.stale_socket_removed")
        except SocketFileError as e:
            raise StartupError("mux %s" % (e,)) from None
        umask = os.umask(0o077)
        try:
            return ListeningService.privilegedStartService(self)
        finally:
            os.umask(umask)


def makeMuxServices(
    controller,
    metadata: Optional[Metadata] = None,
    socketPath: Optional[str] = None,
    socketMode: int = 0o700,
    portEndpoints: List[IStreamServerEndpoint] = (),  # type: ignore[assignment]
    tls: Optional["ReloadableServerTLS"] = None,
) -> List[IService]:
    """
    The mux's listeners, sharing one L{MuxFactory} (so one counter of VP
    ids and one view of the vantage points): the UNIX socket at
    C{socketPath} and the TCP ports, in TLS with C{tls}.  The factory is
    the services' C{factory} and C{muxFactory} attribute.
    """
    factory = MuxFactory(controller, metadata)
    services: List[IService] = []
    if socketPath is not None:
        services.append(MuxSocketService(controller.reactor, socketPath, socketMode, factory))
    portFactory = tls.wrapFactory(factory, controller.reactor) if tls is not None else factory
    for endpoint in portEndpoints:
        services.append(ListeningService(endpoint, portFactory, "mux clients"))
    for service in services:
        service.muxFactory = factory  # type: ignore[attr-defined]
    return services
