"""
The boundaries between the daemon's parts, and what other code plugs
into: the far end of a channel, the scamper connection as the registry
drives it, the registry as the connections and the mux see it, and how to
follow vantage points as they come and go.

Each module depends on these rather than on each other's classes, so
that the dependencies point one way (docs/architecture.rst).
"""

from typing import Any, Iterable, Protocol, cast

from zope.interface import Attribute, Interface


class StreamTransport(Protocol):
    """
    What this daemon uses of a connected Twisted stream transport (TCP,
    TLS, UNIX): a static type only, since C{Protocol.transport} is typed
    as a bare C{ITransport} that may be L{None}.  C{bufferSize} is
    absent on a TLS transport.
    """

    bufferSize: int

    def write(self, data: bytes) -> None: ...

    def writeSequence(self, data: Iterable[bytes]) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def registerProducer(self, producer: Any, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def getPeer(self) -> Any: ...


def connectedTransport(protocol: Any) -> StreamTransport:
    """The transport of a connected C{protocol}."""
    transport = protocol.transport
    assert transport is not None, "%r is not connected" % (protocol,)
    return cast(StreamTransport, transport)


class IChannelEnd(Interface):
    """
    Whatever sits at the local end of a channel to a vantage point: a
    client of its UNIX socket, a mux channel, a test double.  It gets a
    channel handle from C{IVantagePoint.openChannel} and sends with
    C{IVantagePoint.send} and C{IVantagePoint.finish}.
    """

    client = Attribute(
        "Who is at this end, for the log: 'local client', or the mux client and its own channel number."
    )

    def deliver(payloads):
        """
        Bytes scamper sent on this channel: a list of payloads, in order,
        all that one read from scamper held for it.
        """

    def scamperFinished():
        """
        scamper finished the channel, or the vantage point is gone:
        nothing more will be delivered.
        """


class IPausableEnd(IChannelEnd):
    """
    A channel end whose input can be paused, so that a vantage point can
    stop reading from clients while scamper cannot take more.
    """

    def pauseReading():
        """Stop reading from the client for now."""

    def resumeReading():
        """Read from the client again."""


class IScamperLink(Interface):
    """A scamper connection, as the registry drives it."""

    peer = Attribute("The C daemon's string for the peer address, also the MASTER_ID.")
    address = Attribute("The peer's IPv4Address or IPv6Address.")

    def attach(vp):
        """Serve the vantage point C{vp} from now on."""

    def write(data):
        """Send bytes to scamper."""

    def writeSequence(parts):
        """Send a list of byte strings to scamper, in order, in one write."""

    def abandon():
        """Stop serving and drop the connection now; its loss reports nothing."""

    def refuse(frame):
        """Write a last frame (MASTER_REJ) and close once it is out."""


class IScamperSessions(Interface):
    """The registry, as a scamper connection sees it."""

    debug = Attribute("Whether every frame exchanged with scamper is logged.")

    def connectionOpened(link, host):
        """Count a new connection from C{host}; C{False} if over a limit."""

    def connectionClosed(host):
        """Uncount a connection that C{connectionOpened} accepted."""

    def register(link, message):
        """A MASTER_NEW: attach C{link} to a new vantage point, or abandon it."""

    def resume(link, message):
        """A MASTER_RES: attach C{link} to the vantage point it resumes, or refuse it."""

    def disconnected(vp, reason):
        """The connection serving C{vp} ended."""

    def protocolError(vp, reason):
        """The connection serving C{vp} broke the protocol and was dropped."""


class IVantagePoint(Interface):
    """
    The view of a vantage point that observers, the mux and the status
    page rely on.
    """

    identifier = Attribute("Unique in this process, counting from 1 (the mux's VP id).")
    magic = Attribute("The bytes scamper chose to identify itself across reconnects.")
    monitorname = Attribute("scamper's -M name, or None.")
    name = Attribute("The socket file name, [monitorname-]peer.")
    peer = Attribute("The peer string of the current or last connection.")
    address = Attribute("The IPv4Address or IPv6Address of that connection.")
    connectedAt = Attribute("When it registered, in the reactor's seconds.")
    state = Attribute("Its sc_remoted.lifecycle.State.")
    session = Attribute("Its sc_remoted.engine.Session: sequence numbers, channels, counters.")

    def openChannel(end):
        """
        A new channel for the IChannelEnd C{end}, announced to scamper.

        @raise sc_remoted.vp.ChannelRefused: past the max-channels limit.
        """

    def send(channel, data):
        """Relay a local client's bytes on C{channel} (dropped once finished)."""

    def sendMany(reads):
        """C{send} each C{(channel, data)} of C{reads}, in order, in one write."""

    def finish(channel):
        """The client of C{channel} will send nothing more (CHANNEL_FIN)."""


class IVantagePointRegistry(Interface):
    """Every vantage point of the process: what the mux and status page query."""

    reactor = Attribute("Its IReactorTime: the clock of every vantage point's connectedAt.")
    budgets = Attribute("Its sc_remoted.backlog.Budgets: what every slow reader's backlog draws on.")

    def vantagePoints():
        """Every IVantagePoint, connected or zombie, oldest first."""

    def vantagePoint(identifier):
        """The IVantagePoint with that identifier, or None."""

    def addObserver(observer):
        """Tell the IVantagePointObserver C{observer} of every change."""

    def removeObserver(observer):
        """Stop telling C{observer}."""


class IVantagePointObserver(Interface):
    """
    Told of every change in the set of vantage points.  Register with
    C{IVantagePointRegistry.addObserver}; each method gets the vantage point.
    """

    def vantagePointArrived(vp):
        """A scamper registered (MASTER_NEW) and its socket exists."""

    def vantagePointDisconnected(vp):
        """Its connection ended; it is kept as a zombie awaiting a resume."""

    def vantagePointResumed(vp):
        """It came back (MASTER_RES accepted), possibly under a new name."""

    def vantagePointDeparted(vp):
        """It is gone for good: freed, expired or replaced."""
