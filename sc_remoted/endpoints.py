"""
The one parser of listening addresses, for C{--port}, C{--status-port}
and C{--mux-port}, and the one check of whether an address is local.

An address is written in one of the C daemon's forms (docs/protocol.rst
3.1: C{PORT}, C{IPv4:PORT}, C{[IPv6]:PORT}) or as a Twisted endpoint
description (C{tcp:9100:interface=127.0.0.1}, C{tcp6:...},
C{unix:/run/x.sock}, ...).  Parsing reads no file and builds nothing: a
L{ListenAddress} says what was asked for (so that the command line can
be checked at once, loopback included), and L{ListenAddress.endpoints}
makes the Twisted endpoints at startup.  A description is split here,
by Twisted's grammar (C{:} between fields, C{=} in keyword fields, C{\\}
quoting the next character), rather than read back from the attributes
of the endpoint Twisted would build.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, FrozenSet, List, Optional, Tuple

from twisted.internet.endpoints import TCP4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint

from .listen import V6OnlyTCPServerEndpoint

# Description types whose address we read: the rest are taken on trust
# and cannot be told to be local.
TCP_TYPES = frozenset({"tcp", "tcp6"})
_ADDRESS_TYPES = TCP_TYPES | {"ssl", "unix"}

# What a bare PORT means for the ports only this host should reach.
LOOPBACK = "127.0.0.1"

_DESCRIPTION = re.compile(r"^[A-Za-z][A-Za-z0-9+-]*:")
_BRACKETED = re.compile(r"^\[(?P<host>[^\]]+)\]:(?P<port>[^:]*)$")


class AddressError(ValueError):
    """Text that is not a listening address; the message is one line for the operator."""


@dataclass(frozen=True)
class ListenAddress:
    """
    Where to listen, as the operator wrote it.

    @ivar text: the operator's text.
    @ivar type: C{tcp} or C{tcp6} for the C daemon's forms, otherwise the
        description's endpoint type (C{ssl}, C{unix}, C{systemd}, ...).
    @ivar host: the address a TCP listener binds: C{""} is every IPv4
        address, C{"::"} every IPv6 one; L{None} for a bare C{PORT} that
        means every address of both families (two listeners), and for
        descriptions whose address cannot be read.
    @ivar port: the TCP port, when known.
    @ivar path: a UNIX socket's path.
    @ivar description: the Twisted endpoint description, or L{None} for
        the C daemon's forms.
    """

    text: str
    type: str
    host: Optional[str] = None
    port: Optional[int] = None
    path: Optional[str] = None
    description: Optional[str] = None

    @property
    def isTCP(self) -> bool:
        """Plain TCP, which is what scamper connects to."""
        return self.type in TCP_TYPES

    def isLoopback(self) -> Optional[bool]:
        """
        Whether only this host can connect: a UNIX socket, or a TCP port on
        a loopback address.  L{None} when it cannot be told (an endpoint
        type whose address is not read here, or a host name).
        """
        if self.type == "unix":
            return True
        if self.type not in _ADDRESS_TYPES:
            return None
        if self.host is None:
            return False
        if self.host in ("", "0.0.0.0", "::"):
            return False
        try:
            return ipaddress.ip_address(self.host.split("%", 1)[0]).is_loopback
        except ValueError:
            return None

    def endpoints(self, reactor, ipv4: bool = True, ipv6: bool = True) -> List[IStreamServerEndpoint]:
        """
        The Twisted endpoints to listen on: two for a bare C{PORT} of both
        families (the IPv6 one v6-only, as the C daemon's C{IPV6_V6ONLY},
        so that the two do not collide), one otherwise.  C{ipv4} and
        C{ipv6} (C{-4}, C{-6}) drop one of the two.

        @raise AddressError: if Twisted cannot make the description's
            endpoint (an unreadable C{ssl:} key file, say).
        """
        if self.description is not None:
            try:
                return [serverFromString(reactor, self.description)]
            except Exception as e:  # each endpoint type's parser fails its own way
                raise AddressError("bad endpoint description %r: %s" % (self.description, e))
        assert self.port is not None
        if self.host is None:
            endpoints: List[IStreamServerEndpoint] = []
            if ipv4:
                endpoints.append(TCP4ServerEndpoint(reactor, self.port, backlog=socket.SOMAXCONN))
            if ipv6:
                endpoints.append(V6OnlyTCPServerEndpoint(reactor, self.port))
            return endpoints
        if self.type == "tcp6":
            return [V6OnlyTCPServerEndpoint(reactor, self.port, interface=self.host)]
        return [TCP4ServerEndpoint(reactor, self.port, interface=self.host, backlog=socket.SOMAXCONN)]


def parseAddress(text: str, barePortHost: Optional[str] = None) -> ListenAddress:
    """
    Read a listening address: C{PORT}, C{IPv4:PORT}, C{[IPv6]:PORT} or a
    Twisted endpoint description.

    @param barePortHost: the address a bare C{PORT} means; L{None} for
        every IPv4 and every IPv6 address (the C daemon's C{-P PORT}).
    @raise AddressError: with a message for the operator.
    """
    if text.isdigit():
        port = _cPort(text)
        if barePortHost is None:
            return ListenAddress(text, "tcp", None, port)
        return ListenAddress(text, _family(barePortHost), barePortHost, port)
    bracketed = _BRACKETED.match(text)
    if bracketed is not None:
        host, portText = bracketed.group("host"), bracketed.group("port")
        _ipAddress(host)
        return ListenAddress(text, _family(host), host, _cPort(portText))
    if _DESCRIPTION.match(text):
        return _parseDescription(text)
    if text.count(":") == 1:
        host, portText = text.split(":")
        if _ipAddress(host).version == 6:
            raise AddressError("write an IPv6 address in brackets: [%s]:%s" % (host, portText))
        return ListenAddress(text, "tcp", host, _cPort(portText))
    raise AddressError("cannot parse %r: expected PORT, IPv4:PORT, [IPv6]:PORT or an endpoint description" % (text,))


def _cPort(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise AddressError("port %r is not a number from 1 to 65535" % (text,))
    return int(text)


def _ipAddress(host: str):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise AddressError("%r is not an IP address" % (host,))


def _family(host: str) -> str:
    return "tcp6" if ":" in host else "tcp"


def _parseDescription(text: str) -> ListenAddress:
    kind, args, kwargs = splitDescription(text)
    if kind not in _ADDRESS_TYPES and kind not in _pluginTypes():
        raise AddressError("bad endpoint description %r: no endpoint type %r" % (text, kind))
    if kind == "unix":
        path = kwargs.get("address", args[0] if args else "")
        if not path:
            raise AddressError("bad endpoint description %r: no socket path" % (text,))
        return ListenAddress(text, kind, path=path, description=text)
    if kind not in _ADDRESS_TYPES:
        return ListenAddress(text, kind, description=text)
    portText = kwargs.get("port", args[0] if args else "")
    if not portText.isdigit() or int(portText) > 65535:
        raise AddressError("bad endpoint description %r: port %r is not a number from 0 to 65535" % (text, portText))
    host = kwargs.get("interface", "::" if kind == "tcp6" else "")
    return ListenAddress(text, kind, host, int(portText), description=text)


def splitDescription(text: str) -> Tuple[str, List[str], Dict[str, str]]:
    """
    The endpoint type, the positional fields and the keyword fields of a
    Twisted endpoint description, unquoted (C{tcp6:80:interface=\\:\\:1}
    is C{("tcp6", ["80"], {"interface": "::1"})}).
    """
    fields: List[List[Tuple[str, bool]]] = [[]]
    quoted = False
    for character in text:
        if quoted:
            fields[-1].append((character, True))
            quoted = False
        elif character == "\\":
            quoted = True
        elif character == ":":
            fields.append([])
        else:
            fields[-1].append((character, False))
    kind = "".join(character for character, _ in fields[0])
    args: List[str] = []
    kwargs: Dict[str, str] = {}
    for chars in fields[1:]:
        equals = next((i for i, (character, quoted) in enumerate(chars) if character == "=" and not quoted), None)
        if equals is None:
            args.append("".join(character for character, _ in chars))
        else:
            key = "".join(character for character, _ in chars[:equals])
            kwargs[key] = "".join(character for character, _ in chars[equals + 1 :])
    return kind, args, kwargs


@lru_cache(maxsize=1)
def _pluginTypes() -> FrozenSet[str]:
    """The endpoint types Twisted's plugins add (C{systemd}, C{haproxy}, ...)."""
    from twisted.internet.interfaces import IStreamServerEndpointStringParser
    from twisted.plugin import getPlugins

    return frozenset(parser.prefix for parser in getPlugins(IStreamServerEndpointStringParser))
