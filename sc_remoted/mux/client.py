"""
A Twisted client of the mux (the UNIX socket of C{--mux} or the TCP/TLS
port of C{--mux-port}), for monitoring and measurement code that already
runs a reactor::

    from twisted.internet.endpoints import UNIXClientEndpoint
    from sc_remoted.mux.client import connectMux

    mux = yield connectMux(UNIXClientEndpoint(reactor, "/run/sc_remoted/mux"))
    for vp in mux.listVantagePoints():
        print(vp.identifier, vp.name, vp.ipv4, vp.cc, vp.tags)
    transport = mux.openChannel(vp, myProtocol)   # any IProtocol
    transport.write(b"ping -c 3 192.0.2.1\\n")
    ...
    transport.loseConnection()                    # sends "done"
    yield mux.close()

Each channel is a stream of scamper's text control protocol, already
attached (no C{attach} command): C{OK id-N}, C{DATA <len>} blocks of
uuencoded warts, and so on.  The channel's protocol gets
C{connectionLost} when the daemon sends CHANNEL_CLOSE (scamper finished the
channel, or the vantage point departed), or when the mux connection ends.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL.crypto import X509
from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IAddress, IOpenSSLClientConnectionCreator, ITransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates
from twisted.python.failure import Failure
from zope.interface import implementer

from ..eventlog import EventLogger
from .codec import (
    CONTROL_CHANNEL,
    Attribute,
    ChannelClose,
    Go,
    MuxDecoder,
    MuxError,
    VpDepart,
    VpUpdate,
    encodeChannelOpen,
    encodeData,
    parseControl,
)

log = EventLogger()

# Client data is cut into frames no larger than scamper's own frames.
MAX_WRITE = 0xFFFF


@dataclass(frozen=True)
class VantagePointInfo:
    """
    A vantage point as a VP_UPDATE describes it.

    @ivar identifier: the daemon's id, for L{MuxClientProtocol.openChannel}.
    @ivar attributes: the (attribute number, value) pairs as received.
    """

    identifier: int
    attributes: Tuple[Tuple[int, str], ...]

    def get(self, attribute: int) -> Optional[str]:
        """The (last) value of a single-valued attribute, or L{None}."""
        value = None
        for attr, text in self.attributes:
            if attr == attribute:
                value = text
        return value

    name = property(lambda self: self.get(Attribute.NAME), doc="scamper's -M name.")
    arrival = property(lambda self: self.get(Attribute.ARRIVAL), doc="sec.usec when it registered.")
    ipv4 = property(lambda self: self.get(Attribute.IPV4))
    ipv6 = property(lambda self: self.get(Attribute.IPV6))
    asn4 = property(lambda self: self.get(Attribute.ASN4))
    asn6 = property(lambda self: self.get(Attribute.ASN6))
    cc = property(lambda self: self.get(Attribute.CC))
    st = property(lambda self: self.get(Attribute.ST))
    place = property(lambda self: self.get(Attribute.PLACE))
    latlong = property(lambda self: self.get(Attribute.LATLONG))
    shortname = property(lambda self: self.get(Attribute.SHORTNAME))
    iata = property(lambda self: self.get(Attribute.IATA))

    @property
    def tags(self) -> Tuple[str, ...]:
        return tuple(text for attr, text in self.attributes if attr == Attribute.TAG)


@implementer(IAddress)
@dataclass(frozen=True)
class MuxChannelAddress:
    """The far end of a mux channel: a vantage point."""

    vp: VantagePointInfo
    channel: int


@implementer(ITransport)
class MuxChannelTransport:
    """
    The transport of one channel's protocol.  C{write} sends data frames;
    C{loseConnection} sends C{done} and waits for the daemon's
    CHANNEL_CLOSE; C{abortConnection} also forgets the channel at once.
    """

    def __init__(self, mux: "MuxClientProtocol", channel: int, vp: VantagePointInfo, protocol) -> None:
        self.mux = mux
        self.channel = channel
        self.vp = vp
        self.protocol = protocol
        self.disconnecting = False
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if len(data) <= MAX_WRITE:
            self.mux._connectedTransport().write(encodeData(self.channel, data))
            return
        view = memoryview(data)
        self.mux._connectedTransport().writeSequence(
            [encodeData(self.channel, bytes(view[i : i + MAX_WRITE])) for i in range(0, len(data), MAX_WRITE)]
        )

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Tell scamper this client is done; the channel closes when scamper has finished."""
        if not self.disconnecting and not self.closed:
            self.disconnecting = True
            self.write(b"done\n")

    def abortConnection(self) -> None:
        self.loseConnection()
        self.mux._channelEnded(self.channel, Failure(ConnectionLost("channel aborted")))

    def getPeer(self) -> MuxChannelAddress:
        return MuxChannelAddress(self.vp, self.channel)

    def getHost(self):
        return self.mux._connectedTransport().getHost()


