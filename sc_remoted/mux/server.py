"""
The daemon's side of the mux: one L{MuxProtocol} per mux client, made by
a L{MuxFactory} that follows the controller's vantage points.

A client's session (docs/mux.rst):

  - on accept it gets a VP_UPDATE for every connected vantage point, then
    GO, in one write;
  - later it is told of arrivals (VP_UPDATE) and departures (VP_DEPART);
  - CHANNEL_OPEN(vp, channel) opens a new scamper channel on that vantage
    point, a L{MuxChannel}; data frames on the client's channel number are
    relayed both ways; scamper's CHANNEL_FIN becomes CHANNEL_CLOSE.

Where upstream falls short, this side does better:

  - each client remembers which vantage points it was told of and with
    which attributes (L{MuxProtocol.known}), so a vantage point that
    resumes is announced to clients that connected during its outage, and
    one whose attributes changed (a new address after a resume, a
    metadata reload) is announced again: VP_DEPART then VP_UPDATE, since
    libscamperctrl adds a second entry for an id it already holds;
  - a malformed or duplicate CHANNEL_OPEN costs only that channel
    (CHANNEL_CLOSE), not the client's connection; but a client past
    L{MAX_MALFORMED} malformed messages is closed, so that one that sends
    nothing else cannot keep a connection and fill the log;
  - when a vantage point departs, each open channel to it gets
    CHANNEL_CLOSE (before VP_DEPART);
  - the protocol also runs over TCP, with TLS and client certificates.

Flow: a mux connection carries channels to many vantage points.  What
it is too slow to take (data, CHANNEL_CLOSE, announcements, in order)
waits in its backlog (L{sc_remoted.backlog}), within the mux-client
budget; a client past it, or stalled, loses its connection, and no
vantage point stops reading from scamper for it.  While any vantage
point with a channel on it cannot take more from clients, reading from
the mux connection stops.
"""

import os
from typing import Dict, List, Optional, Set, Tuple, cast

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ..backlog import Backlog
from ..eager import Writer
from ..engine import Channel, ChannelState
from ..eventlog import EventLogger
from ..flow import enlargeSendBuffer
from ..interfaces import (
    IPausableEnd,
    IVantagePoint,
    IVantagePointObserver,
    IVantagePointRegistry,
    StreamTransport,
    connectedTransport,
)
from ..lifecycle import State
from ..vp import ChannelRefused
from .codec import (
    CONTROL_CHANNEL,
    HEADER,
    MAX_CLIENT_MESSAGE,
    Attribute,
    ChannelClose,
    ChannelOpen,
    MessageTooLarge,
    MuxDecoder,
    MuxError,
    UnknownControl,
    encodeChannelClose,
    encodeGo,
    encodeVpDepart,
    encodeVpUpdate,
    optionalChannel,
    parseControl,
)
from .metadata import Metadata

log = EventLogger()

# Malformed messages (a control message that does not parse, of an
# unknown type, not for the daemon, or a CHANNEL_OPEN on channel 0 or on
# an open channel) a mux client may send before it is closed.  Each is
# logged; a correct client sends none, and one that has a bug in a rare
# path still has room for it.  Messages that can come from a race with
# the daemon (data for a channel just closed, a CHANNEL_OPEN for a
# vantage point just gone) are not counted.
MAX_MALFORMED = 100

AttributeList = Tuple[Tuple[int, str], ...]


def formatArrival(seconds: float) -> str:
    """C{sec.usec}, as upstream formats a C{struct timeval}."""
    micros = int(round(seconds * 1000000))
    return "%d.%06d" % divmod(micros, 1000000)


