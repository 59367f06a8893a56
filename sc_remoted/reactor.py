"""
An epoll reactor for a daemon whose cost is per event: Twisted's, without
the log context it sets up around every descriptor event.

Twisted's epoll reactor hands each event to the descriptor through
C{twisted.python.log.callWithLogger}: it asks the descriptor for its log
prefix, copies the log context, and runs the handler inside the new one,
so that a legacy C{log.msg} made meanwhile names the connection.  For a
relay that handles one or two events per message, that is a tenth of the
daemon's CPU per message (docs/performance.rst).  The daemon's own events
are twisted.logger events, which never read that context.

L{EPollReactor} dispatches each event straight to Twisted's own handler
(the one its epoll reactor calls inside the context); an exception that
escapes it is logged, naming the descriptor, as C{callWithLogger} logs
it, and the other events of the poll are still handled.  The commonest
event, a descriptor readable and nothing else, goes straight to its
C{doRead}, with what Twisted's handler would do around it (an exception
logged, and the descriptor disconnected for it, as for the reason
C{doRead} returns); every other event (a hang-up, an error, writable)
goes through Twisted's handler.  What is lost:
a legacy line that Twisted writes while it handles an event (its report
of a protocol's exception) carries C{[-]} instead of the connection's
prefix.

It is the daemon's reactor unless the operator names one: both front
doors (C{twistd sc_remoted} and the C{sc_remoted} command) call
L{installDefault} before anything imports the reactor, and twistd's
C{--reactor} (C{--reactor=epoll} for Twisted's own), or the C daemon's
C{-O select}, installs another first.  C{twistd --reactor=sc_remoted}
names it explicitly (the plugin in C{twisted/plugins}).  An application
that embeds the daemon keeps the reactor it installed.
"""

import errno
import sys
from select import EPOLLIN

from twisted.internet import epollreactor
from twisted.internet.main import installReactor
from twisted.python import log


class EPollReactor(epollreactor.EPollReactor):
    """Twisted's epoll reactor, dispatching without a log context per event."""

    def doPoll(self, timeout):
        if timeout is None:
            timeout = -1
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                if event == EPOLLIN and selectable.fileno() != -1:
                    try:
                        why = selectable.doRead()
                    except BaseException:
                        why = sys.exc_info()[1]
                        log.err()
                    if why:
                        self._disconnectSelectable(selectable, why, True)
                else:
                    handle(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                log.err(system=_logPrefix(selectable))

    doIteration = doPoll


def _logPrefix(selectable) -> str:
    try:
        return str(selectable.logPrefix())
    except BaseException:
        return "(buggy logPrefix method)"


def install() -> None:
    """Install L{EPollReactor} as the reactor, for twistd's C{--reactor}."""
    installReactor(EPollReactor())


def installDefault() -> bool:
    """
    Install L{EPollReactor}, the daemon's default, unless a reactor is
    installed already (the operator chose one); whether it did.
    """
    if "twisted.internet.reactor" in sys.modules:
        return False
    install()
    return True
