"""
A vantage point: the state of one remote scamper that outlives its TCP
connections.

The sequence spaces, the queue of sent-but-unacknowledged messages and the
channels of local clients all live here, not in the connection, because a
scamper that loses its link comes back on a new connection with MASTER_RES
and expects to carry on exactly where it stopped (PROTOCOL.md 1.3, 3.9).
"""

from collections import deque
from typing import TYPE_CHECKING, Deque, Dict, Optional, Tuple

from twisted.logger import Logger
from zope.interface import implementer

from .flow import FlowControl
from .interfaces import IChannelEnd, IVantagePoint

from .wire import (
    CONTROL_CHANNEL,
    MAX_PAYLOAD,
    Ack,
    ChannelFin,
    Frame,
    Keepalive,
    MasterRes,
    WireError,
    channelFinPayload,
    channelNewPayload,
    encodeAck,
    encodeFrame,
    encodeKeepalive,
    parseControl,
    seqLessThan,
    seqNext,
)

if TYPE_CHECKING:  # pragma: no cover
    from twisted.internet.interfaces import IListeningPort, IReactorTime

    from .scamper import ScamperProtocol

log = Logger()


@implementer(IVantagePoint)
class VantagePoint:
    """
    One registered scamper, connected or a zombie.

    @ivar identifier: unique in this process, counting from 1 (the mux
        protocol's VP id).
    @ivar magic: the bytes scamper chose to identify itself across
        reconnects.
    @ivar monitorname: scamper's C{-M} name, or L{None}.
    @ivar peer: the peer string of the current (or last) connection.
    @ivar name: the socket file name, C{[monitorname-]peer}.
    @ivar connection: the L{ScamperProtocol} while connected, else L{None}
        (a zombie).
    @ivar listener: the listening UNIX port for local clients, while there
        is one.
    @ivar sndNxt: the sequence number of the next acked message we send.
    @ivar rcvNxt: the sequence number we expect on the next frame.
    @ivar resumes: how many times scamper resumed this session.
    @ivar framesIn, bytesIn: frames and payload bytes received from scamper.
    @ivar framesOut, bytesOut: acked frames and payload bytes sent to
        scamper (retransmissions not counted again).
    """

    def __init__(
        self,
        identifier: int,
        magic: bytes,
        monitorname: Optional[str],
        clock: "IReactorTime",
    ) -> None:
        self.identifier = identifier
        self.magic = magic
        self.monitorname = monitorname
        self.connectedAt = clock.seconds()
        self.flow = FlowControl(self, clock)
        self.peer = ""
        self.name = ""
        self.connection: Optional["ScamperProtocol"] = None
        self.listener: Optional["IListeningPort"] = None
        self.sndNxt = 0
        self.rcvNxt = 0
        self.resumes = 0
        self.framesIn = self.bytesIn = 0
        self.framesOut = self.bytesOut = 0
        self.channels: Dict[int, IChannelEnd] = {}
        self._nextChannel = 1
        self._unacked: Deque[Tuple[int, bytes]] = deque()

    def __repr__(self) -> str:
        return "<VantagePoint %d %s>" % (self.identifier, self.name)

    @property
    def unacked(self) -> int:
        """How many sent messages scamper has yet to acknowledge."""
        return len(self._unacked)

    # Sending ------------------------------------------------------------

    def _sendSequenced(self, channel: int, payload: bytes) -> None:
        """
        Number an acked message, keep it until scamper acknowledges it, and
        send it now if connected.  While a zombie it only waits in the
        queue, to be retransmitted after MASTER_OK.
        """
        seq = self.sndNxt
        frame = encodeFrame(seq, channel, payload)
        self.framesOut += 1
        self.bytesOut += len(payload)
        self._unacked.append((seq, frame))
        self.sndNxt = seqNext(seq)
        self.flow.queued(len(frame))
        if self.connection is not None:
            self.connection.write(frame)

    def sendKeepalive(self) -> None:
        """A KEEPALIVE carries the next sequence number, not consuming it."""
        assert self.connection is not None
        self.connection.write(encodeKeepalive(self.sndNxt))

    # Frames from scamper ------------------------------------------------

    def frameReceived(self, frame: Frame) -> None:
        """
        Handle one frame of an established session.

        @raise WireError: on anything the C daemon treats as fatal: a
            sequence gap, an unknown channel, an ACK that is not for the
            oldest outstanding message, a malformed or out-of-place
            control message.
        """
        if frame.seq != self.rcvNxt:
            raise WireError("got seq %d expected %d" % (frame.seq, self.rcvNxt))
        self.framesIn += 1
        self.bytesIn += len(frame.payload)
        if frame.channel != CONTROL_CHANNEL:
            channel = self.channels.get(frame.channel)
            if channel is None:
                raise WireError("data for unknown channel %d" % (frame.channel,))
            self._acknowledge(frame.seq)
            channel.deliver(frame.payload)
            return
        message = parseControl(frame.payload)
        if isinstance(message, Ack):
            self._acknowledged(message.seq)
        elif isinstance(message, ChannelFin):
            channel = self.channels.pop(message.channel, None)
            if channel is None:
                raise WireError("CHANNEL_FIN for unknown channel %d" % (message.channel,))
            self._acknowledge(frame.seq)
            self.flow.channelDrained(channel)
            log.info(
                "{vp}: scamper finished channel {channel}",
                vp=self.name,
                channel=message.channel,
                sc_event="channel.closed",
            )
            channel.scamperFinished()
        elif not isinstance(message, Keepalive):
            raise WireError("unexpected %s in an established session" % (type(message).__name__,))

    def _acknowledge(self, seq: int) -> None:
        assert self.connection is not None
        self.connection.write(encodeAck(self.sndNxt, seq))
        self.rcvNxt = seqNext(seq)

    def _acknowledged(self, seq: int) -> None:
        """ACKs are not cumulative: each must match the oldest outstanding."""
        if not self._unacked:
            raise WireError("ACK %d with nothing outstanding" % (seq,))
        expected = self._unacked[0][0]
        if seq != expected:
            raise WireError("ACK %d, expected ACK %d" % (seq, expected))
        self.flow.acknowledged(len(self._unacked.popleft()[1]))

    # Resume -------------------------------------------------------------

    def resumeProblem(self, message: MasterRes) -> Optional[str]:
        """
        Why a MASTER_RES cannot continue this session, or L{None} if it can
        (PROTOCOL.md 3.9, checks A and B).
        """
        if message.rcv_nxt != self.sndNxt and all(
            seq != message.rcv_nxt for seq, _ in self._unacked
        ):
            return "scamper expects seq %d, which we no longer hold" % (message.rcv_nxt,)
        if seqLessThan(self.rcvNxt, message.snd_una) or seqLessThan(
            message.snd_nxt, self.rcvNxt
        ):
            return "scamper's send window %d:%d does not hold our next expected seq %d" % (
                message.snd_una,
                message.snd_nxt,
                self.rcvNxt,
            )
        return None

    def retransmit(self, rcvNxt: int) -> None:
        """
        Forget what scamper says it has received (everything before
        C{rcvNxt}) and send the rest again, verbatim, in order.
        """
        unacked = self._unacked
        while unacked and seqLessThan(unacked[0][0], rcvNxt):
            self.flow.acknowledged(len(unacked.popleft()[1]))
        assert self.connection is not None
        if unacked:
            self.connection.writeSequence([frame for _, frame in unacked])

    # Local channels -----------------------------------------------------

    def openChannel(self, channel: IChannelEnd) -> int:
        """
        Give a new local client a channel number and announce it to
        scamper.  Numbers start at 1, never 0, and are not reused while
        still open.
        """
        number = self._nextChannel
        while number == CONTROL_CHANNEL or number in self.channels:
            number = (number + 1) & 0xFFFFFFFF
        self._nextChannel = (number + 1) & 0xFFFFFFFF
        self.channels[number] = channel
        self.flow.channelOpened(channel)
        self._sendSequenced(CONTROL_CHANNEL, channelNewPayload(number))
        log.info(
            "{vp}: local client opened channel {channel}",
            vp=self.name,
            channel=number,
            sc_event="channel.opened",
        )
        return number

    def clientData(self, number: int, data: bytes) -> None:
        """
        Relay a local client's bytes.  A read larger than a frame can hold
        is cut into equal frames (not 65535 plus a sliver): scamper
        re-assembles lines, so only the frame count matters.
        """
        size = len(data)
        if size <= MAX_PAYLOAD:
            self._sendSequenced(number, data)
            return
        pieces = -(-size // MAX_PAYLOAD)
        step = -(-size // pieces)
        view = memoryview(data)
        for start in range(0, size, step):
            self._sendSequenced(number, bytes(view[start : start + step]))

    def sendChannelFin(self, number: int) -> None:
        """Tell scamper the local client will send nothing more."""
        self._sendSequenced(CONTROL_CHANNEL, channelFinPayload(number))
        log.info(
            "{vp}: local client finished channel {channel}",
            vp=self.name,
            channel=number,
            sc_event="channel.client_finished",
        )

    def closeChannels(self) -> None:
        """End every local client's connection; their EOF says the VP is gone."""
        channels = list(self.channels.values())
        self.channels.clear()
        self.flow.stop()
        for channel in channels:
            channel.scamperFinished()
