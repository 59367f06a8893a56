"""
The C{sc_remoted} command: a drop-in for the C daemon's command line.

It takes the C flags (docs/protocol.rst 3.1, 3.12), turns them into a C{twistd}
command line for the C{sc_remoted} plugin, and runs twistd's own runner,
so the service is the very one C{twistd sc_remoted} runs.  Where the
two differ from plain twistd:

  - it stays in the foreground unless C{-D} is given;
  - it writes a pidfile only with C{-e}; the pidfile holds the daemon's
    own pid (twistd writes it after forking; the C daemon, before);
  - errors at startup (a usage error, a sockets directory that is
    missing, a port in use) are one line on stderr and a non-zero exit,
    also with C{-D}, where the line comes up from the daemon.

Exit status: 0 on a clean shutdown (SIGINT, SIGTERM), 1 when the daemon
cannot start, 2 for a bad command line.
"""

import getopt
import os
import sys
from typing import Iterable, List, NamedTuple, Optional, Sequence, Set, TextIO

from . import __version__

PROGRAM = "sc_remoted"

USAGE = """\
usage: sc_remoted [-?46Dv] [-O option] -P [ip:]port -U dir [-e pidfile]
                  [-Z secs] [-c cert -p key [-C ca]] [-M mux] [-m metafile]
                  [--status-port ENDPOINT [--status-allow-remote]]
                  [--logfile FILE]

  -?           print this help and exit
  -4           with a bare port, listen on IPv4 only
  -6           with a bare port, listen on IPv6 only
  -D           run as a daemon (detach; log to syslog unless --logfile);
               without it, stay in the foreground and log to stdout
  -O option    allowgroup: the sockets' group may use them (mode 0770)
               allowother: everyone may use the sockets
               debug: log every message exchanged with scamper
               select: use the select() reactor
               skipnameverification: with -C, do not match the
                 monitorname to the client certificate
               notimes: log lines without timestamps (foreground only)
  -P [ip:]port where scamper connects: PORT, IPv4:PORT or [IPv6]:PORT
  -U dir       existing directory for each scamper's UNIX socket
  -e pidfile   write the daemon's pid here (removed at exit)
  -Z secs      keep a disconnected scamper this long for a resume
               (0 to 10800; 0 disables; default 900)
  -c cert      TLS certificate chain (PEM); needs -p
  -p key       TLS private key (PEM)
  -C ca        require client certificates signed by these CAs
  -M mux       the scamper multiplexor UNIX socket
  -m metafile  per-VP metadata for the multiplexor
  -v           print the version and exit
  --status-port ENDPOINT   serve /status and /metrics over HTTP (loopback)
  --status-allow-remote    allow a non-loopback --status-port
  --logfile FILE           log to FILE instead of stdout or syslog
"""

SHORT_OPTIONS = "?46DvO:P:U:c:p:C:e:Z:M:m:"
LONG_OPTIONS = ["status-port=", "status-allow-remote", "logfile=", "help", "version"]

# C flag -> the plugin's option taking its argument.
FLAG_OPTIONS = {
    "-P": "port",
    "-U": "sockets",
    "-Z": "zombie-time",
    "-c": "tls-cert",
    "-p": "tls-key",
    "-C": "tls-ca",
    "-M": "mux",
    "-m": "metadata",
    "--status-port": "status-port",
}

# C flag without an argument -> the plugin's flag.
FLAG_FLAGS = {
    "-4": "ipv4-only",
    "-6": "ipv6-only",
    "--status-allow-remote": "status-allow-remote",
}

# -O value -> the plugin's flag; "select" and "notimes" are twistd's business.
O_FLAGS = {
    "allowgroup": "allow-group",
    "allowother": "allow-other",
    "debug": "debug",
    "skipnameverification": "skip-name-verification",
}
O_VALUES = sorted(list(O_FLAGS) + ["select", "notimes"])

NO_TIMES_LOGGER = "sc_remoted.cli.noTimesLogObserver"


class CommandLineError(Exception):
    """A bad command line: the message, the usage text and exit status 2."""


