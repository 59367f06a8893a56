"""
Where the mux listens: the UNIX socket of C{--mux} and the TCP port of
C{--mux-port}, as services to add to the daemon's tree.

The TCP port is loopback-only unless it is protected: with TLS and
required client certificates (C{--mux-tls-ca}), or by the operator's
explicit C{--mux-port-insecure}.  Whoever reaches the mux can run
measurements from every vantage point.
"""

import ipaddress
import os
from typing import TYPE_CHECKING, List, Optional

from twisted.application.service import IService
from twisted.internet.endpoints import UNIXServerEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger

from ..service import ListeningService, StartupError
from .metadata import Metadata
from ..sockets import SocketFileError, clearStaleSocket
from .server import MuxFactory

if TYPE_CHECKING:  # pragma: no cover
    from ..tls import ReloadableServerTLS

log = Logger()


class MuxPortError(ValueError):
    """A C{--mux-port} that cannot or may not be used."""


def isLoopbackEndpoint(endpoint: IStreamServerEndpoint) -> Optional[bool]:
    """
    Whether C{endpoint} only accepts local connections: a UNIX socket or a
    TCP port on a loopback address.  L{None} when it cannot be told.
    """
    if isinstance(endpoint, UNIXServerEndpoint):
        return True
    interface = getattr(endpoint, "_interface", None)
    if interface is None:
        return None
    try:
        return ipaddress.ip_address(interface.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def parseMuxPort(reactor, description: str, tls: bool = False, insecure: bool = False) -> IStreamServerEndpoint:
    """
    The endpoint of C{--mux-port}: a bare C{PORT} (on 127.0.0.1) or a
    Twisted endpoint description (C{tcp:7000:interface=192.0.2.1},
    C{tcp6:...}).

    @param tls: the port will be TLS with required client certificates.
    @param insecure: the operator allows plain TCP on any address.
    @raise MuxPortError: for a bad description, or one that would take
        unauthenticated connections from other hosts.
    """
    if description.isdigit():
        description = "tcp:%s:interface=127.0.0.1" % (description,)
    try:
        endpoint = serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError) as e:
        raise MuxPortError("bad endpoint description %r: %s" % (description, e))
    if tls or insecure:
        return endpoint
    loopback = isLoopbackEndpoint(endpoint)
    if loopback is None:
        raise MuxPortError(
            "cannot tell whether %r is loopback; use --mux-tls-ca (TLS with client "
            "certificates) or add --mux-port-insecure" % (description,)
        )
    if not loopback:
        raise MuxPortError(
            "%r is not a loopback address and the mux gives full control of every "
            "vantage point: use --mux-tls-ca (TLS with client certificates), or add "
            "--mux-port-insecure to serve it without" % (description,)
        )
    return endpoint


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
