"""
SIGTERM and SIGINT end the process cleanly whenever they come: the
listeners close, every socket file this process made is removed, then
the pidfile, and the exit status is 0 (README, Lifecycle).

A signal has three moments to arrive in, and L{ShutdownSignals} owns
both signals through all of them, from the time a front door has read
its command line:

  - before the service tree starts: nothing has been made yet, so
    L{ShutdownSignals.arm} ends the process at once, status 0, in place
    of starting it;
  - while the tree starts, before the reactor runs: the stop is queued
    on the reactor, which stops (and so shuts the tree down) as soon as
    it runs;
  - while the reactor runs: the stop is queued the same way.

The reactor puts in its own SIGTERM handler as it starts, one that makes
twistd die of the signal afterwards; ours is put back right after, with
both signals blocked in between so that none falls into that gap.
"""

import signal
from typing import Optional

from twisted.internet.error import ReactorNotRunning

from .eventlog import EventLogger

log = EventLogger()

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ShutdownSignals:
    """The process's SIGTERM and SIGINT handling; see the module docstring."""

    def __init__(self, reactor) -> None:
        self._reactor = reactor
        self._armed = False
        self._early: Optional[int] = None

    def install(self) -> None:
        """Take both signals now; the reactor's start cannot take them back."""
        self._handle()
        self._reactor.addSystemEventTrigger("before", "startup", signal.pthread_sigmask, signal.SIG_BLOCK, SIGNALS)
        self._reactor.addSystemEventTrigger("after", "startup", self._retake)

    def arm(self) -> None:
        """
        The service tree is about to start: from now on a signal stops the
        reactor.  One that came before ends the process here, status 0,
        before anything is made.
        """
        if self._early is not None:
            log.info("received {signal} before starting; exiting", signal=signal.Signals(self._early).name)
            raise SystemExit(0)
        self._armed = True

    def _handle(self) -> None:
        for number in SIGNALS:
            signal.signal(number, self._received)

    def _retake(self) -> None:
        self._handle()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)

    def _received(self, number: int, frame: object) -> None:
        if not self._armed:
            self._early = number
            return
        # Not from the handler itself: callFromThread is signal-safe.
        self._reactor.callFromThread(self._stop, number)

    def _stop(self, number: int) -> None:
        log.info("received {signal}, shutting down", signal=signal.Signals(number).name)
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            pass  # already stopping
