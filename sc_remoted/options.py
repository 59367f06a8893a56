"""
The one table of options, and the one immutable L{Configuration} that
reading them produces.

Both front doors are made from L{OPTIONS}: C{twistd sc_remoted} takes
every entry as a long option (and the C daemon's one-letter flag as its
short form), the C{sc_remoted} command takes every entry by its long
name and by its C flag (docs/protocol.rst 3.1), plus the entries of
L{COMMAND_OPTIONS}, which under twistd are twistd's own options.  The
usage texts and the manual page's option list are checked against, or
made from, these tables.

L{configure} turns the options' values into a L{Configuration} without
touching the file system: a path that must exist, a meta-file that must
parse or a port that must be free is checked at startup, after twistd's
chroot (and so relative to it), where it fails with one line.  An error
here is a L{usage.UsageError} (a bad command line: exit status 2, with
the usage), or a L{ConfigurationError} (a command line that is
well-formed but that this daemon refuses to run: exit status 1, one
line).
"""

import os
from dataclasses import dataclass
from typing import Mapping, Optional

from twisted.logger import LogLevel
from twisted.python import usage

from .controller import DEFAULT_ZOMBIE_TIME, MAX_ZOMBIE_TIME
from .endpoints import LOOPBACK, AddressError, ListenAddress, parseAddress
from .limits import SIZE_UNITS, Limits, formatSize
from .mux.listen import MuxPortError, checkMuxPortAddress
from .sockets import SocketFileError, checkPathLength
from .status import StatusEndpointError, checkStatusAddress


class ConfigurationError(usage.UsageError):
    """
    A well-formed command line that cannot run, such as a status port
    open to the network without C{--status-allow-remote}: one line, exit
    status 1.  A L{usage.UsageError}, so that an embedding application
    catches both the same way.  A control character in the message (a
    path the operator gave may hold a newline) is escaped, so that it
    stays one line (found by tools/fuzz.py options).
    """

    def __init__(self, message: str) -> None:
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


@dataclass(frozen=True)
class Option:
    """
    One entry of the table.

    @ivar name: the long name, C{--name} in both front doors.
    @ivar help: one sentence or two, for both usage texts.
    @ivar argument: what the option takes (shown in the usage), or L{None}
        for a flag.
    @ivar flag: the C daemon's flag: C{-P}, or C{-O allowgroup}; L{None}
        for an option the C daemon does not have.
    @ivar twistd: for an entry of L{COMMAND_OPTIONS}, the twistd option
        that does the same for C{twistd sc_remoted}.
    """

    name: str
    help: str
    argument: Optional[str] = None
    flag: Optional[str] = None
    twistd: Optional[str] = None

    @property
    def letter(self) -> Optional[str]:
        """The one-letter C flag (C{P} of C{-P}), if there is one."""
        if self.flag is not None and len(self.flag) == 2:
            return self.flag[1]
        return None

    @property
    def oValue(self) -> Optional[str]:
        """The C{-O} value (C{allowgroup} of C{-O allowgroup}), if there is one."""
        if self.flag is not None and self.flag.startswith("-O "):
            return self.flag[3:]
        return None


# --log-level's values, from the least severe: twisted.logger's levels.
LOG_LEVELS = tuple(level.name for level in LogLevel.iterconstants())

