"""
The C{twistd sc_remoted} command line and service: L{Options} and
L{makeService}, made from the table of L{sc_remoted.options}.

Inside another application (no twistd around them), L{Options} raises
L{usage.UsageError} and L{makeService} returns the service tree, as
docs/embedding.rst shows.  As twistd's C{sc_remoted} subcommand they are
a front door, as the C{sc_remoted} command is: a bad command line is one
line and the usage on standard error, exit status 2; a command line the
daemon refuses, or a start that fails, is one line, exit status 1; and
the process (daemonizing, the pidfile, SIGTERM and SIGINT) is taken over
from twistd by L{sc_remoted.process}.

The options are read without touching a file, but for the TLS files:
an encrypted key's passphrase is asked for (and checked) while twistd
still has the terminal.  Everything else that needs the file system is
checked when the tree starts, after twistd's chroot.
"""

import os
import re
from functools import partial
from typing import List, Optional, Tuple

from twisted.application.app import ServerOptions as TwistdOptions
from twisted.application.service import IService, MultiService
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python import usage

from .collector import YOUNG_GENERATION
from .controller import Controller
from .endpoints import AddressError, ListenAddress
from .logs import twistdLogfile
from .mux.listen import makeMuxServices, muxTLS
from .mux.metadata import Metadata, MetadataError, readMetadata
from .options import OPTIONS, Configuration, ConfigurationError, Option, configure
from .process import EXIT_STARTUP, EXIT_USAGE, ProcessService, ProcessSettings, reportError
from .reactor import installDefault as installDefaultReactor
from .service import SighupService, StartupError, makeRemotedService
from .shutdown import ShutdownSignals
from .sockets import SocketFileError, checkSocketsDirectory
from .status import makeStatusService
from .tls import ClientNameCheck, ReloadableServerTLS, TLSConfigError, TLSFiles, loadServerTLS


def _help(option: Option) -> str:
    return option.help + (" (C: %s)" % (option.flag,) if option.flag else "")


class Options(usage.Options):
    """
    The options of C{twistd sc_remoted}, one for each entry of
    L{sc_remoted.options.OPTIONS}; its one-letter form is the C flag.

    @ivar config: the L{Configuration}, once parsed.
    @ivar chroot: the directory the daemon will chroot to, for the
        C{sc_remoted} command's C{-R}; under twistd, twistd's C{--chroot}.
    """

    synopsis = "--port ADDRESS (--sockets DIR | --mux PATH | --mux-port ADDRESS) [options]"

    optParameters = [[o.name, o.letter, None, _help(o)] for o in OPTIONS if o.argument is not None]
    optFlags = [[o.name, o.letter, _help(o)] for o in OPTIONS if o.argument is None]

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

    chroot: Optional[str] = None
    config: Configuration
    _reactor = None

    @property
    def reactor(self):
        """
        The reactor the service will use: the global one unless a test
        or an application set another; looked up when asked for, so that
        importing this module installs none.
        """
        if self._reactor is not None:
            return self._reactor
        from twisted.internet import reactor

        return reactor

    @reactor.setter
    def reactor(self, reactor) -> None:
        self._reactor = reactor

    def parseOptions(self, options=None) -> None:
        twistd = _twistd(self)
        if twistd is None:
            _checkShellCompletion(options)
            return usage.Options.parseOptions(self, options)
        # twistd has installed the reactor its --reactor named, if any.
        installDefaultReactor()
        try:
            _checkShellCompletion(options)
            usage.Options.parseOptions(self, options)
        except ConfigurationError as e:
            reportError(str(e))
            raise SystemExit(EXIT_STARTUP)
        except usage.UsageError as e:
            reportError(str(e), usage=str(self))
            raise SystemExit(EXIT_USAGE)

    def postOptions(self) -> None:
        twistd = _twistd(self)
        self.config = configure(self, twistd["chroot"] if twistd is not None else self.chroot)
        self["tls"], self["mux-tls"] = loadTLS(self.config)
        if twistd is not None:
            _quietForegroundLog(twistd)


_COMPLETION_REQUEST = re.compile(r"^\w+:(\d+)$")