class MuxClientProtocol(Protocol):
    """
    One connection to the mux.

    @ivar ready: fires with this protocol once GO has arrived (the list of
        vantage points is complete), or fails if the connection ends first.
    @ivar vantagePoints: every vantage point now known, by id.
    @ivar lostReason: why the connection ended, once it has.
    """

    def __init__(self) -> None:
        self.vantagePoints: Dict[int, VantagePointInfo] = {}
        self.ready: defer.Deferred = defer.Deferred()
        self.lostReason: Optional[Failure] = None
        self._lostWaiters: List[defer.Deferred] = []
        self.gotGo = False
        self._decoder = MuxDecoder()
        self._channels: Dict[int, MuxChannelTransport] = {}
        self._nextChannel = 1
        self._waiters: List[Tuple[Callable[[VantagePointInfo], bool], defer.Deferred]] = []

    # Hooks for subclasses --------------------------------------------

    def vantagePointUpdated(self, vp: VantagePointInfo) -> None:
        """A VP_UPDATE arrived (new, or changed after a VP_DEPART)."""

    def vantagePointDeparted(self, vp: VantagePointInfo) -> None:
        """A VP_DEPART arrived."""

    # API ---------------------------------------------------------------

    def listVantagePoints(self) -> List[VantagePointInfo]:
        """The vantage points known now, by id."""
        return [self.vantagePoints[key] for key in sorted(self.vantagePoints)]

    def find(self, name: str) -> Optional[VantagePointInfo]:
        """The first vantage point whose name or short name is C{name}."""
        for vp in self.listVantagePoints():
            if name in (vp.name, vp.shortname):
                return vp
        return None

    def waitForVantagePoint(
        self, match: Union[str, Callable[[VantagePointInfo], bool]]
    ) -> defer.Deferred:
        """
        Fire with the first vantage point, known now or announced later,
        whose name or short name is C{match} (or for which C{match(vp)} is
        true).
        """
        if isinstance(match, str):
            name = match
            predicate = lambda vp: name in (vp.name, vp.shortname)  # noqa: E731
        else:
            predicate = match
        for vp in self.listVantagePoints():
            if predicate(vp):
                return defer.succeed(vp)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((predicate, d))
        return d

    def openChannel(self, vp: Union[int, VantagePointInfo], protocol) -> MuxChannelTransport:
        """
        Open a channel to C{vp} and connect C{protocol} (an C{IProtocol})
        to it at once; what it writes is queued in order behind the
        CHANNEL_OPEN.
        """
        info = vp if isinstance(vp, VantagePointInfo) else self.vantagePoints.get(vp, VantagePointInfo(vp, ()))
        channel = self._allocate()
        transport = MuxChannelTransport(self, channel, info, protocol)
        self._channels[channel] = transport
        self._connectedTransport().write(encodeChannelOpen(info.identifier, channel))
        protocol.makeConnection(transport)
        return transport

    def whenLost(self) -> defer.Deferred:
        """Fire (with L{None}; see C{lostReason}) when the connection is gone."""
        if self.lostReason is not None:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._lostWaiters.append(d)
        return d

    def close(self) -> defer.Deferred:
        """Close the mux connection; fires when it is gone."""
        d = self.whenLost()
        self._connectedTransport().loseConnection()
        return d

    def _connectedTransport(self) -> ITransport:
        """The mux connection's transport, which is set once it has connected."""
        transport = self.transport
        assert transport is not None, "the mux connection has not been made"
        return transport

    def _allocate(self) -> int:
        channel = self._nextChannel
        while channel == CONTROL_CHANNEL or channel in self._channels:
            channel = (channel + 1) & 0xFFFFFFFF
        self._nextChannel = (channel + 1) & 0xFFFFFFFF
        return channel

    # Protocol ----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        for channel, payload in self._decoder.feed(data):
            if channel != CONTROL_CHANNEL:
                transport = self._channels.get(channel)
                if transport is not None and not transport.closed:
                    transport.protocol.dataReceived(payload)
                continue
            try:
                message = parseControl(payload)
            except MuxError as e:
                log.error("mux: malformed control message: {reason}; closing", reason=str(e))
                self._connectedTransport().loseConnection()
                return
            self._control(message)

    def _control(self, message) -> None:
        if isinstance(message, VpUpdate):
            info = VantagePointInfo(message.vp_id, message.attributes)
            self.vantagePoints[message.vp_id] = info
            self.vantagePointUpdated(info)
            for waiter in list(self._waiters):
                predicate, d = waiter
                if predicate(info):
                    self._waiters.remove(waiter)
                    d.callback(info)
        elif isinstance(message, VpDepart):
            gone = self.vantagePoints.pop(message.vp_id, None)
            if gone is not None:
                self.vantagePointDeparted(gone)
        elif isinstance(message, Go):
            if not self.gotGo:
                self.gotGo = True
                self.ready.callback(self)
        elif isinstance(message, ChannelClose):
            self._channelEnded(message.channel_id, Failure(ConnectionDone("scamper finished the channel")))

    def _channelEnded(self, channel: int, reason: Failure) -> None:
        transport = self._channels.pop(channel, None)
        if transport is None or transport.closed:
            return
        transport.closed = True
        transport.protocol.connectionLost(reason)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        for channel in list(self._channels):
            self._channelEnded(channel, Failure(ConnectionLost("mux connection lost")))
        waiters, self._waiters = self._waiters, []
        for _, d in waiters:
            d.errback(Failure(ConnectionLost("mux connection lost")))
        if not self.gotGo:
            self.gotGo = True
            self.ready.errback(reason)
        self.lostReason = reason
        lostWaiters, self._lostWaiters = self._lostWaiters, []
        for d in lostWaiters:
            d.callback(None)