def vantagePointAttributes(vp: IVantagePoint, metadata: Optional[Metadata]) -> AttributeList:
    """
    What a VP_UPDATE says of C{vp}: its name, arrival time and address,
    then the meta-file's attributes for its name.
    """
    attributes: List[Tuple[int, str]] = []
    if vp.monitorname:
        attributes.append((int(Attribute.NAME), vp.monitorname))
    attributes.append((int(Attribute.ARRIVAL), formatArrival(vp.connectedAt)))
    address = vp.address
    if isinstance(address, IPv4Address):
        attributes.append((int(Attribute.IPV4), address.host))
    elif isinstance(address, IPv6Address):
        attributes.append((int(Attribute.IPV6), address.host.split("%", 1)[0]))
    if metadata is not None:
        attributes.extend(metadata.attributesFor(vp.monitorname))
    return tuple(attributes)


# Channels ---------------------------------------------------------------


@implementer(IPausableEnd)
class MuxChannel:
    """
    One channel of a mux client to a vantage point: the channel end the
    vantage point delivers to.  Its life is the engine's channel's
    (L{ChannelState}): what scamper sends after the client finished it
    (the mux connection dropped, or the client reused the id) is dropped;
    once scamper finished it, the client gets CHANNEL_CLOSE.

    @ivar clientChannel: the client's number for the channel.
    @ivar channel: the vantage point's handle for it, once open.
    """

    def __init__(self, mux: "MuxProtocol", vp: IVantagePoint, clientChannel: int) -> None:
        self.mux = mux
        self.vp = vp
        self.clientChannel = clientChannel
        self.channel: Optional[Channel] = None

    def __repr__(self) -> str:
        return "<MuxChannel %d -> %s %r>" % (self.clientChannel, self.vp.name, self.channel)

    @property
    def client(self) -> str:
        """Who is at this end, for the log."""
        return "mux client %s (its channel %d)" % (self.mux.peer, self.clientChannel)

    def open(self) -> None:
        """@raise ChannelRefused: past the vantage point's max-channels."""
        self.channel = self.vp.openChannel(self)

    def finishFromClient(self) -> None:
        """The client will send nothing more: tell scamper, keep nothing."""
        self.mux.forget(self)
        if self.channel is not None:
            self.vp.finish(self.channel)

    # IChannelEnd -------------------------------------------------------

    def deliver(self, payloads: List[bytes]) -> None:
        if self.channel is not None and self.channel.state is ChannelState.OPEN:
            self.mux.sendData(self.clientChannel, payloads)

    def scamperFinished(self) -> None:
        self.mux.channelClosed(self)

    # IPausableEnd ------------------------------------------------------

    def pauseReading(self) -> None:
        self.mux.pauseFor(self)

    def resumeReading(self) -> None:
        self.mux.resumeFor(self)


# The protocol -----------------------------------------------------------


