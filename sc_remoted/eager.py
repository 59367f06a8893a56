"""
Writes that reach the kernel in the call that makes them.

Twisted queues every C{write} and sends it on the reactor's next turn:
it registers the descriptor for writing (one C{epoll_ctl}), waits for
the poll to say it is writable, sends, and unregisters it (another
C{epoll_ctl}).  For a relay whose every read makes one or two small
writes (a command round trip makes three), that turn is most of the
cost of a message.  When nothing is queued on the transport, L{Writer}
sends at once and hands Twisted only what the kernel did not take, so
order, backpressure (the transport's producer still sees every byte it
holds) and error handling (a failed send leaves the bytes to Twisted,
whose next attempt reports the loss as usual) stay Twisted's.

The same goes for closing: Twisted's C{loseConnection} always waits a
turn for the descriptor to be writable, even with nothing left to send;
L{Writer.loseConnection} closes at once when nothing is queued, as
Twisted's own C{loseConnection} does when it knows nothing more can be
sent.

The send itself is one C{socket.send}: Twisted's C{writeSomeData}
wraps the same call in three more Python calls (the UNIX transport's
descriptor-passing check, a slice limited to 128 KiB, C{untilConcludes})
that cost more than the system call on a small message; a send that
fails for any reason leaves its bytes to Twisted, as above.

Only plain TCP and UNIX socket transports (L{tcp.Connection}s) qualify;
any other transport (TLS, test doubles) is written to as usual.
"""

from typing import List

from twisted.internet import tcp
from twisted.internet.protocol import connectionDone


class Writer:
    """
    C{write} and C{writeSequence} of one transport, eager where it can
    be (see the module docstring).
    """

    __slots__ = ("_transport", "_descriptor")

    def __init__(self, transport: object) -> None:
        self._transport = transport
        self._descriptor = transport if isinstance(transport, tcp.Connection) else None

    @property
    def eager(self) -> bool:
        """Whether writes can reach the kernel in the call (a socket transport)."""
        return self._descriptor is not None

    def write(self, data: bytes) -> None:
        descriptor = self._descriptor
        if descriptor is not None and _idle(descriptor):
            data = _sendNow(descriptor, data)
            if not data:
                return
        self._transport.write(data)  # type: ignore[attr-defined]

    def writeSequence(self, parts: List[bytes]) -> None:
        descriptor = self._descriptor
        if descriptor is not None and _idle(descriptor):
            rest = _sendNow(descriptor, parts[0] if len(parts) == 1 else b"".join(parts))
            if rest:
                self._transport.write(rest)  # type: ignore[attr-defined]
        else:
            # Queued as parts: Twisted joins them once, when it sends.
            self._transport.writeSequence(parts)  # type: ignore[attr-defined]

    def loseConnection(self) -> None:
        """
        Close the transport once everything written is sent: now, when
        nothing is queued and no producer is registered (the protocol's
        C{connectionLost} runs before this returns), else as Twisted does.
        """
        descriptor = self._descriptor
        if descriptor is not None and _idle(descriptor) and descriptor.producer is None:
            descriptor.stopReading()
            descriptor.stopWriting()
            # One Failure for every close, as Twisted's reactors share theirs
            # (a new one is about a microsecond: its class's MRO is walked).
            descriptor.connectionLost(connectionDone)
            return
        self._transport.loseConnection()  # type: ignore[attr-defined]


def _sendNow(descriptor: tcp.Connection, data: bytes) -> bytes:
    """
    Hand C{data} to the kernel as far as it takes it in one C{send};
    return the rest (all of it if the send failed: Twisted's own attempt
    then reports the error).  After a partial send the kernel's buffer is
    full, so a second one would only find C{EAGAIN}.
    """
    try:
        sent = descriptor.socket.send(data)
    except OSError:
        return data
    return data[sent:] if sent < len(data) else b""


def _idle(descriptor: tcp.Connection) -> bool:
    """Whether C{descriptor} is connected, open for writing, and holds nothing unsent."""
    return bool(
        descriptor.connected
        and not descriptor.disconnecting
        and not descriptor._writeDisconnected
        and not descriptor.dataBuffer
        and not descriptor._tempDataLen
        and not getattr(descriptor, "_sendmsgQueue", None)
    )