OPTIONS = (
    Option("port", "Where scamper connects: PORT (every IPv4 and every IPv6 address), IPv4:PORT, [IPv6]:PORT, "
           "or a tcp: or tcp6: endpoint description. Required.", "ADDRESS", "-P"),
    Option("sockets", "Existing directory for each scamper's UNIX socket; required unless --mux or --mux-port "
           "is given.", "DIR", "-U"),
    Option("zombie-time", "Seconds a disconnected scamper is kept for a resume, 0 to %d; 0 disables; default %d."
           % (MAX_ZOMBIE_TIME, DEFAULT_ZOMBIE_TIME), "SECS", "-Z"),
    Option("ipv4-only", "With a bare PORT, listen on IPv4 only.", flag="-4"),
    Option("ipv6-only", "With a bare PORT, listen on IPv6 only.", flag="-6"),
    Option("allow-group", "Let the sockets' group use them (mode 0770).", flag="-O allowgroup"),
    Option("allow-other", "Let everyone use the sockets.", flag="-O allowother"),
    Option("debug", "Log every message exchanged with scamper (at level debug).", flag="-O debug"),
    Option("log-level", "Log the daemon's events of this level and above: %s; default info, or debug with "
           "--debug. A channel's lines are at debug." % (", ".join(LOG_LEVELS),), "LEVEL"),
    Option("insecure-sockets-dir", "Accept a sockets directory owned by another user or writable by group "
           "or others."),
    Option("max-connections", "Scamper connections open at once; default %d." % (Limits.maxConnections,), "N"),
    Option("max-per-address", "Scamper connections from one IP address; default %d." % (Limits.maxPerAddress,),
           "N"),
    Option("max-channels", "Channels open at once on one scamper; default %d." % (Limits.maxChannels,), "N"),
    Option("max-zombies", "Disconnected scampers kept; past it the oldest is freed; default %d."
           % (Limits.maxZombies,), "N"),
    Option("channel-budget", "Bytes queued for one local client that reads slower than its scamper sends; "
           "past it the client loses its channel; default %s." % (formatSize(Limits.channelBudget),), "SIZE"),
    Option("vp-budget", "The same for all the local clients of one scamper; past it the one furthest behind "
           "goes; default %s." % (formatSize(Limits.vantagePointBudget),), "SIZE"),
    Option("mux-client-budget", "Bytes queued for one mux connection; past it the connection is closed; "
           "default %s." % (formatSize(Limits.muxClientBudget),), "SIZE"),
    Option("queue-budget", "Bytes queued for every slow client together; past it the one furthest behind "
           "goes; default %s." % (formatSize(Limits.processBudget),), "SIZE"),
    Option("tls-cert", "PEM certificate chain, server certificate first; with --tls-key, every scamper "
           "connection is TLS.", "FILE", "-c"),
    Option("tls-key", "PEM private key of --tls-cert; if encrypted, its passphrase is asked for on the "
           "terminal at startup.", "FILE", "-p"),
    Option("tls-passphrase-file", "Read that passphrase from this file's first line instead.", "FILE"),
    Option("tls-ca", "PEM CA certificates: each scamper must present a client certificate they signed, "
           "naming its monitorname.", "FILE", "-C"),
    Option("skip-name-verification", "With --tls-ca, do not match the monitorname to the client certificate.",
           flag="-O skipnameverification"),
    Option("mux", "The mux socket: every scamper through one UNIX socket, with metadata, for "
           "ScamperCtrl(mux=...) and libscamperctrl.", "PATH", "-M"),
    Option("metadata", "Meta-file of vantage point attributes for mux clients; reloaded on SIGHUP.", "FILE",
           "-m"),
    Option("mux-port", "The mux protocol over TCP too: PORT (on 127.0.0.1), IPv4:PORT, [IPv6]:PORT or an "
           "endpoint description; loopback only unless --mux-tls-ca or --mux-port-insecure.", "ADDRESS"),
    Option("mux-tls-ca", "--mux-port is TLS with the --tls-cert certificate, and clients must present a "
           "certificate these CAs signed.", "FILE"),
    Option("mux-port-insecure", "Let --mux-port take plain TCP on an address other than loopback."),
    Option("status-port", "Serve /status (JSON) and /metrics (Prometheus) over HTTP: PORT (on 127.0.0.1), "
           "IPv4:PORT, [IPv6]:PORT or an endpoint description; off by default.", "ADDRESS"),
    Option("status-allow-remote", "Let --status-port listen on an address other than loopback."),
)

# The sc_remoted command's own options: how the process runs, which
# twistd's options decide for twistd sc_remoted.
COMMAND_OPTIONS = (
    Option("help", "Print this help and exit.", flag="-?"),
    Option("version", "Print the version and exit.", flag="-v"),
    Option("daemon", "Run as a daemon: detach, keep the umask, log to syslog unless --logfile. Without it, "
           "stay in the foreground and log to standard output.", flag="-D", twistd="twistd without -n"),
    Option("pidfile", "Write the daemon's pid here once it listens; removed at exit. None without -e.", "FILE",
           "-e", "twistd --pidfile"),
    Option("chroot", "Chroot to DIR at startup, after the TLS files are read; every other path names a file "
           "inside DIR, which must hold dev/null.", "DIR", "-R", "twistd --chroot"),
    Option("select", "Use the select() reactor.", flag="-O select", twistd="twistd --reactor=select"),
    Option("notimes", "Log lines without timestamps (foreground only).", flag="-O notimes",
           twistd="twistd --logger=sc_remoted.logs.noTimesStdoutLogger"),
    Option("logfile", "Log to FILE instead of standard output or syslog.", "FILE", twistd="twistd --logfile"),
)


