"""
The TCP side: one L{ScamperProtocol} per connection from a remote scamper.

The protocol turns bytes into frames and hands them on: before
registration to the L{Controller} (MASTER_NEW, MASTER_RES), afterwards to
the L{VantagePoint} it is attached to.  It also owns the connection's
timers, all driven by one C{callLater} that is re-armed only when it
fires, so that no message pays for rescheduling a timer:

  - registration must complete within 30 s of the accept;
  - after that, 60 s without a byte from scamper ends the connection;
  - after 30 s without sending, a KEEPALIVE goes out.
"""

from typing import TYPE_CHECKING, List, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from .flow import TRANSPORT_BUFFER
from .naming import peerName
from .wire import (
    CONTROL_CHANNEL,
    Frame,
    FrameDecoder,
    MasterNew,
    MasterRes,
    WireError,
    describeFrame,
    parseControl,
)

if TYPE_CHECKING:  # pragma: no cover
    from .controller import Controller
    from .vp import VantagePoint

log = Logger()

REGISTRATION_TIMEOUT = 30.0
SILENCE_TIMEOUT = 60.0
KEEPALIVE_INTERVAL = 30.0


class ScamperProtocol(Protocol):
    """
    One TCP (or TLS) connection from a scamper.

    @ivar peer: the C daemon's string for the peer address, also sent to
        scamper as its MASTER_ID.
    @ivar vp: the vantage point this connection serves, once registered.
    """

    vp: Optional["VantagePoint"] = None
    peer = ""
    _counted: Optional[str] = None

    def __init__(self, controller: "Controller", clock: IReactorTime) -> None:
        self._controller = controller
        self._clock = clock
        self._decoder = FrameDecoder()
        self._debug = controller.debug
        self._timer: Optional[IDelayedCall] = None
        self._batch: Optional[List[bytes]] = None
        self._readingPaused = False
        self._closing = False
        self._acceptedAt = 0.0
        self._lastReceived = 0.0
        self._lastSent = 0.0

    def connectionMade(self) -> None:
        address = self.transport.getPeer()
        self.peer = peerName(address)
        if not self._controller.connectionOpened(self, address.host):
            self._closing = True
            self.transport.abortConnection()
            return
        self._counted = address.host
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            # Without it, each small ACK waits for scamper's delayed ACK:
            # 44 ms per command round trip with the C daemon (BASELINE.md).
            setNoDelay(True)
        if hasattr(self.transport, "bufferSize"):  # not on a TLS transport
            self.transport.bufferSize = TRANSPORT_BUFFER
        now = self._clock.seconds()
        self._acceptedAt = self._lastReceived = self._lastSent = now
        self._timer = self._clock.callLater(REGISTRATION_TIMEOUT, self._timerFired)
        log.info("connection from {peer}", peer=self.peer, sc_event="scamper.connected")

    # Output -------------------------------------------------------------

    def write(self, frame: bytes) -> None:
        """
        Send one frame.  While input is being handled the frames (mostly
        ACKs) are gathered and written together when it is done.
        """
        if self._debug:
            self._logFrames("sent", frame)
        batch = self._batch
        if batch is not None:
            batch.append(frame)
            return
        self.transport.write(frame)
        self._lastSent = self._clock.seconds()

    def writeSequence(self, frames: List[bytes]) -> None:
        if self._debug:
            self._logFrames("sent", b"".join(frames))
        batch = self._batch
        if batch is not None:
            batch.extend(frames)
            return
        self.transport.writeSequence(frames)
        self._lastSent = self._clock.seconds()

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch and not self._closing:
            self.transport.writeSequence(batch)
            self._lastSent = self._lastReceived

    def _logFrames(self, direction: str, data: bytes) -> None:
        for frame in FrameDecoder().feed(data):
            log.debug(
                "{peer} {direction} {frame}",
                peer=self.peer,
                direction=direction,
                frame=describeFrame(frame),
                sc_event="scamper.message",
            )

    # Input --------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._lastReceived = self._clock.seconds()
        self._batch = []
        try:
            for frame in self._decoder.feed(data):
                if self._debug:
                    log.debug(
                        "{peer} {direction} {frame}",
                        peer=self.peer,
                        direction="received",
                        frame=describeFrame(frame),
                        sc_event="scamper.message",
                    )
                vp = self.vp
                if vp is not None:
                    vp.frameReceived(frame)
                else:
                    self._registrationFrame(frame)
                    if self._closing:
                        break
            if not self._closing:
                self._checkPendingHeader()
        except WireError as e:
            self._batch = None
            self._protocolError(str(e))
        else:
            self._flush()

    def _checkPendingHeader(self) -> None:
        """Refuse a frame as soon as its header shows it is wrong."""
        header = self._decoder.pendingHeader()
        if header is None:
            return
        seq, channel, _ = header
        vp = self.vp
        expected = vp.rcvNxt if vp is not None else 0
        if seq != expected:
            raise WireError("got seq %d expected %d" % (seq, expected))
        if channel != CONTROL_CHANNEL and (vp is None or channel not in vp.channels):
            raise WireError("data for unknown channel %d" % (channel,))

    def _registrationFrame(self, frame: Frame) -> None:
        """
        Before registration only MASTER_NEW and MASTER_RES, with sequence
        0 on the control channel, are acceptable.
        """
        if frame.seq != 0:
            raise WireError("got seq %d expected 0" % (frame.seq,))
        if frame.channel != CONTROL_CHANNEL:
            raise WireError("data on channel %d before MASTER_NEW" % (frame.channel,))
        message = parseControl(frame.payload)
        if isinstance(message, MasterNew):
            self._controller.register(self, message)
        elif isinstance(message, MasterRes):
            self._controller.resume(self, message)
        else:
            raise WireError("%s before MASTER_NEW" % (type(message).__name__,))

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
            self._controller.free(vp, "protocol error")

    # Lifecycle, as seen by the controller -------------------------------

    def attach(self, vp: "VantagePoint") -> None:
        """Serve C{vp} from now on."""
        self.vp = vp
        vp.connection = self
        self.transport.registerProducer(vp.flow, True)
        vp.flow.connected()

    def setReadingPaused(self, paused: bool) -> None:
        """
        Stop or restart reading from scamper while a local client cannot
        keep up.  Time spent paused does not count as scamper's silence.
        """
        if paused == self._readingPaused:
            return
        self._readingPaused = paused
        if paused:
            self.transport.pauseProducing()
        else:
            self._lastReceived = self._clock.seconds()
            self.transport.resumeProducing()

    def abandon(self) -> None:
        """
        Stop serving: detach from the vantage point (so the loss of this
        connection changes nothing there) and drop the connection now.
        """
        self._detach()
        self._closing = True
        self.transport.abortConnection()

    def refuse(self, frame: bytes) -> None:
        """Write a last frame (MASTER_REJ) and close once it is out."""
        self.write(frame)
        self._flush()
        self._closing = True
        self.transport.loseConnection()

    def _detach(self) -> None:
        vp = self.vp
        if vp is not None and vp.connection is self:
            vp.connection = None
            self.transport.unregisterProducer()
        self.vp = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._counted is not None:
            self._controller.connectionClosed(self._counted)
            self._counted = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        vp = self.vp
        self._detach()
        if vp is not None:
            self._controller.disconnected(vp, reason.getErrorMessage())

    # Timers -------------------------------------------------------------

    def _timerFired(self) -> None:
        now = self._clock.seconds()
        vp = self.vp
        if vp is None:
            if self._closing:
                return
            deadline = self._acceptedAt + REGISTRATION_TIMEOUT
            if now >= deadline:
                log.info(
                    "{peer} did not register within {timeout:.0f} s; closing",
                    peer=self.peer,
                    timeout=REGISTRATION_TIMEOUT,
                    sc_event="scamper.registration_timeout",
                )
                self._timer = None
                self.abandon()
                return
            nextCheck = deadline
        else:
            if self._readingPaused:
                self._lastReceived = now
            silentUntil = self._lastReceived + SILENCE_TIMEOUT
            if now >= silentUntil:
                log.info(
                    "{vp}: nothing from {peer} for {timeout:.0f} s; dropping the connection",
                    vp=vp.name,
                    peer=self.peer,
                    timeout=SILENCE_TIMEOUT,
                    sc_event="scamper.silent",
                )
                self._timer = None
                self.abandon()
                self._controller.disconnected(vp, "silent for %d s" % (SILENCE_TIMEOUT,))
                return
            keepaliveDue = self._lastSent + KEEPALIVE_INTERVAL
            if now >= keepaliveDue:
                vp.sendKeepalive()
                keepaliveDue = self._lastSent + KEEPALIVE_INTERVAL
            nextCheck = min(silentUntil, keepaliveDue)
        self._timer = self._clock.callLater(max(0.0, nextCheck - now), self._timerFired)


class ScamperFactory(Factory):
    """Builds a L{ScamperProtocol} for each scamper that connects."""

    noisy = False

    def __init__(self, controller: "Controller", clock: IReactorTime) -> None:
        self.controller = controller
        self.clock = clock

    def buildProtocol(self, addr: object) -> ScamperProtocol:
        protocol = ScamperProtocol(self.controller, self.clock)
        protocol.factory = self
        return protocol
