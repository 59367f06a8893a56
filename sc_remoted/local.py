"""
The local side: programs connected to a vantage point's UNIX socket.

Each accepted connection is one channel to the remote scamper.  Bytes are
relayed unchanged both ways.  Closing follows the C daemon's half-close
rules (PROTOCOL.md 3.6): a client's EOF becomes CHANNEL_FIN to scamper
while results keep flowing back; scamper's CHANNEL_FIN closes the client
once everything queued for it is written.
"""

from typing import Optional

from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .flow import TRANSPORT_BUFFER
from .interfaces import IPausableEnd
from .vp import VantagePoint

log = Logger()


@implementer(IPushProducer)
class _CongestionReporter:
    """
    Registered as the producer of what we write to a client: Twisted
    pauses it when the client's socket buffer is full, which we pass on
    to the vantage point's flow control.
    """

    def __init__(self, channel: "LocalChannel") -> None:
        self._channel = channel

    def pauseProducing(self) -> None:
        self._channel.vp.flow.channelCongested(self._channel)

    def resumeProducing(self) -> None:
        self._channel.vp.flow.channelDrained(self._channel)

    def stopProducing(self) -> None:
        self._channel.vp.flow.channelDrained(self._channel)


@implementer(IHalfCloseableProtocol, IPausableEnd)
class LocalChannel(Protocol):
    """
    One local client of a vantage point, and the channel it uses.

    @ivar number: the channel number scamper knows this client by.
    @ivar finSent: we told scamper this client will send nothing more.
    @ivar finReceived: scamper finished the channel (or the vantage point
        is gone); nothing more will be written to the client.
    """

    number: Optional[int] = None

    def __init__(self, vp: VantagePoint) -> None:
        self.vp = vp
        self.finSent = False
        self.finReceived = False
        self._clientGone = False

    def connectionMade(self) -> None:
        limit = self.factory.maxChannels
        if len(self.vp.channels) >= limit:
            log.warn(
                "{vp}: local client refused: limit {limit} ({value}) reached",
                vp=self.vp.name,
                limit="max-channels",
                value=limit,
                sc_event="limit.refused",
            )
            self._clientGone = True
            self.transport.abortConnection()
            return
        self.transport.bufferSize = TRANSPORT_BUFFER
        self.transport.registerProducer(_CongestionReporter(self), True)
        self.number = self.vp.openChannel(self)

    def dataReceived(self, data: bytes) -> None:
        if not self.finSent and not self.finReceived:
            assert self.number is not None
            self.vp.clientData(self.number, data)

    def readConnectionLost(self) -> None:
        """The client shut down its sending side: tell scamper, keep writing."""
        self._finish()

    def writeConnectionLost(self) -> None:
        """Nothing to do: we close only when scamper finishes the channel."""

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """
        The client is gone.  The channel stays known until scamper
        finishes it, so that its late data is recognised and dropped.
        """
        self._clientGone = True
        self.vp.flow.channelDrained(self)
        self._finish()

    def _finish(self) -> None:
        if not self.finSent and not self.finReceived and self.number is not None:
            self.finSent = True
            self.vp.sendChannelFin(self.number)

    # Called by the vantage point ---------------------------------------

    def deliver(self, payload: bytes) -> None:
        """Relay scamper's bytes, unless the client has gone."""
        if not self._clientGone:
            self.transport.write(payload)

    def scamperFinished(self) -> None:
        """No more data will come: close the client once its data is out."""
        self.finReceived = True
        if not self._clientGone:
            # A streaming producer still registered would be resumed
            # instead of the connection being closed once the buffer
            # drains, and the client would never see EOF.
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def pauseReading(self) -> None:
        if not self._clientGone:
            self.transport.pauseProducing()

    def resumeReading(self) -> None:
        if not self._clientGone:
            self.transport.resumeProducing()

    def abort(self) -> None:
        if not self._clientGone:
            self.transport.abortConnection()


class LocalChannelFactory(Factory):
    """Makes a L{LocalChannel} for each client of one vantage point."""

    noisy = False

    def __init__(self, vp: VantagePoint, maxChannels: int) -> None:
        self.vp = vp
        self.maxChannels = maxChannels

    def buildProtocol(self, addr: object) -> LocalChannel:
        channel = LocalChannel(self.vp)
        channel.factory = self
        return channel
