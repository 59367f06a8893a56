"""
Backpressure between a vantage point's scamper connection and its local
clients, so that neither side's buffers grow without bound.

Down (scamper to clients): when a client's socket buffer is full, we stop
reading from scamper until it drains; scamper then holds its results
(it keeps them until acknowledged anyway).  One client that stops reading
for good would stall every channel of the VP, so a client stalled for
C{stallLimit} seconds is disconnected, which costs only that channel.

Up (clients to scamper): while the scamper connection's send buffer is
full, or more than C{maxUnacked} bytes wait for scamper's ACK (as they
do while the VP is a zombie), we stop reading from the clients.
"""

import socket
from typing import Dict, Iterable, Protocol

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from .interfaces import IPausableEnd

log = Logger()

MAX_UNACKED = 8 * 1024 * 1024
STALL_LIMIT = 60.0
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

    name: str

    def channelEnds(self) -> Iterable[object]:
        """The ends of its open channels."""

    def pauseScamper(self, paused: bool) -> None:
        """Stop (C{True}) or restart reading from its scamper connection."""


@implementer(IPushProducer)
class FlowControl:
    """
    The flow state of one vantage point.  It is the producer registered
    with the scamper transport: Twisted pauses it when that transport's
    send buffer is full.
    """

    __slots__ = (
        "_owner",
        "_clock",
        "_maxUnacked",
        "_stallLimit",
        "unackedBytes",
        "_sendBlocked",
        "_clientsPaused",
        "_stalled",
    )

    def __init__(
        self,
        owner: FlowOwner,
        clock: IReactorTime,
        maxUnacked: int = MAX_UNACKED,
        stallLimit: float = STALL_LIMIT,
    ) -> None:
        self._owner = owner
        self._clock = clock
        self._maxUnacked = maxUnacked
        self._stallLimit = stallLimit
        self.unackedBytes = 0
        self._sendBlocked = False
        self._clientsPaused = False
        self._stalled: Dict[object, IDelayedCall] = {}

    # Up: clients -> scamper --------------------------------------------

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

    # Down: scamper -> clients ------------------------------------------

    def channelCongested(self, end: object) -> None:
        """C{end} cannot take more: stop reading from scamper."""
        if end in self._stalled:
            return
        self._stalled[end] = self._clock.callLater(self._stallLimit, self._stallExpired, end)
        if len(self._stalled) == 1:
            self._updateScamper()

    def channelDrained(self, end: object) -> None:
        timer = self._stalled.pop(end, None)
        if timer is None:
            return
        if timer.active():
            timer.cancel()
        if not self._stalled:
            self._updateScamper()

    def _stallExpired(self, end: object) -> None:
        del self._stalled[end]
        log.warn(
            "{vp}: {client} read nothing for {limit:.0f} s; closing its channel",
            vp=self._owner.name,
            client=getattr(end, "client", "a client"),
            limit=self._stallLimit,
            sc_event="channel.stalled",
        )
        end.abort()  # type: ignore[attr-defined]
        if not self._stalled:
            self._updateScamper()

    def connected(self) -> None:
        """A (re)attached connection starts paused if a client is stalled."""
        self._sendBlocked = False
        self._updateScamper()
        self._updateClients()

    def _updateScamper(self) -> None:
        self._owner.pauseScamper(bool(self._stalled))

    def stop(self) -> None:
        """The VP is gone: cancel the stall timers."""
        for timer in self._stalled.values():
            if timer.active():
                timer.cancel()
        self._stalled.clear()
