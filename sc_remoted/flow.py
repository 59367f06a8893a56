"""
Backpressure from a vantage point's scamper connection to its local
clients, so that the daemon's buffers stay bounded in the up direction.

Up (clients to scamper): while the scamper connection's send buffer is
full, or more than C{maxUnacked} bytes wait for scamper's ACK (as they
do while the VP is a zombie), we stop reading from the clients; scamper
is slower than them, so they wait for it, as they would for a local
scamper.

Down (scamper to clients) has no backpressure: the connection carries
every channel of the VP, so pausing it for one slow client would stall
the others.  What a slow client has not taken waits in its bounded
backlog instead (L{sc_remoted.backlog}).
"""

import socket
from typing import Iterable, Protocol

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from .eventlog import EventLogger
from .interfaces import IPausableEnd

log = EventLogger()

MAX_UNACKED = 8 * 1024 * 1024
# Twisted's bufferSize for both sides of the relay, in place of its 64 KiB:
# how much is read at a time, and how much may queue for writing before
# the other side is paused.  Fewer pause/resume turns at full speed.
TRANSPORT_BUFFER = 256 * 1024
# The kernel's send buffer of each local client's UNIX socket, in place of
# its 208 KiB default (net.core.wmem_default): with the small default the
# daemon and a client take turns at every buffer's worth and both idle in
# between; 4 MiB more than doubles the 1000-byte download rate
# (docs/performance.rst).  The kernel caps it at net.core.wmem_max, and
# takes the memory only as data queues.
UNIX_SEND_BUFFER = 4 * 1024 * 1024


def enlargeSendBuffer(transport: object, size: int = UNIX_SEND_BUFFER) -> None:
    """
    Give C{transport}'s UNIX socket a send buffer of C{size}.  Other
    transports are left alone: a TCP socket sizes its own buffers, and
    setting one would turn that off.
    """
    sock = getattr(transport, "socket", None)
    if sock is not None and sock.family == socket.AF_UNIX:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        except OSError as e:
            log.warn("cannot enlarge a socket's send buffer: {error}", error=e.strerror, sc_event="socket.sndbuf")


class FlowOwner(Protocol):
    """What flow control needs of the vantage point it serves."""

    def channelEnds(self) -> Iterable[object]:
        """The ends of its open channels."""


@implementer(IPushProducer)
class FlowControl:
    """
    The up-direction flow state of one vantage point.  It is the producer
    registered with the scamper transport: Twisted pauses it when that
    transport's send buffer is full.
    """

    __slots__ = ("_owner", "_maxUnacked", "unackedBytes", "_sendBlocked", "_clientsPaused")

    def __init__(self, owner: FlowOwner, maxUnacked: int = MAX_UNACKED) -> None:
        self._owner = owner
        self._maxUnacked = maxUnacked
        self.unackedBytes = 0
        self._sendBlocked = False
        self._clientsPaused = False

    def unackedChanged(self, unackedBytes: int) -> None:
        """The bytes waiting for scamper's ACK are now C{unackedBytes}."""
        self.unackedBytes = unackedBytes
        self._updateClients()

    def pauseProducing(self) -> None:
        """The scamper connection cannot take more for now."""
        self._sendBlocked = True
        self._updateClients()

    def resumeProducing(self) -> None:
        self._sendBlocked = False
        self._updateClients()

    def stopProducing(self) -> None:
        """The scamper connection is gone; its successor starts unblocked."""
        self._sendBlocked = False
        self._updateClients()

    def connected(self) -> None:
        """A (re)attached connection starts unblocked."""
        self._sendBlocked = False
        self._updateClients()

    def _updateClients(self) -> None:
        pause = self._sendBlocked or self.unackedBytes > self._maxUnacked
        if pause == self._clientsPaused:
            return
        self._clientsPaused = pause
        for end in self._owner.channelEnds():
            if IPausableEnd.providedBy(end):
                if pause:
                    end.pauseReading()
                else:
                    end.resumeReading()

    def channelOpened(self, end: object) -> None:
        """A new client starts paused if the others are."""
        if self._clientsPaused and IPausableEnd.providedBy(end):
            end.pauseReading()
