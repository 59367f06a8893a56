"""
How sc_remoted listens on an IPv6 address: with C{IPV6_V6ONLY}, as the
C daemon does (docs/protocol.rst 3.2), so that the IPv6 listener of a
bare C{PORT} never sees v4-mapped peers and does not collide with the
IPv4 one.  Twisted's C{tcp6} endpoint cannot set that option, hence
L{V6OnlyTCPServerEndpoint}.  Which addresses to listen on is
L{sc_remoted.endpoints}' business.
"""

import socket

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer


@implementer(IStreamServerEndpoint)
class V6OnlyTCPServerEndpoint:
    """
    A TCP endpoint on an IPv6 address with C{IPV6_V6ONLY} set before the
    bind, handed to the reactor with C{adoptStreamPort}.
    """

    def __init__(self, reactor, port: int, interface: str = "::", backlog: int = socket.SOMAXCONN):
        self._reactor = reactor
        self._port = port
        self._interface = interface
        self._backlog = backlog

    def listen(self, factory):
        return defer.execute(self._listen, factory)

    def _listen(self, factory):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self._interface, self._port))
            sock.listen(self._backlog)
            sock.setblocking(False)
            return self._reactor.adoptStreamPort(sock.fileno(), socket.AF_INET6, factory)
        except OSError as e:
            raise CannotListenError(self._interface, self._port, e)
        finally:
            sock.close()
