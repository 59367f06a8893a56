"""
The C{twistd sc_remoted} command line: L{Options} and L{makeService}.
"""

import os

from twisted.application.service import IService
from twisted.internet import reactor as globalReactor
from twisted.python import usage

from .controller import DEFAULT_ZOMBIE_TIME, MAX_ZOMBIE_TIME, Controller
from .limits import Limits
from .listen import PortSpecError, parsePortSpec
from .sockets import SocketFileError, checkPathLength, checkSocketsDirectory
from .service import SighupService, makeRemotedService
from .status import StatusEndpointError, makeStatusService, parseStatusEndpoint
from .tls import ClientNameCheck, TLSConfigError, loadServerTLS
from .mux.listen import MuxPortError, makeMuxServices, muxTLS, parseMuxPort
from .mux.metadata import Metadata, MetadataError


class Options(usage.Options):
    """Options of C{twistd sc_remoted}; each names its C sc_remoted flag."""

    synopsis = "--port [IP:]PORT (--sockets DIR | --mux PATH | --mux-port ENDPOINT) [options]"

    optParameters = [
        ["port", "P", None, "Where scamper connects: PORT, IPv4:PORT, [IPv6]:PORT or a Twisted endpoint description (C: -P)."],
        ["sockets", "U", None, "Directory for each scamper's UNIX socket (C: -U)."],
        ["zombie-time", "Z", DEFAULT_ZOMBIE_TIME, "Seconds a disconnected scamper is kept for a resume; 0 disables (C: -Z).", int],
        ["max-connections", None, Limits.maxConnections, "Scamper connections open at once.", int],
        ["max-per-address", None, Limits.maxPerAddress, "Scamper connections from one IP address at once.", int],
        ["max-channels", None, Limits.maxChannels, "Channels (local clients) open at once on one scamper.", int],
        ["max-zombies", None, Limits.maxZombies, "Disconnected scamper sessions kept; past it the oldest is freed.", int],
        ["tls-cert", "c", None, "PEM certificate chain; with --tls-key, every scamper connection is TLS (C: -c)."],
        ["tls-key", "p", None, "PEM private key of --tls-cert; asked for its passphrase if encrypted (C: -p)."],
        ["tls-ca", "C", None, "PEM CA certificates: scamper must present a client certificate they signed (C: -C)."],
        ["tls-passphrase-file", None, None, "Read the key's passphrase from the first line of this file instead of asking."],
        ["mux", "M", None, "The mux socket: every scamper through one UNIX socket, with metadata, for ScamperCtrl(mux=...) and libscamperctrl (C: -M)."],
        ["mux-port", None, None, "Serve the mux protocol over TCP too: PORT (on 127.0.0.1) or an endpoint description."],
        ["mux-tls-ca", None, None, "PEM CA certificates: --mux-port is TLS (with --tls-cert/--tls-key) and clients must present a certificate they signed."],
        ["metadata", "m", None, "Meta-file of vantage point attributes sent to mux clients; reloaded on SIGHUP (C: -m)."],
        ["status-port", None, None, "Serve /status (JSON) and /metrics (Prometheus) over HTTP here: PORT (on 127.0.0.1) or an endpoint description; off by default."],
    ]

    optFlags = [
        ["ipv4-only", "4", "With a bare PORT, listen on IPv4 only (C: -4)."],
        ["ipv6-only", "6", "With a bare PORT, listen on IPv6 only (C: -6)."],
        ["allow-group", None, "Let the sockets' group use them (C: -O allowgroup)."],
        ["allow-other", None, "Let everyone use the sockets (C: -O allowother)."],
        ["debug", None, "Log every message exchanged (C: -O debug)."],
        ["insecure-sockets-dir", None, "Accept a sockets directory owned by another user or writable by group or others."],
        ["skip-name-verification", None, "With --tls-ca, do not match the monitorname to the client certificate (C: -O skipnameverification)."],
        ["status-allow-remote", None, "Let --status-port listen on an address other than loopback."],
        ["mux-port-insecure", None, "Let --mux-port take plain TCP on an address other than loopback, without TLS client certificates."],
    ]

    compData = usage.Completions(
        optActions={
            "sockets": usage.CompleteDirs(descr="sockets directory"),
            "tls-cert": usage.CompleteFiles(descr="certificate chain"),
            "tls-key": usage.CompleteFiles(descr="private key"),
            "tls-ca": usage.CompleteFiles(descr="CA certificates"),
            "tls-passphrase-file": usage.CompleteFiles(descr="passphrase file"),
            "mux": usage.CompleteFiles(descr="mux socket"),
            "mux-tls-ca": usage.CompleteFiles(descr="CA certificates of mux clients"),
            "metadata": usage.CompleteFiles(descr="meta-file"),
        }
    )

    def postOptions(self) -> None:
        if self["port"] is None:
            raise usage.UsageError("--port is required")
        if self["sockets"] is None and self["mux"] is None and self["mux-port"] is None:
            raise usage.UsageError("--sockets is required, unless --mux or --mux-port is given")
        if not 0 <= self["zombie-time"] <= MAX_ZOMBIE_TIME:
            raise usage.UsageError("--zombie-time must be from 0 to %d seconds" % (MAX_ZOMBIE_TIME,))
        for name in ("max-connections", "max-per-address", "max-channels", "max-zombies"):
            if self[name] < 1:
                raise usage.UsageError("--%s must be at least 1" % (name,))
        self["limits"] = Limits(
            maxConnections=self["max-connections"],
            maxPerAddress=self["max-per-address"],
            maxChannels=self["max-channels"],
            maxZombies=self["max-zombies"],
        )
        if self["sockets"] is not None:
            self["sockets"] = os.path.abspath(self["sockets"])
            self._checkSocketsDirectory()
        try:
            self["endpoints"] = parsePortSpec(
                self.reactor,
                self["port"],
                ipv4=not self["ipv6-only"],
                ipv6=not self["ipv4-only"],
            )
        except PortSpecError as e:
            raise usage.UsageError("--port: %s" % (e,))
        self["socket-mode"] = 0o700 | (0o070 if self["allow-group"] else 0) | (0o007 if self["allow-other"] else 0)
        self._loadTLS()
        self._checkMux()
        self["status-endpoint"] = None
        if self["status-port"] is not None:
            try:
                self["status-endpoint"] = parseStatusEndpoint(
                    self.reactor, self["status-port"], self["status-allow-remote"]
                )
            except StatusEndpointError as e:
                raise usage.UsageError("--status-port: %s" % (e,))

    reactor = globalReactor

    def _loadTLS(self) -> None:
        """
        Read the TLS files now, asking for the key's passphrase while there
        is still a terminal (before twistd daemonizes).
        """
        self["tls"] = None
        cert, key = self["tls-cert"], self["tls-key"]
        if cert is None and key is None:
            for name in ("tls-ca", "tls-passphrase-file", "skip-name-verification"):
                if self[name]:
                    raise usage.UsageError("--%s needs --tls-cert and --tls-key" % (name,))
            return
        if cert is None or key is None:
            raise usage.UsageError("--tls-cert and --tls-key must be given together")
        if self["skip-name-verification"] and self["tls-ca"] is None:
            raise usage.UsageError("--skip-name-verification applies only with --tls-ca")
        for name in ("tls-cert", "tls-key", "tls-ca", "tls-passphrase-file"):
            if self[name] is not None:
                self[name] = os.path.abspath(self[name])
        try:
            self["tls"] = loadServerTLS(
                self["tls-cert"], self["tls-key"], self["tls-ca"], self["tls-passphrase-file"]
            )
        except TLSConfigError as e:
            raise usage.UsageError(str(e))

    def _checkMux(self) -> None:
        """The mux socket's path, the meta-file (loaded now) and the mux port."""
        if self["mux"] is not None:
            self["mux"] = path = os.path.abspath(self["mux"])
            try:
                checkPathLength(path)
            except SocketFileError as e:
                raise usage.UsageError("--mux %s" % (e,))
            if not os.path.isdir(os.path.dirname(path)):
                raise usage.UsageError("--mux %s: no such directory %s" % (path, os.path.dirname(path)))
        muxing = self["mux"] is not None or self["mux-port"] is not None
        if self["metadata"] is not None and not muxing:
            raise usage.UsageError("--metadata needs --mux or --mux-port")
        try:
            self["metadata-store"] = Metadata(os.path.abspath(self["metadata"]) if self["metadata"] else None)
        except MetadataError as e:
            raise usage.UsageError("--metadata: %s" % (e,))
        self["mux-tls"] = None
        self["mux-endpoints"] = []
        if self["mux-tls-ca"] is not None:
            if self["mux-port"] is None:
                raise usage.UsageError("--mux-tls-ca applies only with --mux-port")
            if self["tls"] is None:
                raise usage.UsageError("--mux-tls-ca needs --tls-cert and --tls-key")
            try:
                self["mux-tls"] = muxTLS(self["tls"], os.path.abspath(self["mux-tls-ca"]))
            except TLSConfigError as e:
                raise usage.UsageError("--mux-tls-ca: %s" % (e,))
        elif self["mux-port-insecure"] and self["mux-port"] is None:
            raise usage.UsageError("--mux-port-insecure applies only with --mux-port")
        if self["mux-port"] is not None:
            try:
                self["mux-endpoints"] = [
                    parseMuxPort(self.reactor, self["mux-port"], self["mux-tls"] is not None, self["mux-port-insecure"])
                ]
            except MuxPortError as e:
                raise usage.UsageError("--mux-port: %s" % (e,))

    def _checkSocketsDirectory(self) -> None:
        try:
            checkSocketsDirectory(self["sockets"], self["insecure-sockets-dir"])
        except SocketFileError as e:
            raise usage.UsageError("--sockets %s: %s" % (self["sockets"], e))


def makeService(options: Options) -> IService:
    controller = Controller(
        options.reactor,
        options["sockets"],
        socketMode=options["socket-mode"],
        zombieTime=options["zombie-time"],
        debug=options["debug"],
        limits=options["limits"],
        clientNameCheck=ClientNameCheck() if options["tls-ca"] and not options["skip-name-verification"] else None,
    )
    tls = options.get("tls")
    top = makeRemotedService(controller, options["endpoints"], tls)
    sighup = SighupService(tls.reload if tls is not None else None, options.reactor)
    sighup.setServiceParent(top)
    if options.get("mux") is not None or options.get("mux-endpoints"):
        metadata = options["metadata-store"]
        for service in makeMuxServices(
            controller, metadata, options["mux"], options["socket-mode"], options["mux-endpoints"], options["mux-tls"]
        ):
            service.setServiceParent(top)
        if metadata.path is not None:
            sighup.addReload(metadata.reload)
        if options["mux-tls"] is not None:
            sighup.addReload(options["mux-tls"].reload)
    if options.get("status-endpoint") is not None:
        makeStatusService(controller, options["status-endpoint"]).setServiceParent(top)
    return top
