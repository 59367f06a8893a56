"""
Where sc_remoted listens for scamper: the C daemon's C{-P [ip:]port}
forms, turned into Twisted endpoints.

A bare port means every IPv4 and every IPv6 address, as two listeners;
the IPv6 one is v6-only (as C{IPV6_V6ONLY} in the C daemon), so it never
sees v4-mapped peers and does not collide with the IPv4 one.  Twisted's
C{tcp6} endpoint cannot set that option, hence L{V6OnlyTCPServerEndpoint}.
"""

import ipaddress
import re
import socket
from typing import List

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint, serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

_ENDPOINT_DESCRIPTION = re.compile(r"^[A-Za-z][A-Za-z0-9+-]*:")
_BRACKETED = re.compile(r"^\[(?P<host>[^\]]+)\]:(?P<port>[^:]+)$")


class PortSpecError(ValueError):
    """An operator's listening address that cannot be used."""


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


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise PortSpecError("port %r is not a number from 1 to 65535" % (text,))
    return int(text)


def parsePortSpec(reactor, spec: str, ipv4: bool = True, ipv6: bool = True) -> List[IStreamServerEndpoint]:
    """
    The endpoints for C{--port}: C{PORT}, C{IPv4:PORT}, C{[IPv6]:PORT}
    or a Twisted endpoint description such as C{tcp6:31337:interface=\\:\\:1}.

    C{ipv4} and C{ipv6} (from C{-4}/C{-6}) restrict the bare-port form
    and must agree with the family of an explicit address.

    @raise PortSpecError: with a message for the operator.
    """
    if not (ipv4 or ipv6):
        raise PortSpecError("-4 and -6 exclude each other")
    if spec.isdigit():
        port = _port(spec)
        endpoints: List[IStreamServerEndpoint] = []
        if ipv4:
            endpoints.append(TCP4ServerEndpoint(reactor, port, backlog=socket.SOMAXCONN))
        if ipv6:
            endpoints.append(V6OnlyTCPServerEndpoint(reactor, port))
        return endpoints
    bracketed = _BRACKETED.match(spec)
    if bracketed is not None:
        host, portText = bracketed.group("host"), bracketed.group("port")
    elif _ENDPOINT_DESCRIPTION.match(spec):
        if not (ipv4 and ipv6):
            raise PortSpecError("-4/-6 apply only to the PORT form, not to %r" % (spec,))
        try:
            return [serverFromString(reactor, spec)]
        except (ValueError, TypeError, KeyError) as e:
            raise PortSpecError("bad endpoint description %r: %s" % (spec, e))
    elif spec.count(":") == 1:
        host, portText = spec.split(":")
    else:
        raise PortSpecError(
            "cannot parse %r: expected PORT, IPv4:PORT, [IPv6]:PORT or an endpoint description" % (spec,)
        )
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise PortSpecError("%r is not an IP address" % (host,))
    port = _port(portText)
    if address.version == 4:
        if not ipv4:
            raise PortSpecError("%s is an IPv4 address, but -6 was given" % (host,))
        return [TCP4ServerEndpoint(reactor, port, interface=host, backlog=socket.SOMAXCONN)]
    if bracketed is None:
        raise PortSpecError("write an IPv6 address in brackets: [%s]:%s" % (host, portText))
    if not ipv6:
        raise PortSpecError("%s is an IPv6 address, but -4 was given" % (host,))
    return [V6OnlyTCPServerEndpoint(reactor, port, interface=host)]
