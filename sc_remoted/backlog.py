"""
What waits in the daemon for a reader that has fallen behind, and the
byte budgets that bound it (docs/security.rst, "Flow budgets").

The daemon acknowledges scamper's results as it reads them, so scamper
has already let go of them.  When one reader's socket is full the daemon
can either stop reading from scamper, which stalls every channel of that
vantage point (they share its one connection), or hold what the reader
has not taken yet.  It holds it, within budgets, so that the other
readers keep flowing:

  - a L{Backlog} per reader (a local client's channel, a mux connection)
    queues what could not be written while its transport was full and
    writes it, in order, once the transport has drained;
  - each backlog has a limit of its own, and draws on L{SharedBudget}s:
    the vantage point's (for local channels) and the process's;
  - a backlog past its limit, or the largest backlog of a shared budget
    past its limit, is dropped and its reader disconnected, with one log
    line saying how much was queued; a reader that takes nothing for the
    stall limit is disconnected too.

A reader too slow for its budget so loses its connection and what was
queued for it, and nobody else waits for it.
"""

from typing import List, Optional, Protocol, Sequence, Set

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from .limits import Limits

# A reader that takes nothing for this long is disconnected, whatever its
# backlog: it holds a connection and memory for nobody's benefit.
STALL_LIMIT = 60.0


class BacklogOwner(Protocol):
    """The reader a L{Backlog} queues for, told when it must go."""

    def backlogOverflowed(self, budget: str, limit: int, queued: int) -> None:
        """
        The backlog was dropped: C{queued} bytes were over C{budget}'s
        C{limit}.  Disconnect the reader.
        """

    def backlogStalled(self, limit: float, queued: int) -> None:
        """The reader took nothing for C{limit} seconds; the backlog was dropped."""


class SharedBudget:
    """
    A byte budget that several backlogs draw on: the local channels of one
    vantage point, or every backlog of the process.

    @ivar name: what the log calls it (C{"vantage point"}, C{"process"}).
    @ivar used: the bytes queued in its backlogs now.
    """

    __slots__ = ("name", "limit", "used", "_backlogs")

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.used = 0
        # Made with the first backlog: most vantage points never need one.
        self._backlogs: Optional[Set["Backlog"]] = None

    def _joined(self, backlog: "Backlog") -> None:
        if self._backlogs is None:
            self._backlogs = set()
        self._backlogs.add(backlog)

    def _left(self, backlog: "Backlog") -> None:
        if self._backlogs is not None:
            self._backlogs.discard(backlog)

    def _relieve(self) -> None:
        """Over the limit: drop the largest backlogs until it is not."""
        backlogs = self._backlogs
        while self.used > self.limit and backlogs:
            largest = max(backlogs, key=_queuedBytes)
            largest._overflow(self.name, self.limit)


def _queuedBytes(backlog: "Backlog") -> int:
    return backlog.size