class NotSupported(CommandLineError):
    """A C flag whose feature this installation does not have yet."""


class Invocation(NamedTuple):
    """What a command line asks for."""

    action: str  # "run", "help" or "version"
    twistd: List[str]  # twistd's arguments, without a program name
    reactor: Optional[str]  # a twistd reactor short name to install, or None
    options: Sequence[str] = ()  # the plugin options used, by long name


def supportedOptions() -> Set[str]:
    """
    The long names of every option and flag the installed plugin's
    L{sc_remoted.tap.Options} has, so that a C flag is refused with 'not
    supported yet' rather than a twistd error until its feature lands.

    Imports L{sc_remoted.tap}, which installs the default reactor unless
    one is installed already.
    """
    from .tap import Options

    names: Set[str] = set()
    for kind in ("optParameters", "optFlags"):
        for cls in Options.__mro__:
            for entry in cls.__dict__.get(kind, []):
                names.add(entry[0])
    return names


def _currentUmask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def parseCommandLine(argv: Sequence[str]) -> Invocation:
    """
    Turn the C daemon's flags into twistd's arguments for the plugin.

    @param argv: the arguments, without the program name.
    @raise CommandLineError: for an unknown flag, a positional argument, a
        missing argument or a bad C{-O} value.
    """
    try:
        pairs, rest = getopt.getopt(list(argv), SHORT_OPTIONS, LONG_OPTIONS)
    except getopt.GetoptError as e:
        raise CommandLineError(str(e))
    if rest:
        raise CommandLineError("unexpected argument %r" % (rest[0],))
    flags = [flag for flag, _ in pairs]
    if "-?" in flags or "--help" in flags:
        return Invocation("help", [], None)
    if "-v" in flags or "--version" in flags:
        return Invocation("version", [], None)

    plugin: List[str] = []
    daemon = False
    pidfile = ""
    logfile: Optional[str] = None
    reactor: Optional[str] = None
    noTimes = False
    wanted: List[str] = []
    for flag, value in pairs:
        if flag == "-D":
            daemon = True
        elif flag == "-e":
            pidfile = os.path.abspath(value)
        elif flag == "--logfile":
            logfile = os.path.abspath(value)
        elif flag == "-O":
            if value == "select":
                reactor = "select"
            elif value == "notimes":
                noTimes = True
            elif value in O_FLAGS:
                wanted.append(O_FLAGS[value])
                plugin.append("--" + O_FLAGS[value])
            else:
                raise CommandLineError("unknown -O option %r (known: %s)" % (value, ", ".join(O_VALUES)))
        elif flag in FLAG_FLAGS:
            wanted.append(FLAG_FLAGS[flag])
            plugin.append("--" + FLAG_FLAGS[flag])
        else:
            name = FLAG_OPTIONS[flag]
            wanted.append(name)
            plugin.append("--%s=%s" % (name, value))
    if "-P" not in flags:
        raise CommandLineError("-P [ip:]port is required")
    if "-U" not in flags and "-M" not in flags:
        raise CommandLineError("-U dir is required")

    twistd: List[str] = []
    if daemon:
        # daemon(1, 0) keeps the umask; twistd would set 077.
        twistd += ["--umask", "%04o" % (_currentUmask(),)]
    else:
        twistd.append("--nodaemon")
    twistd += ["--pidfile", pidfile]
    if logfile is not None:
        twistd += ["--logfile", logfile]
    elif noTimes and not daemon:
        twistd += ["--logger", NO_TIMES_LOGGER]
    elif daemon:
        twistd += ["--syslog", "--prefix", PROGRAM]
    twistd.append(PROGRAM)
    twistd += plugin
    return Invocation("run", twistd, reactor, wanted)


def checkSupported(invocation: Invocation, supported: Iterable[str]) -> None:
    """
    @raise NotSupported: if C{invocation} uses a plugin option not in
        C{supported} (see L{supportedOptions}).
    """
    known = set(supported)
    for name in invocation.options:
        if name not in known:
            raise NotSupported("%s is not supported yet by this sc_remoted" % (_cFlagFor(name),))


