"""
The local side: programs connected to a vantage point's UNIX socket.

Each accepted connection is one channel to the remote scamper.  Bytes are
relayed unchanged both ways.  Closing follows the C daemon's half-close
rules (docs/protocol.rst 3.6): a client's EOF becomes CHANNEL_FIN to scamper
while results keep flowing back; scamper's CHANNEL_FIN closes the client
once everything queued for it is written.  What a client is too slow to
take waits in its backlog (L{sc_remoted.backlog}); a client too far
behind, or stalled, loses its channel, and no other client waits for it.
"""

from typing import List, Optional

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from .backlog import Backlog
from .eager import Writer
from .engine import Channel
from .eventlog import EventLogger
from .flow import TRANSPORT_BUFFER, enlargeSendBuffer
from .interfaces import IPausableEnd, StreamTransport, connectedTransport
from .vp import ChannelRefused, VantagePoint

log = EventLogger()


@implementer(IHalfCloseableProtocol, IPausableEnd)
class LocalChannel(Protocol):
    """
    One local client of a vantage point, and the channel it uses.

    @ivar channel: the channel handle, once the vantage point gave one.
    """

    factory: "LocalChannelFactory"
    _out: StreamTransport
    _writer: Writer
    client = "local client"
    channel: Optional[Channel] = None
    _backlog: Optional[Backlog] = None

    def __init__(self, vp: VantagePoint) -> None:
        self.vp = vp
        self._clientGone = False

    @property
    def number(self) -> Optional[int]:
        """The channel number scamper knows this client by."""
        return self.channel.number if self.channel is not None else None

    def connectionMade(self) -> None:
        # The transport, typed, looked up once: every write uses it.
        self._out = connectedTransport(self)
        try:
            self.channel = self.vp.openChannel(self)
        except ChannelRefused:
            self._clientGone = True
            self._out.abortConnection()
            return
        self._out.bufferSize = TRANSPORT_BUFFER
        enlargeSendBuffer(self.transport)
        self._writer = Writer(self._out)
        self._backlog = self.vp.newBacklog(self, self._writer.writeSequence)
        self._out.registerProducer(self._backlog, True)

    def dataReceived(self, data: bytes) -> None:
        if self.channel is not None:
            self.vp.send(self.channel, data)

    def readConnectionLost(self) -> None:
        """The client shut down its sending side: tell scamper, keep writing."""
        if self.channel is not None:
            self.vp.finish(self.channel)

    def writeConnectionLost(self) -> None:
        """Nothing to do: we close only when scamper finishes the channel."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        The client is gone.  The channel stays known until scamper
        finishes it, so that its late data is recognised and dropped.
        """
        self._clientGone = True
        if self._backlog is not None:
            self._backlog.drop()
        if self.channel is not None:
            self.vp.finish(self.channel)

    # IChannelEnd, called by the vantage point ---------------------------

    def deliver(self, payloads: List[bytes]) -> None:
        """Relay scamper's bytes, unless the client has gone."""
        if not self._clientGone:
            assert self._backlog is not None
            self._backlog.write(payloads)

    def scamperFinished(self) -> None:
        """No more data will come: close the client once its data is out."""
        if not self._clientGone:
            assert self._backlog is not None
            self._backlog.whenWritten(self._close)

    def _close(self) -> None:
        if not self._clientGone:
            # A streaming producer still registered would be resumed
            # instead of the connection being closed once the buffer
            # drains, and the client would never see EOF.
            self._out.unregisterProducer()
            self._writer.loseConnection()

    def pauseReading(self) -> None:
        if not self._clientGone:
            self._out.pauseProducing()

    def resumeReading(self) -> None:
        if not self._clientGone:
            self._out.resumeProducing()

    # BacklogOwner ------------------------------------------------------

    def backlogOverflowed(self, budget: str, limit: int, queued: int) -> None:
        self._closeBehind(
            "{vp}: {client} is {queued} bytes behind, over the {budget} budget of {limit}; closing its channel",
            "channel.over_budget",
            queued=queued,
            budget=budget,
            limit=limit,
        )

    def backlogStalled(self, limit: float, queued: int) -> None:
        self._closeBehind(
            "{vp}: {client} read nothing for {limit:.0f} s; closing its channel",
            "channel.stalled",
            queued=queued,
            limit=limit,
        )

    def _closeBehind(self, format: str, event: str, **fields: object) -> None:
        """A client too far behind: one log line, and it loses its channel."""
        log.warn(format, vp=self.vp.name, client=self.client, channel=self.number, sc_event=event, **fields)
        self._out.abortConnection()


class LocalChannelFactory(Factory):
    """Makes a L{LocalChannel} for each client of one vantage point."""

    noisy = False

    def __init__(self, vp: VantagePoint) -> None:
        self.vp = vp

    def buildProtocol(self, addr: object) -> Optional[Protocol]:
        channel = LocalChannel(self.vp)
        channel.factory = self
        return channel