class MuxClientFactory(Factory):
    protocol = MuxClientProtocol
    noisy = False


def connectMux(endpoint, factory: Optional[Factory] = None) -> defer.Deferred:
    """
    Connect to the mux at C{endpoint} (an C{IStreamClientEndpoint}, e.g.
    C{UNIXClientEndpoint(reactor, path)} or a C{tls:} description) and
    fire with the L{MuxClientProtocol} once the list of vantage points is
    complete (GO).
    """
    d = endpoint.connect(factory if factory is not None else MuxClientFactory())
    d.addCallback(lambda protocol: protocol.ready)
    return d


def clientTLSOptions(
    hostname: str, caPath: str, certificatePath: str, keyPath: str, passphrase: Optional[bytes] = None
) -> IOpenSSLClientConnectionCreator:
    """
    TLS for a client of C{--mux-port} with C{--mux-tls-ca}, for
    C{wrapClientTLS}: the daemon's certificate must be signed by a CA of
    C{caPath} and name C{hostname}; the client presents the certificate
    chain (its own certificate first) and key of the PEM files.

    The client's certificate and key go to pyOpenSSL as C{cryptography}
    objects, which is what it wants: Twisted's C{PrivateCertificate}
    hands it pyOpenSSL's own, which pyOpenSSL deprecates.
    """
    with open(caPath, "rb") as f:
        authorities = [Certificate(X509.from_cryptography(c)) for c in x509.load_pem_x509_certificates(f.read())]
    with open(certificatePath, "rb") as f:
        chain = x509.load_pem_x509_certificates(f.read())
    with open(keyPath, "rb") as f:
        key = load_pem_private_key(f.read(), passphrase)
    return optionsForClientTLS(
        hostname,
        trustRoot=trustRootFromCertificates(authorities),
        extraCertificateOptions={"privateKey": key, "certificate": chain[0], "extraCertChain": chain[1:]},
    )