@implementer(IPushProducer)
class Backlog:
    """
    The output queue of one reader.  It is the producer registered with
    the reader's transport: Twisted pauses it when the transport holds
    more than its buffer size, and resumes it once all of that is
    written; in between, L{write} queues here.

    @param name: what the log calls its own budget.
    @ivar size: the bytes queued now.
    @ivar paused: whether the transport is full.
    """

    __slots__ = (
        "_owner",
        "_writeSequence",
        "_name",
        "_limit",
        "_budgets",
        "_clock",
        "_stallLimit",
        "_parts",
        "size",
        "paused",
        "_timer",
        "_whenWritten",
        "_dropped",
    )

    def __init__(
        self,
        owner: BacklogOwner,
        writeSequence,
        name: str,
        limit: int,
        budgets: Sequence[SharedBudget],
        clock: IReactorTime,
        stallLimit: float = STALL_LIMIT,
    ) -> None:
        self._owner = owner
        self._writeSequence = writeSequence
        self._name = name
        self._limit = limit
        self._budgets = budgets
        self._clock = clock
        self._stallLimit = stallLimit
        self._parts: List[bytes] = []
        self.size = 0
        self.paused = False
        self._timer: Optional[IDelayedCall] = None
        self._whenWritten = None
        self._dropped = False

    def write(self, parts: List[bytes]) -> None:
        """Write C{parts} now, or queue them while the transport is full."""
        if self._dropped:
            return
        if not self.paused:
            self._writeSequence(parts)
            return
        size = sum(map(len, parts))
        if not self._parts:
            for budget in self._budgets:
                budget._joined(self)
        self._parts += parts
        self.size += size
        for budget in self._budgets:
            budget.used += size
        if self.size > self._limit:
            self._overflow(self._name, self._limit)
            return
        for budget in self._budgets:
            if budget.used > budget.limit:
                budget._relieve()

    def whenWritten(self, callback) -> None:
        """
        Call C{callback} once the transport can take the rest at once:
        now, unless it is full.  Nothing may be written after.  Until
        then the stall limit still applies, so a reader that stops for
        good cannot hold what is queued for it.
        """
        if self.paused:
            self._whenWritten = callback
        else:
            callback()

    def drop(self) -> None:
        """The reader is gone: forget what was queued, write nothing more."""
        self._dropped = True
        self._whenWritten = None
        self._release()
        self._cancelTimer()

    # IPushProducer, driven by the transport -----------------------------

    def pauseProducing(self) -> None:
        if self.paused:
            return
        self.paused = True
        if self._timer is None and not self._dropped:
            self._timer = self._clock.callLater(self._stallLimit, self._stalled)

    def resumeProducing(self) -> None:
        self.paused = False
        self._cancelTimer()
        if self._dropped:
            return
        if self._parts:
            parts = self._parts
            self._release()
            # This may fill the transport and pause us again at once.
            self._writeSequence(parts)
        if self._whenWritten is not None and not self.paused:
            callback, self._whenWritten = self._whenWritten, None
            callback()

    def stopProducing(self) -> None:
        self.drop()

    # Internals ----------------------------------------------------------

    def _release(self) -> None:
        if self._parts:
            for budget in self._budgets:
                budget.used -= self.size
                budget._left(self)
            self._parts = []
            self.size = 0

    def _cancelTimer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _overflow(self, budget: str, limit: int) -> None:
        queued = self.size
        self.drop()
        self._owner.backlogOverflowed(budget, limit, queued)

    def _stalled(self) -> None:
        self._timer = None
        queued = self.size
        self.drop()
        self._owner.backlogStalled(self._stallLimit, queued)


class Budgets:
    """
    The process's budgets (from L{Limits}), and the backlogs made under
    them: one registry holds one L{Budgets}, its vantage points and mux
    clients draw on it.

    @ivar process: the budget every backlog draws on.
    """

    __slots__ = ("limits", "clock", "stallLimit", "process")

    def __init__(self, limits: Limits, clock: IReactorTime, stallLimit: float = STALL_LIMIT) -> None:
        self.limits = limits
        self.clock = clock
        self.stallLimit = stallLimit
        self.process = SharedBudget("process", limits.processBudget)

    def forVantagePoint(self) -> SharedBudget:
        """The budget shared by one vantage point's local channels."""
        return SharedBudget("vantage point", self.limits.vantagePointBudget)

    def channelBacklog(self, owner: BacklogOwner, writeSequence, vantagePoint: SharedBudget) -> Backlog:
        """The backlog of a local client of the vantage point with that budget."""
        return Backlog(
            owner,
            writeSequence,
            "channel",
            self.limits.channelBudget,
            (vantagePoint, self.process),
            self.clock,
            self.stallLimit,
        )

    def muxClientBacklog(self, owner: BacklogOwner, writeSequence) -> Backlog:
        """The backlog of a mux connection (it spans vantage points)."""
        return Backlog(
            owner, writeSequence, "mux client", self.limits.muxClientBudget, (self.process,), self.clock, self.stallLimit
        )
