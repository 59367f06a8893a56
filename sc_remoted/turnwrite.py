"""
A log stream written once per turn of the reactor, not once per line.

The daemon logs an info line for every connection, registration and
channel, and each line was a C{write} system call of its own (twistd's
log file is unbuffered): three of the dozen or so system calls of a
round trip on a fresh channel (docs/performance.rst).  One turn of the
reactor handles the events of many descriptors.  L{TurnWriter} keeps the
lines of a turn and writes them in one call when the turn's events have
been handled (a C{callLater(0)}, which runs before the reactor next
waits for events), as the relay writes what one read brings.

No line waits longer than that turn, and some not at all: a warning or
worse is written at once, after the lines before it, so that what comes
before a crash is in the file; so is every line while the reactor is not
running (before it starts, and from the middle of its shutdown on), and
every line logged from another thread.  What waits when the reactor
shuts down is written then.
"""

from typing import Any, Callable, List, Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.python import threadable


class TurnWriter:
    """
    Writes to a stream, the lines of one reactor turn in one C{write}.

    @ivar reactor: provides C{running}, C{callLater} and
        C{addSystemEventTrigger} (L{IReactorCore}, L{IReactorTime}).
    """

    __slots__ = ("_write", "_flush", "reactor", "_joiner", "_pending", "_call", "_watchingShutdown")

    def __init__(self, write: Callable[[Any], object], flush: Callable[[], object], reactor: Any, binary: bool) -> None:
        self._write = write
        self._flush = flush
        self.reactor = reactor
        self._joiner: Any = b"" if binary else ""
        self._pending: List[Any] = []
        self._call: Optional[IDelayedCall] = None
        self._watchingShutdown = False

    def __call__(self, data: Any, urgent: bool = False) -> None:
        """
        Write C{data} (a line, bytes or text as the stream takes) at the
        end of this turn, or now if it is C{urgent}, or if no turn will
        end: the reactor is not running, or this is not its thread (the
        thread it runs in, once it has started).
        """
        if threadable.ioThread not in (None, threadable.getThreadID()):
            self._write(data)
            self._flush()
            return
        pending = self._pending
        pending.append(data)
        if urgent or not self.reactor.running:
            self.writePending()
        elif self._call is None:
            self._call = self.reactor.callLater(0, self.writePending)
            if not self._watchingShutdown:
                self._watchingShutdown = True
                self.reactor.addSystemEventTrigger("after", "shutdown", self.writePending)

    def writePending(self) -> None:
        """Write what waits, in one call, and flush the stream."""
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else self._joiner.join(pending)
        pending.clear()
        self._write(data)
        self._flush()
