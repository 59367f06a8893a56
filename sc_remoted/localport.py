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
 - Twisted's port accepts in a loop sized by the last burst, inside a
   log-buffering context, through a generator; with one client at a
   time, every other accept ends in C{EAGAIN}.  L{LocalPort} accepts one
   client per readiness event, as the C daemon does, and leaves any
   accept error to Twisted's loop.
 - Twisted calls C{shutdown} before closing a socket, in case another
   process shares it; the daemon's descriptors are close-on-exec and
   never shared, so L{LocalPort} and L{LocalServer} only close.
 - Twisted's port removes the file at its path when it closes, and
   closes the socket only if that worked: a file someone else removed
   (a cleaner of C{/tmp}, an operator) left the socket open for good, and
   a file put in its place was removed.  L{LocalPort} removes the file
   only while it is the socket's own (the same inode), and closes the
   socket whatever became of the file.
 - Twisted makes a port's socket with C{socket}, then C{ioctl} to make
   it non-blocking and C{setsockopt(SO_REUSEADDR)}, which a UNIX socket
   ignores; L{LocalPort} makes it non-blocking in the C{socket} call.
   With the C{bind} that finds the path taken (C{EADDRINUSE}, also for a
   file or a symlink there), an arrival costs the system calls the C
   daemon's does, and the umask's two.
 - Twisted reads a new connection when the next poll says it is
   readable.  A client that writes as it connects (sc_attach, the scamper
   module, a script's command) has its first bytes in the socket by the
   time it is accepted, so L{LocalPort} reads them in the same call: the
   channel's CHANNEL_NEW and its first data then reach scamper in one
   write (L{sc_remoted.coalesce}), and the poll that would have reported
   them is saved.  A client that sent nothing costs one C{recv} that
   finds nothing.

Writing, half-closes, producers and the handling of errors are Twisted's.
"""

import os
import socket

from twisted.internet import address, defer, main, tcp, unix
from twisted.internet.error import CannotListenError
from twisted.python.failure import Failure

from sc_remoted.eventlog import EventLogger

log = EventLogger()

# The address of every client that did not bind its socket, which is
# every client a VP socket has had: built once, not per accept.
_UNNAMED = address.UNIXAddress("")


def _identity(status: os.stat_result) -> tuple:
    """What tells one file from another: its device and inode."""
    return (status.st_dev, status.st_ino)


class LocalServer(unix.Server):
    """
    A local client's connection, read with C{recv}: no ancillary data.

    @ivar reading: whether it is being read, which its protocol can pause
        (the flow policy does while scamper's window is full).
    """

    _shouldShutdown = False
    reading = False

    def doRead(self):
        return tcp.Connection.doRead(self)

    def startReading(self) -> None:
        self.reading = True
        unix.Server.startReading(self)

    def stopReading(self) -> None:
        self.reading = False
        unix.Server.stopReading(self)


class LocalPort(unix.Port):
    """
    A vantage point's listening socket at a path in the file system,
    quiet, and closed at once.
    """

    transport = LocalServer
    _shouldShutdown = False

    def createInternetSocket(self) -> socket.socket:
        """A non-blocking UNIX stream socket, close-on-exec as every socket Python makes."""
        return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)

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
            self._file = _identity(os.lstat(self._bindPath))
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
        # Twisted's accept loop, which handles an accept error, sizes itself from this.
        self.numberAccepts = 100
        self.startReading()

    def doRead(self) -> None:
        """
        Accept one client.  An accept that fails other than with
        C{EAGAIN} is tried again by Twisted's accept loop, which knows
        what each error means (C{EMFILE} uses the process's spare
        descriptor to refuse the waiting clients); an exception from
        the factory or the protocol is logged and the port goes on.
        """
        try:
            skt, name = self.socket.accept()
        except BlockingIOError:
            return
        except OSError:
            unix.Port.doRead(self)
            return
        try:
            protocol = self.factory.buildProtocol(  # type: ignore[union-attr]
                _UNNAMED if not name else address.UNIXAddress(name)
            )
        except BaseException:
            skt.close()
            log.failure("making the protocol of a client of {path} failed", path=os.fsdecode(self._bindPath))
            return
        if protocol is None:
            skt.close()
            return
        session = self.sessionno
        self.sessionno = session + 1
        transport = self.transport(skt, protocol, name, self, session, self.reactor)
        try:
            protocol.makeConnection(transport)
        except BaseException:
            log.failure("connecting a client of {path} failed", path=os.fsdecode(self._bindPath))
            transport.abortConnection()
            return
        self._readEarly(transport)

    def _readEarly(self, transport: LocalServer) -> None:
        """
        Read what a client just accepted has sent already (the module
        docstring says why), unless its protocol paused reading or closed
        it.  The end of its stream, or an error, is left where it is, for
        the next poll to report as Twisted does; an exception from the
        protocol is logged and costs the client its connection, not the
        port.
        """
        if not (transport.reading and transport.connected) or transport.disconnecting:
            return
        try:
            transport.doRead()
        except BaseException:
            log.failure("reading a client of {path} failed", path=os.fsdecode(self._bindPath))
            transport.abortConnection()

    def close(self, reason: Failure = Failure(main.CONNECTION_DONE)) -> None:
        """
        Stop accepting, close the socket and remove its file, in the
        call: what a vantage point's departure needs, without a
        L{Deferred}.  Closing again does nothing.

        @raise OSError: if the file could not be removed (the socket is
            closed all the same).
        """
        self.disconnecting = True
        self.stopReading()
        if self.connected:
            self.connectionLost(reason)

    def loseConnection(self, connDone: Failure = Failure(main.CONNECTION_DONE)) -> defer.Deferred:
        """
        L{close}, answered as Twisted's ports answer: a L{Deferred}, which
        has fired (with the error, if the file could not be removed).
        """
        return defer.maybeDeferred(self.close, connDone)

    stopListening = loseConnection

    def connectionLost(self, reason: Failure) -> None:
        """
        Remove the socket's file if the path still names it, then close
        the socket, as Twisted's port does, even if the file cannot be
        removed (that error is raised after).
        """
        try:
            self._removeFile()
        finally:
            tcp.Port.connectionLost(self, reason)

    def _removeFile(self) -> None:
        try:
            found = _identity(os.lstat(self._bindPath))
        except FileNotFoundError:
            log.warn(
                "socket {path} was removed by someone else", path=os.fsdecode(self._bindPath), sc_event="socket.gone"
            )
            return
        if found != self._file:
            log.warn(
                "socket {path} was replaced by another file; left there",
                path=os.fsdecode(self._bindPath),
                sc_event="socket.gone",
            )
            return
        os.unlink(self._bindPath)

    def _logConnectionLostMsg(self) -> None:
        """Twisted's "(UNIX Port ... Closed)" line: not written."""