class MuxProtocol(Protocol):
    """
    One mux client.

    @ivar number: this client's number among the mux clients of this
        process, counting from 1.
    @ivar channels: the open channels, by the client's channel number.
    @ivar known: the vantage points this client was told of, by id, with
        the attributes it was told.
    """

    factory: "MuxFactory"
    _out: StreamTransport
    _backlog: Backlog
    number = 0

    def __init__(self) -> None:
        self.channels: Dict[int, MuxChannel] = {}
        self.known: Dict[int, AttributeList] = {}
        self.peer = ""
        self._decoder = MuxDecoder(MAX_CLIENT_MESSAGE)
        self._gone = False
        self.malformed = 0
        self._pausedBy: Set[MuxChannel] = set()

    def connectionMade(self) -> None:
        # The transport, typed, looked up once: every write uses it.
        self._out = connectedTransport(self)
        self.peer = describePeer(cast(ITransport, self.transport), self.number)
        enlargeSendBuffer(self.transport)
        self._backlog = self.factory.budgets.muxClientBacklog(self, Writer(self._out).writeSequence)
        self._out.registerProducer(self._backlog, True)
        self.factory.clients.add(self)
        messages = []
        for vp in self.factory.connectedVantagePoints():
            attributes = self.factory.attributes(vp)
            self.known[vp.identifier] = attributes
            messages.append(encodeVpUpdate(vp.identifier, attributes))
        messages.append(encodeGo())
        self._backlog.write(messages)
        log.info(
            "mux client {peer} connected; told of {count} vantage points",
            peer=self.peer,
            count=len(messages) - 1,
            sc_event="mux.connected",
        )

    # Input -------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._gone:
            return
        try:
            frames = self._decoder.feed(data)
        except MessageTooLarge as e:
            log.error(
                "mux client {peer}: {reason}; closing its connection",
                peer=self.peer,
                reason=str(e),
                sc_event="mux.message_too_large",
            )
            self.abort()
            return
        # The data of one read goes to each vantage point in one write;
        # a control message (which may open or finish a channel) first
        # sends what came before it, so that order is kept.
        batches: Dict[IVantagePoint, List[Tuple[Channel, bytes]]] = {}
        for channel, payload in frames:
            if self._gone:
                return
            if channel == CONTROL_CHANNEL:
                self._send(batches)
                self._controlReceived(payload)
                continue
            end = self.channels.get(channel)
            if end is None or end.channel is None:
                log.debug(
                    "mux client {peer}: {size} bytes for unknown channel {channel} dropped",
                    peer=self.peer,
                    size=len(payload),
                    channel=channel,
                    sc_event="mux.unknown_channel",
                )
                continue
            batch = batches.get(end.vp)
            if batch is None:
                batches[end.vp] = [(end.channel, payload)]
            else:
                batch.append((end.channel, payload))
        self._send(batches)

    def _send(self, batches: Dict[IVantagePoint, List[Tuple[Channel, bytes]]]) -> None:
        for vp, batch in batches.items():
            vp.sendMany(batch)
        batches.clear()

    def _controlReceived(self, payload: bytes) -> None:
        try:
            message = parseControl(payload)
        except MuxError as e:
            channel = optionalChannel(e)
            self._refuseOpen(channel, str(e))
            self._countMalformed()
            return
        if isinstance(message, ChannelOpen):
            self._open(message)
        elif isinstance(message, ChannelClose):
            # docs/mux.rst: remoted ignores CHANNEL_CLOSE from clients; a client
            # ends a channel with "done".
            pass
        elif isinstance(message, UnknownControl):
            log.info(
                "mux client {peer}: unknown control type {type} ignored",
                peer=self.peer,
                type=message.type,
                sc_event="mux.unknown_control",
            )
            self._countMalformed()
        else:
            log.info(
                "mux client {peer}: {message!r} is not for the daemon; ignored",
                peer=self.peer,
                message=message,
                sc_event="mux.unexpected_control",
            )
            self._countMalformed()

    def _countMalformed(self) -> None:
        """One more malformed message: past L{MAX_MALFORMED}, the client goes."""
        self.malformed += 1
        if self.malformed > MAX_MALFORMED:
            log.error(
                "mux client {peer}: more than {limit} malformed messages; closing its connection",
                peer=self.peer,
                limit=MAX_MALFORMED,
                sc_event="mux.too_many_malformed",
            )
            self.abort()
            # Nothing more of this read is looked at.
            self._gone = True

    def _refuseOpen(self, channel: Optional[int], reason: str) -> None:
        """
        A CHANNEL_OPEN that cannot be served costs only its channel: any
        channel open on that number is finished, and the client gets
        CHANNEL_CLOSE.  Without a readable channel number it is ignored.
        """
        log.warn(
            "mux client {peer}: bad CHANNEL_OPEN ({reason}); closing channel {channel}",
            peer=self.peer,
            reason=reason,
            channel=channel,
            sc_event="mux.bad_open",
        )
        if channel is None or channel == CONTROL_CHANNEL:
            return
        existing = self.channels.get(channel)
        if existing is not None:
            existing.finishFromClient()
        self._backlog.write([encodeChannelClose(channel)])

    def _open(self, message: ChannelOpen) -> None:
        if message.channel_id == CONTROL_CHANNEL:
            self._refuseOpen(None, "channel 0 is the control channel")
            self._countMalformed()
            return
        if message.channel_id in self.channels:
            self._refuseOpen(message.channel_id, "channel %d is already open" % (message.channel_id,))
            self._countMalformed()
            return
        vp = self.factory.vantagePoint(message.vp_id)
        if vp is None:
            self._refuseOpen(message.channel_id, "no vantage point %d" % (message.vp_id,))
            return
        end = MuxChannel(self, vp, message.channel_id)
        try:
            end.open()
        except ChannelRefused as e:
            self._refuseOpen(message.channel_id, str(e))
            return
        assert end.channel is not None
        self.channels[message.channel_id] = end
        log.debug(
            "mux client {peer} opened channel {clientChannel} to {vp} (scamper channel {channel})",
            peer=self.peer,
            clientChannel=message.channel_id,
            vp=vp.name,
            channel=end.channel.number,
            identifier=vp.identifier,
            sc_event="mux.channel_opened",
        )

    # Output ------------------------------------------------------------

    def sendData(self, channel: int, payloads: List[bytes]) -> None:
        """Relay one read's payloads for C{channel}: one write, no copies."""
        if not self._gone:
            pack = HEADER.pack
            parts = []
            for payload in payloads:
                parts.append(pack(channel, len(payload)))
                parts.append(payload)
            self._backlog.write(parts)

    def channelClosed(self, end: MuxChannel) -> None:
        """scamper finished C{end}, or its vantage point departed."""
        if self.channels.get(end.clientChannel) is end:
            self.forget(end)
            if not self._gone:
                self._backlog.write([encodeChannelClose(end.clientChannel)])

    def forget(self, end: MuxChannel) -> None:
        if self.channels.get(end.clientChannel) is end:
            del self.channels[end.clientChannel]
        if end in self._pausedBy:
            self.resumeFor(end)

    def announce(self, vp, attributes: AttributeList) -> None:
        """
        Tell of C{vp} if this client does not know it with C{attributes}:
        VP_UPDATE for a new one; VP_DEPART then VP_UPDATE for a change.
        """
        if self._gone:
            return
        previous = self.known.get(vp.identifier)
        if previous == attributes:
            return
        messages = []
        if previous is not None:
            messages.append(encodeVpDepart(vp.identifier))
        messages.append(encodeVpUpdate(vp.identifier, attributes))
        self.known[vp.identifier] = attributes
        self._backlog.write(messages)

    def departed(self, vp) -> None:
        if self.known.pop(vp.identifier, None) is not None and not self._gone:
            self._backlog.write([encodeVpDepart(vp.identifier)])

    # Flow --------------------------------------------------------------

    def pauseFor(self, end: MuxChannel) -> None:
        if end not in self._pausedBy:
            self._pausedBy.add(end)
            if len(self._pausedBy) == 1 and not self._gone:
                self._out.pauseProducing()

    def resumeFor(self, end: MuxChannel) -> None:
        if end in self._pausedBy:
            self._pausedBy.discard(end)
            if not self._pausedBy and not self._gone:
                self._out.resumeProducing()

    def abort(self) -> None:
        if not self._gone:
            self._out.abortConnection()

    # BacklogOwner ------------------------------------------------------

    def backlogOverflowed(self, budget: str, limit: int, queued: int) -> None:
        self._closeBehind(
            "mux client {peer} is {queued} bytes behind, over the {budget} budget of {limit}; closing its connection",
            "mux.over_budget",
            queued=queued,
            budget=budget,
            limit=limit,
        )

    def backlogStalled(self, limit: float, queued: int) -> None:
        self._closeBehind(
            "mux client {peer} read nothing for {limit:.0f} s; closing its connection",
            "mux.stalled",
            queued=queued,
            limit=limit,
        )

    def _closeBehind(self, format: str, event: str, **fields: object) -> None:
        """A client too far behind: one log line, and it loses its connection."""
        log.warn(format, peer=self.peer, sc_event=event, **fields)
        self.abort()

    # Departure ---------------------------------------------------------

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        The client is gone: each channel it still had gets CHANNEL_FIN, so
        that scamper ends it; what scamper still sends is dropped.
        """
        self._gone = True
        self._backlog.drop()
        self.factory.clients.discard(self)
        channels = list(self.channels.values())
        for end in channels:
            end.finishFromClient()
        self._pausedBy.clear()
        log.info(
            "mux client {peer} disconnected; {count} open channels finished",
            peer=self.peer,
            count=len(channels),
            sc_event="mux.disconnected",
        )


def describePeer(transport: ITransport, number: int) -> str:
    """
    How the mux events name a client: by its address over TCP
    (C{192.0.2.7:40312}, C{[2001:db8::7]:40312}); on the mux socket, whose
    clients have no address of their own, by the socket's path and the
    client's C{number} (C{unix:/run/sc_remoted/mux #3}).
    """
    peer = transport.getPeer()
    if isinstance(peer, IPv4Address):
        return "%s:%d" % (peer.host, peer.port)
    if isinstance(peer, IPv6Address):
        return "[%s]:%d" % (peer.host, peer.port)
    host = transport.getHost()
    path = host.name if isinstance(host, UNIXAddress) else None
    return "unix:%s #%d" % (os.fsdecode(path) if path else "?", number)


# The factory ------------------------------------------------------------


@implementer(IVantagePointObserver)
class MuxFactory(Factory):
    """
    Makes a L{MuxProtocol} per mux client and tells them all of vantage
    points as they come, change and go.  One factory serves every mux
    listener (the UNIX socket and the TCP port) alike.

    @param controller: whose vantage points are served; the factory
        registers itself as its observer.
    @param metadata: the meta-file's data; after a reload that changed it,
        every client is told of the vantage points whose attributes
        changed.

    @ivar accepted: how many mux clients were accepted; it numbers them
        for the logs (L{describePeer}).
    """

    noisy = False

    def __init__(self, controller: IVantagePointRegistry, metadata: Optional[Metadata] = None) -> None:
        self.controller = controller
        self.budgets = controller.budgets
        self.metadata = metadata
        self.clients: Set[MuxProtocol] = set()
        self.accepted = 0
        controller.addObserver(self)
        if metadata is not None:
            metadata.addListener(self.metadataChanged)

    def buildProtocol(self, addr: object) -> Optional[Protocol]:
        self.accepted += 1
        protocol = MuxProtocol()
        protocol.factory = self
        protocol.number = self.accepted
        return protocol

    def attributes(self, vp: IVantagePoint) -> AttributeList:
        return vantagePointAttributes(vp, self.metadata)

    def connectedVantagePoints(self) -> List[IVantagePoint]:
        return [vp for vp in self.controller.vantagePoints() if vp.state is State.CONNECTED]

    def vantagePoint(self, identifier: int) -> Optional[IVantagePoint]:
        """The vantage point (connected or awaiting a resume) with that id."""
        return self.controller.vantagePoint(identifier)

    def _announce(self, vp) -> None:
        attributes = self.attributes(vp)
        for client in list(self.clients):
            client.announce(vp, attributes)

    # IVantagePointObserver ---------------------------------------------

    def vantagePointArrived(self, vp) -> None:
        self._announce(vp)

    def vantagePointResumed(self, vp) -> None:
        self._announce(vp)

    def vantagePointDisconnected(self, vp) -> None:
        """Kept: a zombie stays listed until it departs, as upstream."""

    def vantagePointDeparted(self, vp) -> None:
        for client in list(self.clients):
            client.departed(vp)

    def metadataChanged(self) -> None:
        for vp in self.connectedVantagePoints():
            self._announce(vp)


__all__ = [
    "MuxChannel",
    "MuxFactory",
    "MuxProtocol",
    "vantagePointAttributes",
]
