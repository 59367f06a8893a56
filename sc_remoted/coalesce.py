"""
A scamper connection's writes of one reactor turn, sent in one call.

Every local client's read makes a frame for scamper, and every read from
scamper makes its ACKs.  Sent as they are made (L{sc_remoted.eager}),
the frames of sixteen clients that were readable together took sixteen
C{send}s on the one TCP connection, about two system calls per command
round trip where the C daemon, which sends when its poll says the socket
is writable, makes one (docs/performance.rst).  L{Coalescer} keeps what
one turn of the reactor writes to a connection and sends it in one
C{writeSequence} when the turn's events have been handled; L{TurnEnd}
makes that one C{callLater(0)} per turn for every connection of the
daemon, which runs before the reactor next waits for events.

A turn's writes are bounded: past L{COALESCE_LIMIT} bytes they go at once,
so that the transport's own buffer, whose producer pauses the clients
(L{sc_remoted.flow}), sees them within the turn.  Closing or aborting
the connection sends what waits first, as it was sent before; losing it
drops what waits, as the kernel drops what it had not sent (the session
resends what scamper did not ACK).
"""

from typing import Callable, List, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from .eventlog import EventLogger

log = EventLogger()

# Bytes a connection's writes of one turn may reach before they go at
# once: small frames and ACKs are what gains from waiting; a client's
# large read does not.
COALESCE_LIMIT = 64 * 1024


class TurnEnd:
    """
    Calls to make at the end of the reactor's current turn, from one
    C{callLater(0)} however many are due.
    """

    __slots__ = ("_clock", "_due", "_call")

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._due: List[Callable[[], object]] = []
        self._call: Optional[IDelayedCall] = None

    def callAtEnd(self, f: Callable[[], object]) -> None:
        """Call C{f} once this turn's events have been handled."""
        self._due.append(f)
        if self._call is None:
            self._call = self._clock.callLater(0, self._run)

    def _run(self) -> None:
        self._call = None
        due, self._due = self._due, []
        for f in due:
            # One connection's failure must not keep the others' bytes back.
            try:
                f()
            except Exception:
                log.failure("a write at the end of a reactor turn failed")


class Coalescer:
    """
    The writes of one turn to one connection, made in one
    C{writeSequence} at the turn's end (L{TurnEnd}), or at once past
    C{limit} bytes.
    """

    __slots__ = ("_writeSequence", "_turnEnd", "_limit", "_parts", "_size")

    def __init__(
        self, writeSequence: Callable[[List[bytes]], object], turnEnd: TurnEnd, limit: int = COALESCE_LIMIT
    ) -> None:
        self._writeSequence = writeSequence
        self._turnEnd = turnEnd
        self._limit = limit
        self._parts: Optional[List[bytes]] = None
        self._size = 0

    def write(self, parts: List[bytes]) -> None:
        """Send C{parts} after what this turn wrote before them."""
        size = len(parts[0]) if len(parts) == 1 else sum(map(len, parts))
        waiting = self._parts
        if waiting is None:
            self._parts = list(parts)
            self._size = size
            self._turnEnd.callAtEnd(self.flush)
        else:
            waiting += parts
            self._size += size
        if self._size >= self._limit:
            self.flush()

    def flush(self) -> None:
        """Send what waits now (nothing, if nothing does)."""
        parts = self._parts
        if parts is not None:
            self._parts = None
            self._writeSequence(parts)

    def drop(self) -> None:
        """Forget what waits: the connection is gone."""
        self._parts = None