def _cFlagFor(name: str) -> str:
    for flag, option in FLAG_OPTIONS.items():
        if option == name:
            return flag
    for value, option in O_FLAGS.items():
        if option == name:
            return "-O " + value
    for flag, option in FLAG_FLAGS.items():
        if option == name:
            return flag
    return "--" + name


def _cFlagsIn(message: str) -> str:
    """A plugin error message, naming the option by its C flag."""
    for name in sorted(set(FLAG_OPTIONS.values()) | set(FLAG_FLAGS.values()) | set(O_FLAGS.values()), key=len, reverse=True):
        option = "--" + name
        if message.startswith(option) and not message[len(option) : len(option) + 1].isalnum():
            if message[len(option) : len(option) + 1] == "-":
                continue
            return _cFlagFor(name) + message[len(option) :]
    return message


def noTimesLogObserver():
    """
    A twistd C{--logger}: twistd's text format without the timestamp
    (C{-O notimes}), to stdout.
    """
    from twisted.logger import FileLogObserver, formatEventAsClassicLogText

    return FileLogObserver(sys.stdout, lambda event: formatEventAsClassicLogText(event, formatTime=lambda when: "-"))


def _runnerClass():
    """twistd's runner, with startup errors reported in one line."""
    from twisted.python.util import untilConcludes
    from twisted.scripts._twistd_unix import UnixApplicationRunner

    from .service import StartupError

    class Runner(UnixApplicationRunner):
        def _formatChildException(self, exception):
            if isinstance(exception, StartupError):
                return ("1 %s" % (exception,)).encode("ascii", "backslashreplace")[:100]
            return super()._formatChildException(exception)

        def _waitForStart(self, readPipe: int) -> int:
            data = untilConcludes(os.read, readPipe, 100)
            if data == b"0":
                return 0
            message = data[2:].decode("ascii", "replace") or "the daemon exited while starting"
            stderr = sys.__stderr__
            assert stderr is not None
            untilConcludes(stderr.write, "%s: %s\n" % (PROGRAM, message))
            return 1

    return Runner


def _fail(message: str, status: int, usage: bool = False, stream: Optional[TextIO] = None) -> int:
    stream = stream if stream is not None else sys.__stderr__
    assert stream is not None
    stream.write("%s: %s\n" % (PROGRAM, message))
    if usage:
        stream.write(USAGE)
    stream.flush()
    return status


def run(argv: Sequence[str]) -> int:
    """Run C{sc_remoted} with C{argv} (no program name); the exit status."""
    try:
        invocation = parseCommandLine(argv)
    except CommandLineError as e:
        return _fail(str(e), 2, usage=True, stream=sys.stderr)
    if invocation.action == "help":
        sys.stdout.write(USAGE)
        return 0
    if invocation.action == "version":
        sys.stdout.write("sc_remoted %s (Python, on Twisted)\n" % (__version__,))
        return 0

    # The reactor first: importing the plugin installs the default one.
    if invocation.reactor is not None:
        from twisted.application.reactors import installReactor

        installReactor(invocation.reactor)
    try:
        checkSupported(invocation, supportedOptions())
    except NotSupported as e:
        return _fail(str(e), 2, stream=sys.stderr)

    from twisted.python import usage
    from twisted.scripts._twistd_unix import ServerOptions

    from .service import StartupError

    config = ServerOptions()
    try:
        config.parseOptions(invocation.twistd)
    except usage.UsageError as e:
        return _fail(_cFlagsIn(str(e)), 1, stream=sys.stderr)
    runner = _runnerClass()(config)
    try:
        runner.run()
    except StartupError as e:
        return _fail(str(e), 1)
    # A shutdown by SIGINT or SIGTERM is a clean exit, status 0, as with
    # the C daemon (twistd itself would die of the signal again).
    return 0


def main() -> None:
    """The console script's entry point."""
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":  # pragma: no cover
    main()