def _checkShellCompletion(words: Optional[List[str]]) -> None:
    """
    Twisted's options take a hidden C{--_shell-completion SHELL:POSITION}
    as the last two words (zsh's completion asks with it); a malformed
    one made Twisted fail with a traceback (found by tools/fuzz.py
    options), so it is a usage error here.
    """
    if words is None or len(words) < 2 or words[-2] != "--_shell-completion":
        return
    match = _COMPLETION_REQUEST.match(words[-1])
    if match is None or not 2 <= int(match.group(1)) < len(words) + 2:
        raise usage.UsageError("--_shell-completion takes SHELL:POSITION within the command line")


def _quietForegroundLog(twistd: TwistdOptions) -> None:
    """
    Under C{twistd sc_remoted} logging to the terminal or to a file, log
    through the daemon's own text observer, which leaves out Twisted's
    lines about every vantage point's socket (L{sc_remoted.logs.quietTwisted})
    and costs a third of twistd's.  An operator's own C{--logger} or
    C{--syslog} is kept.  (twistd reads C{logger} after this, in its own
    postOptions.)
    """
    if twistd["logger"] is not None or twistd.get("syslog"):
        return
    logfile = twistd["logfile"]
    if twistd["nodaemon"] and logfile in (None, "-"):
        twistd["logger"] = "sc_remoted.logs.textStdoutLogger"
    elif logfile != "-":
        # A daemon without --logfile logs to twistd.log, as twistd does.
        twistdLogfile.path = logfile or "twistd.log"
        twistd["logger"] = "sc_remoted.logs.twistdLogfile"


def _twistd(options: usage.Options) -> Optional[TwistdOptions]:
    """twistd's options, when C{options} are those of its C{sc_remoted} subcommand."""
    return options.parent if isinstance(options.parent, TwistdOptions) else None


def loadTLS(config: Configuration) -> Tuple[Optional[ReloadableServerTLS], Optional[ReloadableServerTLS]]:
    """
    The TLS of the scamper port and of the mux port, read now: an
    encrypted key's passphrase is asked for on the terminal (or read from
    C{--tls-passphrase-file}) and checked while there is still one to ask
    on, before twistd daemonizes.  With a chroot the files are read from
    inside it, now as on every reload.

    @raise ConfigurationError: with one line for the operator.
    """
    if config.tlsCertificate is None or config.tlsKey is None:
        return None, None

    def outside(path: Optional[str]) -> Optional[str]:
        return None if path is None else config.outside(path)

    try:
        tls = loadServerTLS(
            config.outside(config.tlsCertificate),
            config.outside(config.tlsKey),
            outside(config.tlsCA),
            outside(config.tlsPassphraseFile),
        )
    except TLSConfigError as e:
        raise ConfigurationError(str(e))
    mux = None
    if config.muxTLSCA is not None:
        try:
            mux = muxTLS(tls, config.outside(config.muxTLSCA))
        except TLSConfigError as e:
            raise ConfigurationError("--mux-tls-ca: %s" % (e,))
    if config.chroot is not None:
        # Reloads happen after the chroot, where the paths are as given.
        passphrase = tls.files.passphrase
        tls.files = TLSFiles(config.tlsCertificate, config.tlsKey, config.tlsCA, passphrase)
        if mux is not None:
            mux.files = TLSFiles(config.tlsCertificate, config.tlsKey, config.muxTLSCA, passphrase)
    return tls, mux


def makeService(options: Options) -> IService:
    """
    The service of C{options}: the daemon's tree (L{buildService}) for an
    embedding application; under twistd, that tree inside the process's
    own start and stop (L{ProcessService}), which takes daemonizing and
    the pidfile over from twistd.
    """
    twistd = _twistd(options)
    if twistd is None:
        return buildService(options.config, options["tls"], options["mux-tls"], options.reactor)
    settings = takeOverProcess(twistd, options.config)
    signals = ShutdownSignals(options.reactor)
    signals.install()
    try:
        remoted = buildService(options.config, options["tls"], options["mux-tls"], options.reactor)
    except StartupError as e:
        reportError(str(e))
        raise SystemExit(EXIT_STARTUP)
    return ProcessService(remoted, settings, signals, options.reactor)


