"""
The boundaries other code plugs into: what a channel's far end must do,
and how to follow vantage points as they come and go.
"""

from zope.interface import Attribute, Interface


class IChannelEnd(Interface):
    """
    Whatever sits at the local end of a channel to a vantage point: a
    client of its UNIX socket, a mux channel, a test double.  The
    vantage point calls these; the end calls
    C{VantagePoint.openChannel}, C{clientData} and C{sendChannelFin}.
    """

    def deliver(payload):
        """Bytes scamper sent on this channel, in order."""

    def scamperFinished():
        """
        scamper finished the channel, or the vantage point is gone:
        nothing more will be delivered.
        """


class IPausableEnd(IChannelEnd):
    """
    A channel end whose input can be paused, so that a vantage point can
    stop reading from clients while scamper cannot take more, and that
    can report (to C{VantagePoint.flow}) when it cannot take more itself.
    """

    def pauseReading():
        """Stop reading from the client for now."""

    def resumeReading():
        """Read from the client again."""

    def abort():
        """Disconnect the client at once: it stopped reading for good."""


class IVantagePointObserver(Interface):
    """
    Told of every change in the set of vantage points.  Register with
    C{Controller.addObserver}; each method gets the L{VantagePoint}.
    """

    def vantagePointArrived(vp):
        """A scamper registered (MASTER_NEW) and its socket exists."""

    def vantagePointDisconnected(vp):
        """Its connection ended; it is kept as a zombie awaiting a resume."""

    def vantagePointResumed(vp):
        """It came back (MASTER_RES accepted), possibly under a new name."""

    def vantagePointDeparted(vp):
        """It is gone for good: freed, expired or replaced."""


class IVantagePoint(Interface):
    """The read-only view of a vantage point that observers may rely on."""

    identifier = Attribute("Unique in this process, counting from 1.")
    monitorname = Attribute("scamper's -M name, or None.")
    name = Attribute("The socket file name, [monitorname-]peer.")
    peer = Attribute("The peer address string of the current or last connection.")
    connection = Attribute("The scamper connection, or None while a zombie.")
