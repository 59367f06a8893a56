"""
The TCP (or TLS) side: one L{ScamperProtocol} per connection from a
remote scamper, a thin adapter around the engine's L{Link}.

Each read goes to L{Link.receive} in one call; what comes back is done
in order: one write of the read's ACKs to scamper, one write per channel
end, then registration requests to the registry (L{IScamperSessions}),
or the protocol error.  What one turn of the reactor writes to scamper
over a socket is sent in one call at the turn's end (L{Coalescer}).
The connection's timers (docs/protocol.rst 3.7) are the link's; here
they are one C{callLater}, re-armed only when it fires, so that no
message pays for rescheduling a timer.
"""

from typing import List, Optional, Union

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from .coalesce import Coalescer, TurnEnd
from .eager import Writer
from .engine import Link, ReadResult, Timeouts
from .eventlog import EventLogger
from .flow import TRANSPORT_BUFFER
from .interfaces import IScamperLink, IScamperSessions, StreamTransport, connectedTransport
from .naming import peerName
from .vp import VantagePoint
from .wire import FrameDecoder, MasterNew, describeFrame

log = EventLogger()


@implementer(IScamperLink)
class ScamperProtocol(Protocol):
    """
    One connection from a scamper.

    @ivar peer: the C daemon's string for the peer address, also sent to
        scamper as its MASTER_ID.
    @ivar vp: the vantage point this connection serves, once registered.
    """

    vp: Optional[VantagePoint] = None
    peer = ""
    address: Optional[Union[IPv4Address, IPv6Address]] = None
    _counted: Optional[str] = None
    _out: StreamTransport
    _writer: Writer
    _coalescer: Optional[Coalescer] = None

    def __init__(
        self,
        sessions: IScamperSessions,
        clock: IReactorTime,
        timeouts: Timeouts = Timeouts(),
        turnEnd: Optional[TurnEnd] = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._timeouts = timeouts
        self._turnEnd = turnEnd
        self._debug = sessions.debug
        self._timer: Optional[IDelayedCall] = None
        self._debugDecoder = FrameDecoder() if self._debug else None
        self.link = Link(clock.seconds(), timeouts)

    def connectionMade(self) -> None:
        # The transport, typed, looked up once: every write uses it.
        self._out = transport = connectedTransport(self)
        self._writer = Writer(transport)
        if self._turnEnd is not None and self._writer.eager:
            self._coalescer = Coalescer(self._writer.writeSequence, self._turnEnd)
        address: IAddress = transport.getPeer()
        if not isinstance(address, (IPv4Address, IPv6Address)):
            log.error(
                "connection from {address}: scamper must connect over TCP; closing",
                address=address,
                sc_event="scamper.not_tcp",
            )
            self.link.closed = True
            transport.abortConnection()
            return
        self.address = address
        self.peer = peerName(address)
        if not self._sessions.connectionOpened(self, address.host):
            self.link.closed = True
            transport.abortConnection()
            return
        self._counted = address.host
        setNoDelay = getattr(transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            # Without it, each small ACK waits for scamper's delayed ACK:
            # 44 ms per command round trip with the C daemon (docs/performance.rst).
            setNoDelay(True)
        if hasattr(transport, "bufferSize"):  # not on a TLS transport
            transport.bufferSize = TRANSPORT_BUFFER
        self._timer = self._clock.callLater(self._timeouts.registration, self._timerFired)
        log.info("connection from {peer}", peer=self.peer, sc_event="scamper.connected")

    # Output -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send bytes to scamper, at the end of this turn over a socket, else now."""
        if self._debug:
            self._logFrames("sent", data)
        coalescer = self._coalescer
        if coalescer is None:
            self._writer.write(data)
        else:
            coalescer.write([data])
        self.link.lastSent = self._clock.seconds()

    def writeSequence(self, parts: List[bytes]) -> None:
        """Send the parts of one or more frames to scamper, as L{write}."""
        if self._debug:
            self._logFrames("sent", b"".join(parts))
        coalescer = self._coalescer
        if coalescer is None:
            self._writer.writeSequence(parts)
        else:
            coalescer.write(parts)
        self.link.lastSent = self._clock.seconds()

    def _logFrames(self, direction: str, data: bytes, decoder: Optional[FrameDecoder] = None) -> None:
        for frame in (decoder or FrameDecoder()).feed(data):
            log.debug(
                "{peer} {direction} {frame}",
                peer=self.peer,
                direction=direction,
                frame=describeFrame(frame),
                sc_event="scamper.message",
            )

    # Input --------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        link = self.link
        if self._debugDecoder is not None and not link.closed:
            self._logFrames("received", data, self._debugDecoder)
        result = link.receive(data, self._clock.seconds())
        while True:
            self._apply(result)
            message = result.request
            if message is None or link.closed:
                return
            if isinstance(message, MasterNew):
                self._sessions.register(self, message)
            else:
                self._sessions.resume(self, message)
            if link.session is None or link.closed:
                return
            result = link.receive(b"", self._clock.seconds())

    def _apply(self, result: ReadResult) -> None:
        if result.toScamper:
            self.write(result.toScamper)
        vp = self.vp
        if vp is not None:
            vp.deliver(result)
        if result.error is not None:
            self._protocolError(result.error)

    def _protocolError(self, reason: str) -> None:
        """
        Bad input costs this peer its session: no zombie is kept, as in
        the C daemon, since the state is no longer trustworthy.
        """
        vp = self.vp
        log.error(
            "protocol error from {peer} ({vp}): {reason}; closing",
            peer=self.peer,
            vp=vp.name if vp is not None else "unregistered",
            reason=reason,
            sc_event="scamper.protocol_error",
        )
        self.abandon()
        if vp is not None:
            self._sessions.protocolError(vp, reason)

    # IScamperLink, as the registry drives it ----------------------------

    def attach(self, vp: VantagePoint) -> None:
        """Serve C{vp} from now on."""
        self.vp = vp
        vp.connection = self
        self.link.attach(vp.session)
        self._out.registerProducer(vp.flow, True)
        vp.flow.connected()

    def abandon(self) -> None:
        """
        Stop serving: detach from the vantage point (so the loss of this
        connection changes nothing there) and drop the connection now.
        """
        self._detach()
        self.link.closed = True
        # What was written before reaches the kernel first, as it did
        # when every write was sent in the call.
        if self._coalescer is not None:
            self._coalescer.flush()
        self._out.abortConnection()

    def refuse(self, frame: bytes) -> None:
        """Write a last frame (MASTER_REJ) and close once it is out."""
        self.write(frame)
        if self._coalescer is not None:
            self._coalescer.flush()
        self.link.closed = True
        self._out.loseConnection()

    def _detach(self) -> None:
        vp = self.vp
        if vp is not None and vp.connection is self:
            vp.connection = None
            self._out.unregisterProducer()
        self.vp = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._coalescer is not None:
            self._coalescer.drop()
        if self._counted is not None:
            self._sessions.connectionClosed(self._counted)
            self._counted = None
        self._cancelTimer()
        vp = self.vp
        self._detach()
        if vp is not None:
            self._sessions.disconnected(vp, reason.getErrorMessage())

    # Timers -------------------------------------------------------------

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timerFired(self) -> None:
        self._timer = None
        if self.link.closed:
            return
        expired, keepalive = self.link.timerDue(self._clock.seconds())
        if expired == "registration":
            log.info(
                "{peer} did not register within {timeout:.0f} s; closing",
                peer=self.peer,
                timeout=self._timeouts.registration,
                sc_event="scamper.registration_timeout",
            )
            self.abandon()
            return
        if expired == "silent":
            vp = self.vp
            assert vp is not None
            log.info(
                "{vp}: nothing from {peer} for {timeout:.0f} s; dropping the connection",
                vp=vp.name,
                peer=self.peer,
                timeout=self._timeouts.silence,
                sc_event="scamper.silent",
            )
            self.abandon()
            self._sessions.disconnected(vp, "silent for %d s" % (self._timeouts.silence,))
            return
        if keepalive:
            self.write(keepalive)
        now = self._clock.seconds()
        self._timer = self._clock.callLater(max(0.0, self.link.deadline() - now), self._timerFired)


class ScamperFactory(Factory):
    """
    Builds a L{ScamperProtocol} for each scamper that connects; they share
    one L{TurnEnd}.
    """

    noisy = False

    def __init__(self, sessions: IScamperSessions, clock: IReactorTime, timeouts: Timeouts = Timeouts()) -> None:
        self.sessions = sessions
        self.clock = clock
        self.timeouts = timeouts
        self.turnEnd = TurnEnd(clock)

    def buildProtocol(self, addr: Optional[IAddress]) -> ScamperProtocol:
        protocol = ScamperProtocol(self.sessions, self.clock, self.timeouts, self.turnEnd)
        protocol.factory = self
        return protocol
