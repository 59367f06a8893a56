"""
The listening port of a vantage point's socket, and its connections:
Twisted's UNIX port and server transport, without the work a vantage
point's socket never needs.

Every local client is one accepted connection and every vantage point
one port, so what Twisted does for each shows in the cost of a channel
and of an arrival (docs/performance.rst):

 - Twisted's UNIX transport reads with C{recvmsg} and a 4 KiB ancillary
   buffer, so that protocols can be handed file descriptors.  A local
   client has nothing to hand the daemon (the C daemon reads with
   C{read}), so L{LocalServer} reads with C{recv}; a descriptor a client
   sends anyway is closed by the kernel along with the message it came in.
 - Twisted's port writes a line through the legacy log when it starts
   listening and one when it closes, which the daemon's observers drop
   again (L{sc_remoted.logs.isTwistedPortNoise}), and it closes on the
   reactor's next turn through a delayed call.  L{LocalPort} writes
   neither line and closes in the call that stops it.

Accepting, writing, half-closes, producers and errors are Twisted's.
"""

import os

from twisted.internet import defer, main, tcp, unix
from twisted.internet.error import CannotListenError
from twisted.python.failure import Failure


class LocalServer(unix.Server):
    """A local client's connection, read with C{recv}: no ancillary data."""

    def doRead(self):
        return tcp.Connection.doRead(self)


class LocalPort(unix.Port):
    """
    A vantage point's listening socket at a path in the file system,
    quiet, and closed at once.
    """

    transport = LocalServer

    def startListening(self) -> None:
        """
        Bind, give the file its mode, listen and accept, as Twisted's
        UNIX port does, without its "starting on" line (and without the
        PID lock file, which a vantage point's socket does not use).

        @raise CannotListenError: if the socket cannot be bound.
        """
        # As Twisted's ports do: the process's spare descriptor, which
        # Twisted's accept loop gives up to recover from EMFILE.
        tcp._reservedFD.reserve()
        sock = None
        bound = False
        try:
            sock = self.createInternetSocket()
            sock.bind(self._bindPath)
            bound = True
            os.chmod(self._bindPath, self.mode)
        except OSError as e:
            # Twisted leaves such a socket open for the garbage collector,
            # and a file it could not chmod in place.
            if sock is not None:
                sock.close()
            if bound:
                os.unlink(self._bindPath)
            raise CannotListenError(None, self._bindPath, e)
        self.factory.doStart()  # type: ignore[union-attr]
        sock.listen(self.backlog)
        self.connected = True
        self.socket = sock
        self.fileno = sock.fileno  # type: ignore[method-assign]
        self.numberAccepts = 100
        self.startReading()

    def loseConnection(self, connDone: Failure = Failure(main.CONNECTION_DONE)) -> defer.Deferred:
        """
        Stop accepting, close the socket and remove its file, now; the
        L{Deferred} has fired (with the error, if the file could not be
        removed).
        """
        self.disconnecting = True
        self.stopReading()
        if not self.connected:
            return defer.succeed(None)
        return defer.maybeDeferred(self.connectionLost, connDone)

    stopListening = loseConnection

    def _logConnectionLostMsg(self) -> None:
        """Twisted's "(UNIX Port ... Closed)" line: not written."""
