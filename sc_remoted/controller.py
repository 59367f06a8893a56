"""
The controller: every vantage point of this process, and the rules for
registering, resuming, keeping as a zombie and freeing them.

It is the one object the rest of the service (and an embedding
application) talks to: the TCP side calls L{Controller.register},
L{Controller.resume}, L{Controller.disconnected} and L{Controller.free};
it creates and removes each vantage point's UNIX socket.
"""

import itertools
import os
from typing import Callable, Dict, List, Optional

from twisted.internet import defer
from zope.interface import implementer

from .backlog import Budgets
from .engine import Timeouts
from .eventlog import EventLogger
from .interfaces import IScamperLink, IScamperSessions, IVantagePointObserver, IVantagePointRegistry
from .lifecycle import Input, State
from .limits import Limits
from .localport import LocalPort
from .local import LocalChannelFactory
from .naming import socketName
from .scamper import ScamperFactory
from .sockets import SocketFileError, listenUNIX, stopListening
from .vp import VantagePoint
from .wire import MasterNew, MasterRes, encodeMasterId, encodeMasterRej

log = EventLogger()

DEFAULT_ZOMBIE_TIME = 900
MAX_ZOMBIE_TIME = 10800


@implementer(IScamperSessions, IVantagePointRegistry)
class Controller:
    """
    The registry of vantage points, keyed by scamper's magic.

    @param reactor: provides C{IReactorTime} and C{IReactorUNIX}; a
        C{MemoryReactorClock} in tests.
    @param socketsDirectory: where each vantage point's socket is made;
        L{None} for none (vantage points served through the mux only).
    @param socketMode: permission bits of those sockets (0700 plus the
        group and other bits the operator allows).
    @param zombieTime: seconds a disconnected vantage point is kept for a
        resume; 0 frees it at once.
    @param debug: log every frame exchanged with scamper.
    @param timeouts: the timers of each scamper connection.
    @param clientNameCheck: called with the connection and the monitorname
        of each MASTER_NEW; a string it returns is why the session is
        refused (the client certificate's names, L{sc_remoted.tls}).
    """

    def __init__(
        self,
        reactor,
        socketsDirectory: Optional[str],
        socketMode: int = 0o700,
        zombieTime: float = DEFAULT_ZOMBIE_TIME,
        debug: bool = False,
        clientNameCheck: Optional[Callable[[IScamperLink, Optional[str]], Optional[str]]] = None,
        limits: Limits = Limits(),
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        self.limits = limits
        self.budgets = Budgets(limits, reactor)
        self.timeouts = timeouts
        self._connections: Dict[str, int] = {}
        self._connectionCount = 0
        self.reactor = reactor
        self.debug = debug
        self.clientNameCheck = clientNameCheck
        self.socketsDirectory = socketsDirectory
        self.socketMode = socketMode
        self.zombieTime = zombieTime
        self._byMagic: Dict[bytes, VantagePoint] = {}
        self._byIdentifier: Dict[int, VantagePoint] = {}
        self._zombies: Dict[VantagePoint, None] = {}
        self._identifiers = itertools.count(1)
        self._closingListeners: List[defer.Deferred] = []
        self._observers: List[IVantagePointObserver] = []

    def scamperFactory(self) -> ScamperFactory:
        """The factory to listen with for scamper connections."""
        return ScamperFactory(self, self.reactor, self.timeouts)

    # IVantagePointRegistry ----------------------------------------------

    def addObserver(self, observer: IVantagePointObserver) -> None:
        """Tell C{observer} of every vantage point arriving, leaving or resuming."""
        self._observers.append(observer)

    def removeObserver(self, observer: IVantagePointObserver) -> None:
        self._observers.remove(observer)

    def vantagePoints(self) -> List[VantagePoint]:
        """Every vantage point, connected or zombie, oldest first."""
        return list(self._byMagic.values())

    def vantagePoint(self, identifier: int) -> Optional[VantagePoint]:
        """The vantage point (connected or zombie) with that identifier."""
        return self._byIdentifier.get(identifier)

    def _notify(self, event: str, vp: VantagePoint) -> None:
        """An observer's failure is logged and does not stop the others."""
        for observer in list(self._observers):
            try:
                getattr(observer, event)(vp)
            except Exception:
                log.failure("observer {observer!r} failed on {event}", observer=observer, event=event)

    # Connection limits --------------------------------------------------

    def connectionOpened(self, connection: IScamperLink, host: str) -> bool:
        """
        Count a new scamper connection from C{host}; L{False} if it would
        exceed a limit (and is to be closed at once).
        """
        limits = self.limits
        if self._connectionCount >= limits.maxConnections:
            limit, value = "max-connections", limits.maxConnections
        elif self._connections.get(host, 0) >= limits.maxPerAddress:
            limit, value = "max-per-address", limits.maxPerAddress
        else:
            self._connectionCount += 1
            self._connections[host] = self._connections.get(host, 0) + 1
            return True
        log.warn(
            "{peer}: refused: limit {limit} ({value}) reached",
            peer=connection.peer,
            limit=limit,
            value=value,
            sc_event="limit.refused",
        )
        return False

    def connectionClosed(self, host: str) -> None:
        """Uncount a connection that L{connectionOpened} accepted."""
        self._connectionCount -= 1
        remaining = self._connections[host] - 1
        if remaining:
            self._connections[host] = remaining
        else:
            del self._connections[host]

    # Registration -------------------------------------------------------

    def register(self, connection: IScamperLink, message: MasterNew) -> None:
        """
        A new session (MASTER_NEW): make its socket and answer MASTER_ID.

        A magic held by a live session is refused silently, as the C
        daemon does.  A magic held by a zombie replaces the zombie: the
        20211212 scamper reuses its magic after a MASTER_REJ, and the C
        daemon's refusal locks it out until the zombie expires
        (docs/protocol.rst 2.6).  The new MASTER_NEW proves that scamper
        has dropped that session's state, so nothing is lost.
        """
        if self.clientNameCheck is not None:
            problem = self.clientNameCheck(connection, message.monitorname)
            if problem is not None:
                log.error(
                    "{peer}: client certificate refused: {reason}; closing",
                    peer=connection.peer,
                    reason=problem,
                    sc_event="tls.name_mismatch",
                )
                connection.abandon()
                return
        existing = self._byMagic.get(message.magic)
        if existing is not None:
            if existing.state is not State.ZOMBIE:
                log.warn(
                    "{peer}: MASTER_NEW with the magic of live session {vp}; closing",
                    peer=connection.peer,
                    vp=existing.name,
                    sc_event="vp.duplicate_magic",
                )
                connection.abandon()
                return
            log.info(
                "{peer}: MASTER_NEW replaces zombie {vp} with the same magic",
                peer=connection.peer,
                vp=existing.name,
                sc_event="vp.zombie_replaced",
            )
            self._free(existing, Input.REPLACED, "replaced by a new session with the same magic")
        vp = VantagePoint(
            next(self._identifiers),
            message.magic,
            message.monitorname,
            self.reactor,
            self.limits.maxChannels,
            self.budgets,
        )
        if not self._listen(vp, connection):
            self._advance(vp, Input.SOCKET_FAILED)
            connection.abandon()
            return
        self._advance(vp, Input.REGISTERED)
        self._byMagic[vp.magic] = vp
        self._byIdentifier[vp.identifier] = vp
        connection.attach(vp)
        connection.write(encodeMasterId(connection.peer))
        log.info(
            "{vp}: registered from {peer}",
            vp=vp.name,
            peer=vp.peer,
            monitorname=vp.monitorname,
            identifier=vp.identifier,
            sc_event="vp.registered",
        )
        self._notify("vantagePointArrived", vp)

    def resume(self, connection: IScamperLink, message: MasterRes) -> None:
        """
        A returning scamper (MASTER_RES): take over the session if both
        sides still hold what the other is missing, else MASTER_REJ.
        """
        vp = self._byMagic.get(message.magic)
        problem = "no session holds its magic" if vp is None else vp.session.resumeProblem(message)
        if problem is not None:
            if vp is not None:
                self._advance(vp, Input.RESUME_REJECTED)
            log.info(
                "{peer}: resume rejected: {reason}",
                peer=connection.peer,
                reason=problem,
                vp=vp.name if vp is not None else None,
                sc_event="vp.resume_rejected",
            )
            connection.refuse(encodeMasterRej())
            return
        assert vp is not None
        if vp.state is State.CONNECTED:
            previous = vp.connection
            assert previous is not None
            log.info(
                "{vp}: {peer} resumes the session while {previous} still holds it; "
                "dropping {previous}",
                vp=vp.name,
                peer=connection.peer,
                previous=previous.peer,
                sc_event="vp.takeover",
            )
            previous.abandon()
            self._advance(vp, Input.TAKEOVER)
        else:
            self._advance(vp, Input.RESUME_ACCEPTED)
            self._cancelZombieTimer(vp)
        self._stopListening(vp)
        if not self._listen(vp, connection):
            log.warn(
                "{vp}: resumed without a socket; reachable through the mux only",
                vp=vp.name,
                sc_event="vp.resumed_without_socket",
            )
        connection.attach(vp)
        connection.writeSequence(vp.session.resume(message.rcv_nxt))
        log.info(
            "{vp}: resumed from {peer}, {unacked} messages retransmitted",
            vp=vp.name,
            peer=vp.peer,
            unacked=vp.session.unacked,
            identifier=vp.identifier,
            sc_event="vp.resumed",
        )
        self._notify("vantagePointResumed", vp)

    # Departure ----------------------------------------------------------

    def disconnected(self, vp: VantagePoint, reason: str) -> None:
        """
        The connection of C{vp} ended: keep it as a zombie awaiting a
        resume, or free it when zombies are disabled.
        """
        if vp.state is not State.CONNECTED:
            return
        if self.zombieTime <= 0:
            self._free(vp, Input.RELEASED, "disconnected (%s)" % (reason,))
            return
        if len(self._zombies) >= self.limits.maxZombies:
            oldest = next(iter(self._zombies))
            log.warn(
                "{vp}: freed early: limit max-zombies ({value}) reached",
                vp=oldest.name,
                value=self.limits.maxZombies,
                sc_event="limit.zombie_freed",
            )
            self._free(oldest, Input.EVICTED, "too many zombies")
        self._advance(vp, Input.LINK_LOST)
        self._stopListening(vp)
        vp.zombieTimer = self.reactor.callLater(self.zombieTime, self._expire, vp)
        log.info(
            "{vp}: disconnected ({reason}); kept {zombieTime} s for a resume",
            vp=vp.name,
            reason=reason,
            zombieTime=self.zombieTime,
            sc_event="vp.zombie",
        )
        self._notify("vantagePointDisconnected", vp)

    def protocolError(self, vp: VantagePoint, reason: str) -> None:
        """The connection of C{vp} broke the protocol: no zombie is kept."""
        if vp.state is State.CONNECTED:
            self._free(vp, Input.PROTOCOL_ERROR, "protocol error")

    def _expire(self, vp: VantagePoint) -> None:
        vp.zombieTimer = None
        self._free(vp, Input.EXPIRED, "not resumed within %s s" % (self.zombieTime,), logEvent="vp.expired")

    def free(self, vp: VantagePoint, reason: str) -> None:
        """
        Forget C{vp}, for an embedding application or at shutdown: its
        socket, its clients (who get EOF), its magic.  A vantage point
        already gone is left alone.
        """
        if vp.state is not State.GONE:
            self._free(vp, Input.FREED, reason)

    def _advance(self, vp: VantagePoint, event: Input) -> None:
        """
        Apply one lifecycle input to C{vp}.  Every transition goes through
        here, so that the index of zombies (oldest first, for the
        max-zombies limit) follows the states.
        """
        before = vp.state
        after = vp.session.advance(event)
        if before is State.ZOMBIE and after is not State.ZOMBIE:
            del self._zombies[vp]
        elif after is State.ZOMBIE and before is not State.ZOMBIE:
            self._zombies[vp] = None

    def _free(self, vp: VantagePoint, event: Input, reason: str, logEvent: str = "vp.freed") -> None:
        self._advance(vp, event)
        del self._byMagic[vp.magic]
        del self._byIdentifier[vp.identifier]
        self._cancelZombieTimer(vp)
        if vp.connection is not None:
            vp.connection.abandon()
        self._stopListening(vp)
        vp.closeChannels()
        log.info("{vp}: freed: {reason}", vp=vp.name, reason=reason, identifier=vp.identifier, sc_event=logEvent)
        self._notify("vantagePointDeparted", vp)

    def _cancelZombieTimer(self, vp: VantagePoint) -> None:
        timer, vp.zombieTimer = vp.zombieTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def stopService(self) -> defer.Deferred:
        """
        Free every vantage point: connections closed, clients sent EOF.
        The returned Deferred fires once every socket file is removed.
        """
        for vp in self.vantagePoints():
            self.free(vp, "shutting down")
        closing, self._closingListeners = self._closingListeners, []
        return defer.gatherResults(closing)

    # UNIX sockets -------------------------------------------------------

    def socketPath(self, name: str) -> str:
        assert self.socketsDirectory is not None
        return os.path.join(self.socketsDirectory, name)

    def _listen(self, vp: VantagePoint, connection: IScamperLink) -> bool:
        """
        Name C{vp} after its connection's peer and create its UNIX socket.
        Returns whether the socket could be made; the reason it could not
        is logged.
        """
        vp.address = connection.address
        vp.peer = connection.peer
        vp.name = socketName(vp.peer, vp.monitorname)
        if self.socketsDirectory is None:
            # Served through the mux only (--mux without --sockets).
            return True
        try:
            vp.listener = listenUNIX(self.reactor, self.socketPath(vp.name), LocalChannelFactory(vp), self.socketMode)
        except SocketFileError as e:
            log.error("{vp}: {error}", vp=vp.name, error=str(e), sc_event="vp.socket_error")
            return False
        return True

    def _stopListening(self, vp: VantagePoint) -> None:
        """
        Close and unlink the socket of C{vp}, if it has one.  A
        L{LocalPort} (the real reactor's) is closed in the call; another
        port's file is gone when its Deferred fires, which L{stopService}
        waits for.
        """
        listener, vp.listener = vp.listener, None
        if isinstance(listener, LocalPort):
            try:
                listener.close()
            except OSError as e:
                log.error(
                    "{vp}: cannot remove its socket: {error}", vp=vp.name, error=str(e), sc_event="vp.socket_error"
                )
        elif listener is not None:
            stopped = stopListening(listener)
            self._closingListeners.append(stopped)
            stopped.addBoth(self._listenerClosed, stopped)

    def _listenerClosed(self, result: object, stopped: defer.Deferred) -> object:
        if stopped in self._closingListeners:
            self._closingListeners.remove(stopped)
        return result
