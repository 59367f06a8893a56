"""
Resource limits: how much any one peer, or all of them together, may hold
of this process.  Each limit, when it triggers, costs only the connection
that crossed it and is logged once with the limit's name.
"""

from dataclasses import dataclass

MiB = 1024 * 1024


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
    @ivar channelBudget: bytes queued in the daemon for one local client
        that reads slower than its scamper sends (L{sc_remoted.backlog});
        past it the client loses its channel.
    @ivar vantagePointBudget: the same for all the local clients of one
        vantage point together; past it the one furthest behind goes.
    @ivar muxClientBudget: bytes queued for one mux connection, every
        channel and announcement of it together.
    @ivar processBudget: bytes queued for every slow reader of the
        process together; past it the one furthest behind goes.
    """

    maxConnections: int = 20000
    maxPerAddress: int = 256
    maxChannels: int = 1024
    maxZombies: int = 20000
    channelBudget: int = 8 * MiB
    vantagePointBudget: int = 32 * MiB
    muxClientBudget: int = 32 * MiB
    processBudget: int = 256 * MiB


# The units of a size on the command line and in the usage texts.
SIZE_UNITS = {"K": 1024, "M": MiB, "G": 1024 * MiB}


def formatSize(size: int) -> str:
    """C{8M} for 8 MiB: how the usage texts and the log show a budget."""
    for unit, factor in sorted(SIZE_UNITS.items(), key=lambda item: -item[1]):
        if size % factor == 0:
            return "%d%s" % (size // factor, unit)
    return str(size)
