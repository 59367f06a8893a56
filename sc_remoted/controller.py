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
import socket
from typing import Callable, Dict, List, Optional

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from .interfaces import IVantagePointObserver
from .limits import Limits
from .local import LocalChannelFactory
from .naming import MAX_SOCKET_PATH, socketName
from .scamper import ScamperFactory, ScamperProtocol
from .vp import VantagePoint
from .wire import MasterNew, MasterRes, encodeMasterId, encodeMasterOk, encodeMasterRej

log = Logger()

DEFAULT_ZOMBIE_TIME = 900
MAX_ZOMBIE_TIME = 10800


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
        clientNameCheck: Optional[Callable[[ScamperProtocol, Optional[str]], Optional[str]]] = None,
        limits: Limits = Limits(),
    ) -> None:
        self.limits = limits
        self._connections: Dict[str, int] = {}
        self._connectionCount = 0
        self.reactor = reactor
        self.debug = debug
        self.clientNameCheck = clientNameCheck
        self.socketsDirectory = socketsDirectory
        self.socketMode = socketMode
        self.zombieTime = zombieTime
        self._byMagic: Dict[bytes, VantagePoint] = {}
        self._zombieTimers: Dict[VantagePoint, IDelayedCall] = {}
        self._identifiers = itertools.count(1)
        self._closingListeners: List[defer.Deferred] = []
        self._observers: List[IVantagePointObserver] = []

    def scamperFactory(self) -> ScamperFactory:
        """The factory to listen with for scamper connections."""
        return ScamperFactory(self, self.reactor)

    def addObserver(self, observer: IVantagePointObserver) -> None:
        """Tell C{observer} of every vantage point arriving, leaving or resuming."""
        self._observers.append(observer)

    def removeObserver(self, observer: IVantagePointObserver) -> None:
        self._observers.remove(observer)

    def _notify(self, event: str, vp: VantagePoint) -> None:
        """An observer's failure is logged and does not stop the others."""
        for observer in list(self._observers):
            try:
                getattr(observer, event)(vp)
            except Exception:
                log.failure("observer {observer!r} failed on {event}", observer=observer, event=event)

    def connectionOpened(self, connection: ScamperProtocol, host: str) -> bool:
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

    def vantagePoints(self) -> List[VantagePoint]:
        """Every vantage point, connected or zombie, oldest first."""
        return list(self._byMagic.values())

    # Registration -------------------------------------------------------

    def register(self, connection: ScamperProtocol, message: MasterNew) -> None:
        """
        A new session (MASTER_NEW): make its socket and answer MASTER_ID.

        A magic held by a live session is refused silently, as the C
        daemon does.  A magic held by a zombie replaces the zombie: the
        20211212 scamper reuses its magic after a MASTER_REJ, and the C
        daemon's refusal locks it out until the zombie expires
        (PROTOCOL.md 2.6, d_reject2).  The new MASTER_NEW proves that
        scamper has dropped that session's state, so nothing is lost.
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
            if existing.connection is not None:
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
            self.free(existing, "replaced by a new session with the same magic")
        vp = VantagePoint(
            next(self._identifiers),
            message.magic,
            message.monitorname,
            self.reactor,
        )
        if not self._listen(vp, connection.peer):
            connection.abandon()
            return
        self._byMagic[vp.magic] = vp
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

    def resume(self, connection: ScamperProtocol, message: MasterRes) -> None:
        """
        A returning scamper (MASTER_RES): take over the session if both
        sides still hold what the other is missing, else MASTER_REJ.
        """
        vp = self._byMagic.get(message.magic)
        problem = "no session holds its magic" if vp is None else vp.resumeProblem(message)
        if problem is not None:
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
        previous = vp.connection
        if previous is not None:
            log.info(
                "{vp}: {peer} resumes the session while {previous} still holds it; "
                "dropping {previous}",
                vp=vp.name,
                peer=connection.peer,
                previous=previous.peer,
                sc_event="vp.takeover",
            )
            previous.abandon()
        timer = self._zombieTimers.pop(vp, None)
        if timer is not None and timer.active():
            timer.cancel()
        self._stopListening(vp)
        self._listen(vp, connection.peer)
        vp.resumes += 1
        connection.attach(vp)
        connection.write(encodeMasterOk(vp.rcvNxt))
        vp.retransmit(message.rcv_nxt)
        log.info(
            "{vp}: resumed from {peer}, {unacked} messages retransmitted",
            vp=vp.name,
            peer=vp.peer,
            unacked=vp.unacked,
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
        self._stopListening(vp)
        if self.zombieTime <= 0:
            self.free(vp, "disconnected (%s)" % (reason,))
            return
        if len(self._zombieTimers) >= self.limits.maxZombies:
            oldest = next(iter(self._zombieTimers))
            log.warn(
                "{vp}: freed early: limit max-zombies ({value}) reached",
                vp=oldest.name,
                value=self.limits.maxZombies,
                sc_event="limit.zombie_freed",
            )
            self.free(oldest, "too many zombies")
        self._zombieTimers[vp] = self.reactor.callLater(self.zombieTime, self._expire, vp)
        log.info(
            "{vp}: disconnected ({reason}); kept {zombieTime} s for a resume",
            vp=vp.name,
            reason=reason,
            zombieTime=self.zombieTime,
            sc_event="vp.zombie",
        )
        self._notify("vantagePointDisconnected", vp)

    def _expire(self, vp: VantagePoint) -> None:
        self._zombieTimers.pop(vp, None)
        self.free(vp, "not resumed within %s s" % (self.zombieTime,), event="vp.expired")

    def free(self, vp: VantagePoint, reason: str, event: str = "vp.freed") -> None:
        """
        Forget C{vp}: its socket, its clients (who get EOF), its magic.
        C{event} is the log's C{sc_event}: C{vp.expired} for a zombie
        that was not resumed in time.
        """
        if self._byMagic.get(vp.magic) is not vp:
            return
        del self._byMagic[vp.magic]
        timer = self._zombieTimers.pop(vp, None)
        if timer is not None and timer.active():
            timer.cancel()
        if vp.connection is not None:
            vp.connection.abandon()
        self._stopListening(vp)
        vp.closeChannels()
        log.info("{vp}: freed: {reason}", vp=vp.name, reason=reason, identifier=vp.identifier, sc_event=event)
        self._notify("vantagePointDeparted", vp)

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
        return os.path.join(self.socketsDirectory, name)

    def _listen(self, vp: VantagePoint, peer: str) -> bool:
        """
        Name C{vp} after its peer and create its UNIX socket.  Returns
        whether the socket could be made; the reason it could not is
        logged.
        """
        vp.peer = peer
        vp.name = socketName(peer, vp.monitorname)
        if self.socketsDirectory is None:
            # Served through the mux only (--mux without --sockets).
            return True
        path = self.socketPath(vp.name)
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            log.error(
                "{vp}: socket path {path} is longer than {limit} bytes",
                vp=vp.name,
                path=path,
                limit=MAX_SOCKET_PATH,
                sc_event="vp.socket_error",
            )
            return False
        # bind() creates the file with the umask's permissions, which hold
        # until the chmod to socketMode: make them the strictest meanwhile.
        umask = os.umask(0o077)
        try:
            vp.listener = self.reactor.listenUNIX(
                path,
                LocalChannelFactory(vp, self.limits.maxChannels),
                backlog=socket.SOMAXCONN,
                mode=self.socketMode,
            )
        except CannotListenError as e:
            log.error(
                "{vp}: cannot create socket {path}: {error}",
                vp=vp.name,
                path=path,
                error=str(e.socketError),
                sc_event="vp.socket_error",
            )
            return False
        finally:
            os.umask(umask)
        return True

    def _stopListening(self, vp: VantagePoint) -> None:
        """
        Close and unlink the socket of C{vp}, if it has one.  The file goes
        in the next reactor turn; L{stopService} waits for the last ones.
        """
        listener: Optional[object] = vp.listener
        vp.listener = None
        if listener is not None:
            stopped = defer.maybeDeferred(listener.stopListening)  # type: ignore[attr-defined]
            self._closingListeners.append(stopped)
            stopped.addBoth(self._listenerClosed, stopped)

    def _listenerClosed(self, result: object, stopped: defer.Deferred) -> object:
        if stopped in self._closingListeners:
            self._closingListeners.remove(stopped)
        return result
