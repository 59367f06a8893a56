"""
Resource limits: how much any one peer, or all of them together, may hold
of this process.  Each limit, when it triggers, costs only the connection
that crossed it and is logged once with the limit's name.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """
    @ivar maxConnections: scamper connections open at once, registered or
        not.  C{ulimit -n} should leave room for them and their sockets.
    @ivar maxPerAddress: scamper connections from one IP address at once;
        stops one host (or a flood) from taking every slot.
    @ivar maxChannels: channels open at once on one vantage point.
    @ivar maxZombies: disconnected vantage points kept for a resume; past
        it the one that has waited longest is freed.
    """

    maxConnections: int = 20000
    maxPerAddress: int = 256
    maxChannels: int = 1024
    maxZombies: int = 20000