@dataclass(frozen=True)
class Configuration:
    """
    What the command line asks for, checked but not yet acted on.

    Every path is absolute, and names the file as the daemon sees it
    after the chroot, if there is one (L{outside} gives it before).
    """

    port: ListenAddress
    ipv4: bool = True
    ipv6: bool = True
    sockets: Optional[str] = None
    insecureSocketsDirectory: bool = False
    socketMode: int = 0o700
    zombieTime: int = DEFAULT_ZOMBIE_TIME
    limits: Limits = Limits()
    debug: bool = False
    logLevel: LogLevel = LogLevel.info
    tlsCertificate: Optional[str] = None
    tlsKey: Optional[str] = None
    tlsPassphraseFile: Optional[str] = None
    tlsCA: Optional[str] = None
    skipNameVerification: bool = False
    mux: Optional[str] = None
    metadata: Optional[str] = None
    muxPort: Optional[ListenAddress] = None
    muxTLSCA: Optional[str] = None
    muxPortInsecure: bool = False
    statusPort: Optional[ListenAddress] = None
    statusAllowRemote: bool = False
    chroot: Optional[str] = None

    def outside(self, path: str) -> str:
        """C{path} as seen before the chroot: where the daemon reads it at parse time."""
        return chrootedPath(path, self.chroot, outside=True)


def chrootedPath(path: str, chroot: Optional[str], outside: bool = False) -> str:
    """
    An operator's path made absolute: against the working directory, or,
    with a C{chroot}, against the chroot's root, since every path then
    names a file inside it (twistd works from C{/} there).  With
    C{outside}, the same file as seen before the chroot.
    """
    if chroot is None:
        return os.path.abspath(path)
    inside = os.path.normpath(os.path.join("/", path))
    return os.path.join(os.path.abspath(chroot), inside.lstrip("/")) if outside else inside


def configure(values: Mapping[str, object], chroot: Optional[str] = None) -> Configuration:
    """
    The L{Configuration} of the options' C{values} (long name to the text
    given, L{None} when absent; flags true or false).

    @param chroot: the directory twistd will chroot to, if any.
    @raise usage.UsageError: for a bad command line.
    @raise ConfigurationError: for one this daemon refuses.
    """

    def text(name: str) -> Optional[str]:
        value = values.get(name)
        return None if value is None else str(value)

    def path(name: str) -> Optional[str]:
        value = text(name)
        return None if value is None else chrootedPath(value, chroot)

    def flag(name: str) -> bool:
        return bool(values.get(name))

    portText = text("port")
    if portText is None:
        raise usage.UsageError("--port is required")
    if text("sockets") is None and text("mux") is None and text("mux-port") is None:
        raise usage.UsageError("--sockets is required, unless --mux or --mux-port is given")
    zombieTime = _number(values, "zombie-time", DEFAULT_ZOMBIE_TIME)
    if not 0 <= zombieTime <= MAX_ZOMBIE_TIME:
        raise usage.UsageError("--zombie-time must be from 0 to %d seconds" % (MAX_ZOMBIE_TIME,))
    limits = Limits(
        maxConnections=_limit(values, "max-connections", Limits.maxConnections),
        maxPerAddress=_limit(values, "max-per-address", Limits.maxPerAddress),
        maxChannels=_limit(values, "max-channels", Limits.maxChannels),
        maxZombies=_limit(values, "max-zombies", Limits.maxZombies),
        channelBudget=_size(values, "channel-budget", Limits.channelBudget),
        vantagePointBudget=_size(values, "vp-budget", Limits.vantagePointBudget),
        muxClientBudget=_size(values, "mux-client-budget", Limits.muxClientBudget),
        processBudget=_size(values, "queue-budget", Limits.processBudget),
    )
    ipv4, ipv6 = not flag("ipv6-only"), not flag("ipv4-only")
    port = _scamperAddress(portText, ipv4, ipv6)
    logLevel = _logLevel(text("log-level"), flag("debug"))
    _checkTLSOptions(values)
    mux = path("mux")
    if mux is not None:
        try:
            checkPathLength(mux)
        except SocketFileError as e:
            raise ConfigurationError("--mux %s" % (e,))
    muxPortText = text("mux-port")
    if text("metadata") is not None and mux is None and muxPortText is None:
        raise usage.UsageError("--metadata needs --mux or --mux-port")
    if text("mux-tls-ca") is not None:
        if muxPortText is None:
            raise usage.UsageError("--mux-tls-ca applies only with --mux-port")
        if text("tls-cert") is None:
            raise usage.UsageError("--mux-tls-ca needs --tls-cert and --tls-key")
    elif flag("mux-port-insecure") and muxPortText is None:
        raise usage.UsageError("--mux-port-insecure applies only with --mux-port")
    muxPort = None
    if muxPortText is not None:
        muxPort = _address("mux-port", muxPortText, LOOPBACK)
        try:
            checkMuxPortAddress(muxPort, text("mux-tls-ca") is not None, flag("mux-port-insecure"))
        except MuxPortError as e:
            raise ConfigurationError("--mux-port: %s" % (e,))
    statusPort = None
    statusText = text("status-port")
    if statusText is not None:
        statusPort = _address("status-port", statusText, LOOPBACK)
        try:
            checkStatusAddress(statusPort, flag("status-allow-remote"))
        except StatusEndpointError as e:
            raise ConfigurationError("--status-port: %s" % (e,))
    return Configuration(
        port=port,
        ipv4=ipv4,
        ipv6=ipv6,
        sockets=path("sockets"),
        insecureSocketsDirectory=flag("insecure-sockets-dir"),
        socketMode=0o700 | (0o070 if flag("allow-group") else 0) | (0o007 if flag("allow-other") else 0),
        zombieTime=zombieTime,
        limits=limits,
        debug=flag("debug"),
        logLevel=logLevel,
        tlsCertificate=path("tls-cert"),
        tlsKey=path("tls-key"),
        tlsPassphraseFile=path("tls-passphrase-file"),
        tlsCA=path("tls-ca"),
        skipNameVerification=flag("skip-name-verification"),
        mux=mux,
        metadata=path("metadata"),
        muxPort=muxPort,
        muxTLSCA=path("mux-tls-ca"),
        muxPortInsecure=flag("mux-port-insecure"),
        statusPort=statusPort,
        statusAllowRemote=flag("status-allow-remote"),
        chroot=os.path.abspath(chroot) if chroot is not None else None,
    )