def takeOverProcess(twistd: TwistdOptions, config: Configuration) -> ProcessSettings:
    """
    What twistd's options ask of the process, which L{ProcessService}
    does from now on: twistd is left to run in the foreground, without a
    pidfile.  A daemon gets twistd's default umask, 077, unless
    C{--umask} (which twistd still sets) says otherwise.  The process
    gets C{config}'s log level and the daemon's pace of garbage
    collection (L{sc_remoted.collector}).
    """
    daemon = not twistd["nodaemon"]
    settings = ProcessSettings(
        daemon=daemon,
        pidfile=twistd["pidfile"] or None,
        umask=0o077 if daemon and twistd["umask"] is None else None,
        youngGeneration=YOUNG_GENERATION,
        logLevel=config.logLevel,
    )
    twistd["nodaemon"] = True
    twistd["pidfile"] = ""
    return settings


def buildService(
    config: Configuration,
    tls: Optional[ReloadableServerTLS] = None,
    muxTLS: Optional[ReloadableServerTLS] = None,
    reactor=None,
) -> MultiService:
    """
    The daemon's service tree for C{config}, with the TLS that
    L{loadTLS} read, on C{reactor} (the global one if C{None}).  Its
    start first checks what needs the file system (the sockets
    directory, the mux socket's directory, the meta-file).

    @raise StartupError: for an endpoint Twisted cannot make.
    """
    if reactor is None:
        from twisted.internet import reactor
    controller = Controller(
        reactor,
        config.sockets,
        socketMode=config.socketMode,
        zombieTime=config.zombieTime,
        debug=config.debug,
        limits=config.limits,
        clientNameCheck=ClientNameCheck() if config.tlsCA is not None and not config.skipNameVerification else None,
    )
    metadata = Metadata()
    checks = []
    if config.sockets is not None:
        checks.append(partial(_checkSocketsDirectory, config.sockets, config.insecureSocketsDirectory))
    if config.mux is not None:
        checks.append(partial(_checkMuxDirectory, config.mux))
    if config.metadata is not None:
        checks.append(partial(_loadMetadata, metadata, config.metadata))
    scamperEndpoints = _endpoints("port", config.port, reactor, config.ipv4, config.ipv6)
    top = makeRemotedService(controller, scamperEndpoints, tls, checks)
    sighup = SighupService(tls.reload if tls is not None else None, reactor)
    sighup.setServiceParent(top)
    if config.mux is not None or config.muxPort is not None:
        muxEndpoints = _endpoints("mux-port", config.muxPort, reactor) if config.muxPort is not None else []
        for service in makeMuxServices(controller, metadata, config.mux, config.socketMode, muxEndpoints, muxTLS):
            service.setServiceParent(top)
        if config.metadata is not None:
            sighup.addReload(metadata.reload)
        if muxTLS is not None:
            sighup.addReload(muxTLS.reload)
    if config.statusPort is not None:
        [endpoint] = _endpoints("status-port", config.statusPort, reactor)
        makeStatusService(controller, endpoint).setServiceParent(top)
    return top


def _endpoints(
    name: str, address: ListenAddress, reactor, ipv4: bool = True, ipv6: bool = True
) -> List[IStreamServerEndpoint]:
    try:
        return address.endpoints(reactor, ipv4, ipv6)
    except AddressError as e:
        raise StartupError("--%s: %s" % (name, e))


def _checkSocketsDirectory(directory: str, insecure: bool) -> None:
    try:
        checkSocketsDirectory(directory, insecure)
    except SocketFileError as e:
        raise StartupError("--sockets %s: %s" % (directory, e))


def _checkMuxDirectory(path: str) -> None:
    if not os.path.isdir(os.path.dirname(path)):
        raise StartupError("--mux %s: no such directory %s" % (path, os.path.dirname(path)))


def _loadMetadata(metadata: Metadata, path: str) -> None:
    """Read the meta-file into C{metadata}, which SIGHUP then reloads from C{path}."""
    try:
        metadata.entries = readMetadata(path)
    except MetadataError as e:
        raise StartupError("--metadata: %s" % (e,))
    metadata.path = path
