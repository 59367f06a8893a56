"""
Names the C sc_remoted gives a connected scamper.

The peer string is both the MASTER_ID sent to scamper (which uses it as
the prefix of its warts list names) and, with the monitorname in front,
the file name of the vantage point's UNIX socket.  Operators' scripts
depend on both, so they are reproduced exactly: C{a.b.c.d:port} for IPv4,
C{<inet_ntop>.<port>} for IPv6 (a dot, no brackets).
"""

from typing import Optional, Union

from twisted.internet.address import IPv4Address, IPv6Address

# The longest peer strings the C daemon can produce; used to check at
# startup that every name fits in a UNIX socket path.
LONGEST_IPV4_PEER = "255.255.255.255:65535"
LONGEST_IPV6_PEER = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255.65535"


def peerName(address: Union[IPv4Address, IPv6Address]) -> str:
    """
    The C daemon's C{sockaddr_tostr} of a TCP peer.

    An IPv6 scope (C{%eth0}) is dropped, as C{inet_ntop} has none.
    """
    if isinstance(address, IPv6Address):
        return "%s.%d" % (address.host.split("%", 1)[0], address.port)
    return "%s:%d" % (address.host, address.port)


def socketName(peer: str, monitorname: Optional[str]) -> str:
    """
    The file name of a vantage point's UNIX socket: C{monitorname-peer},
    or just C{peer} for a scamper started without C{-M}.  A monitorname
    holds only C{[A-Za-z0-9.-]} (checked by the wire decoder), so the
    name never contains a C{/}.
    """
    if monitorname:
        return "%s-%s" % (monitorname, peer)
    return peer