def _logLevel(text: Optional[str], debug: bool) -> LogLevel:
    """C{--log-level}'s level; C{--debug}'s events are at level debug, so it needs that one."""
    if text is None:
        return LogLevel.debug if debug else LogLevel.info
    if text not in LOG_LEVELS:
        raise usage.UsageError("--log-level must be one of %s, not %r" % (", ".join(LOG_LEVELS), text))
    level = LogLevel.levelWithName(text)
    if debug and level is not LogLevel.debug:
        raise usage.UsageError("--debug logs at level debug, which --log-level %s leaves out" % (text,))
    return level


def _number(values: Mapping[str, object], name: str, default: int) -> int:
    value = values.get(name)
    if value is None:
        return default
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.isdigit():
        raise usage.UsageError("--%s: %r is not a whole number" % (name, value))
    return int(text)


def _limit(values: Mapping[str, object], name: str, default: int) -> int:
    value = _number(values, name, default)
    if value < 1:
        raise usage.UsageError("--%s must be at least 1" % (name,))
    return value


def _size(values: Mapping[str, object], name: str, default: int) -> int:
    """A byte count: a whole number, with an optional K, M or G (powers of 1024)."""
    value = values.get(name)
    if value is None:
        return default
    text = str(value).strip().upper()
    unit = text[-1:] if text[-1:] in SIZE_UNITS else ""
    digits = text[: len(text) - len(unit)]
    if not digits.isdigit():
        raise usage.UsageError("--%s: %r is not a size (bytes, or a number with K, M or G)" % (name, value))
    size = int(digits) * SIZE_UNITS.get(unit, 1)
    if size < 1:
        raise usage.UsageError("--%s must be at least 1 byte" % (name,))
    return size


def _address(name: str, text: str, barePortHost: Optional[str] = None) -> ListenAddress:
    try:
        return parseAddress(text, barePortHost)
    except AddressError as e:
        raise usage.UsageError("--%s: %s" % (name, e))


def _scamperAddress(text: str, ipv4: bool, ipv6: bool) -> ListenAddress:
    """C{--port}: TCP only, since scamper connects over TCP; C{-4}/C{-6} must agree with it."""
    if not (ipv4 or ipv6):
        raise usage.UsageError("--ipv4-only and --ipv6-only exclude each other")
    address = _address("port", text)
    if not address.isTCP:
        raise ConfigurationError(
            "--port: %r is not TCP, which scamper connects over: give PORT, IPv4:PORT, [IPv6]:PORT, or a "
            "tcp: or tcp6: description (for TLS, --tls-cert and --tls-key)" % (text,)
        )
    if ipv4 and ipv6:
        return address
    if address.description is not None:
        raise usage.UsageError("--ipv4-only and --ipv6-only apply only to the PORT form, not to %r" % (text,))
    if address.type == "tcp6" and not ipv6:
        raise usage.UsageError("%s is an IPv6 address, but --ipv4-only was given" % (address.host,))
    if address.type == "tcp" and address.host is not None and not ipv4:
        raise usage.UsageError("%s is an IPv4 address, but --ipv6-only was given" % (address.host,))
    return address


def _checkTLSOptions(values: Mapping[str, object]) -> None:
    cert, key = values.get("tls-cert"), values.get("tls-key")
    if cert is None and key is None:
        for name in ("tls-ca", "tls-passphrase-file", "skip-name-verification"):
            if values.get(name):
                raise usage.UsageError("--%s needs --tls-cert and --tls-key" % (name,))
        return
    if cert is None or key is None:
        raise usage.UsageError("--tls-cert and --tls-key must be given together")
    if values.get("skip-name-verification") and values.get("tls-ca") is None:
        raise usage.UsageError("--skip-name-verification applies only with --tls-ca")
