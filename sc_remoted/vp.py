"""
A vantage point: one remote scamper as the rest of the daemon sees it,
from registration until freed, across its connections.

It binds a sans-IO L{Session} (the protocol state) to what is outside
the engine: the scamper connection serving it now, its socket file, its
flow control, its zombie timer, the budget its local clients' backlogs
share.  Channel ends (UNIX clients, mux channels) go through it: it
enforces the max-channels limit, writes what the session makes for
scamper, and logs each channel's events once, for every kind of end.
"""

from typing import Any, List, Optional, Tuple, Union

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IReactorTime
from zope.interface import implementer

from .backlog import Backlog, BacklogOwner, Budgets
from .engine import Channel, Parts, ReadResult, Session
from .eventlog import EventLogger
from .flow import FlowControl
from .interfaces import IScamperLink, IVantagePoint
from .lifecycle import State

log = EventLogger()


class ChannelRefused(Exception):
    """A channel cannot be opened: the vantage point has its maximum open."""


@implementer(IVantagePoint)
class VantagePoint:
    """
    One registered scamper, connected or a zombie.

    @ivar identifier: unique in this process, counting from 1.
    @ivar magic: the bytes scamper chose to identify itself across reconnects.
    @ivar monitorname: scamper's C{-M} name, or L{None}.
    @ivar session: the L{Session}; its C{state} is the lifecycle's.
    @ivar address: the peer address of the current (or last) connection.
    @ivar peer: that address as the C daemon writes it.
    @ivar name: the socket file name, C{[monitorname-]peer}.
    @ivar connection: the L{IScamperLink} serving it while connected.
    @ivar listener: the listening UNIX port for local clients, if any.
    @ivar zombieTimer: the pending expiry while a zombie.
    @ivar budgets: the process's budgets.
    @ivar queued: the budget its local clients' backlogs share.
    """

    def __init__(
        self,
        identifier: int,
        magic: bytes,
        monitorname: Optional[str],
        clock: IReactorTime,
        maxChannels: int,
        budgets: Budgets,
    ) -> None:
        self.identifier = identifier
        self.magic = magic
        self.monitorname = monitorname
        self.maxChannels = maxChannels
        self.connectedAt = clock.seconds()
        self.session = Session()
        self.flow = FlowControl(self)
        self.budgets = budgets
        self.queued = budgets.forVantagePoint()
        self.address: Optional[Union[IPv4Address, IPv6Address]] = None
        self.peer = ""
        self.name = ""
        self.connection: Optional[IScamperLink] = None
        self.listener: Optional[IListeningPort] = None
        self.zombieTimer: Optional[IDelayedCall] = None

    def __repr__(self) -> str:
        return "<VantagePoint %d %s %s>" % (self.identifier, self.name, self.session.state.value)

    @property
    def state(self) -> State:
        return self.session.state

    __slots__ = (
        "identifier",
        "magic",
        "monitorname",
        "maxChannels",
        "connectedAt",
        "session",
        "flow",
        "address",
        "peer",
        "name",
        "connection",
        "listener",
        "zombieTimer",
        "budgets",
        "queued",
    )

    def channelEnds(self) -> list:
        """The ends of the open channels (for flow control)."""
        return [channel.end for channel in self.session.channels.values()]

    def newBacklog(self, owner: BacklogOwner, writeSequence) -> Backlog:
        """The backlog of a local client: its own budget and this VP's."""
        return self.budgets.channelBacklog(owner, writeSequence, self.queued)

    def _toScamper(self, parts: Parts) -> None:
        if parts and self.connection is not None:
            self.connection.writeSequence(parts)
        self.flow.unackedChanged(self.session.unackedBytes)

    # Channels, for their ends ------------------------------------------

    def openChannel(self, end: Any) -> Channel:
        """
        A new channel for C{end}, announced to scamper (or queued for it
        while a zombie).

        @raise ChannelRefused: if C{maxChannels} are open.
        """
        if len(self.session.channels) >= self.maxChannels:
            log.warn(
                "{vp}: channel refused: limit {limit} ({value}) reached",
                vp=self.name,
                limit="max-channels",
                value=self.maxChannels,
                sc_event="limit.refused",
            )
            raise ChannelRefused("%s has %d channels open" % (self.name, self.maxChannels))
        channel, frame = self.session.openChannel(end)
        self.flow.channelOpened(end)
        self._toScamper(frame)
        # A channel's lines are at level debug: a busy platform opens
        # thousands a second, which would be most of the log at info.
        log.debug(
            "{vp}: {client} opened channel {channel}",
            vp=self.name,
            client=end.client,
            channel=channel.number,
            sc_event="channel.opened",
        )
        return channel

    def send(self, channel: Channel, data: bytes) -> None:
        """Relay a client's bytes; nothing once the channel is finished."""
        self._toScamper(self.session.clientData(channel, data))

    def sendMany(self, reads: List[Tuple[Channel, bytes]]) -> None:
        """L{send} each of C{reads}, in order, in one write to scamper."""
        clientData = self.session.clientData
        parts: Parts = []
        for channel, data in reads:
            parts += clientData(channel, data)
        self._toScamper(parts)

    def finish(self, channel: Channel) -> None:
        """The client will send nothing more: CHANNEL_FIN, once."""
        frame = self.session.clientFinished(channel)
        if frame is None:
            return
        self._toScamper(frame)
        log.debug(
            "{vp}: {client} finished channel {channel}",
            vp=self.name,
            client=channel.end.client,
            channel=channel.number,
            sc_event="channel.client_finished",
        )

    # Reads from scamper, for the connection -----------------------------

    def deliver(self, result: ReadResult) -> None:
        """Hand each end its payloads, then close what scamper finished."""
        for channel, payloads in result.deliveries.items():
            channel.end.deliver(payloads)
        self.session.closeFinished(result)
        for channel in result.finished:
            log.debug(
                "{vp}: scamper finished channel {channel}",
                vp=self.name,
                channel=channel.number,
                sc_event="channel.closed",
            )
            channel.end.scamperFinished()
        self.flow.unackedChanged(self.session.unackedBytes)

    def closeChannels(self) -> None:
        """End every channel; their ends' EOF says the vantage point is gone."""
        channels = self.session.closeChannels()
        for channel in channels:
            channel.end.scamperFinished()
