"""
The C{sc_remoted} command: a drop-in for the C daemon's command line.

It takes the C flags (docs/protocol.rst 3.1, 3.12) and every long option
of C{twistd sc_remoted}, both from the tables of L{sc_remoted.options},
and runs the very service of the plugin (L{sc_remoted.tap}) through
twistd's own runner.  Where it differs from C{twistd sc_remoted}:

  - it stays in the foreground unless C{-D} is given, and writes a
    pidfile only with C{-e};
  - C{-R dir} is twistd's C{--chroot}, and every other path then names a
    file inside C{dir};
  - its messages name an option by its C flag, where it has one.

Exit status (L{sc_remoted.process}): 0 on a clean shutdown (SIGINT,
SIGTERM), 1 when the daemon cannot start, 2 for a bad command line.
"""

import getopt
import re
import sys
import textwrap
from typing import Dict, List, NamedTuple, Optional, Sequence

from . import __version__, logs
from .options import COMMAND_OPTIONS, OPTIONS, Configuration, Option, chrootedPath
from .collector import YOUNG_GENERATION
from .process import EXIT_STARTUP, EXIT_USAGE, PROGRAM, ProcessSettings, reportError

SYNOPSIS = """\
usage: sc_remoted [-?46Dv] [-O option] -P address [-U dir] [-M mux] [-m metafile]
                  [-c cert -p key [-C ca]] [-e pidfile] [-R dir] [-Z secs]
                  [--long-option ...]
"""

# Every option of the plugin has its long name here too; the command's
# own -O values (select, notimes) have no long form.
_LONG = [option for option in COMMAND_OPTIONS if option.oValue is None] + list(OPTIONS)
_BY_FLAG: Dict[str, Option] = {"--" + option.name: option for option in _LONG}
_BY_FLAG.update({"-" + option.letter: option for option in COMMAND_OPTIONS + OPTIONS if option.letter})
_BY_O_VALUE = {option.oValue: option for option in COMMAND_OPTIONS + OPTIONS if option.oValue}
_BY_NAME = {option.name: option for option in COMMAND_OPTIONS + OPTIONS}

SHORT_OPTIONS = "O:" + "".join(
    option.letter + (":" if option.argument else "") for option in COMMAND_OPTIONS + OPTIONS if option.letter
)
LONG_OPTIONS = [option.name + ("=" if option.argument else "") for option in _LONG]


def usage() -> str:
    """The usage text: the synopsis, then every option of the tables."""
    lines = [SYNOPSIS, "\n"]
    for option in COMMAND_OPTIONS + OPTIONS:
        names = [option.flag] if option.flag is not None else []
        if option in _LONG:
            names.append("--" + option.name)
        lines.append("  %s%s\n" % (", ".join(names), " " + option.argument if option.argument else ""))
        text = option.help + (" Under twistd sc_remoted: %s." % (option.twistd,) if option.twistd else "")
        lines.append(textwrap.fill(text, 76, initial_indent=" " * 8, subsequent_indent=" " * 8,
                                   break_on_hyphens=False) + "\n")
    return "".join(lines)


class CommandLineError(Exception):
    """A bad command line: the message, the usage text and exit status 2."""


class Invocation(NamedTuple):
    """What a command line asks for."""

    action: str  # "run", "help" or "version"
    plugin: Sequence[str] = ()  # the options of twistd sc_remoted, as --name=value
    daemon: bool = False
    pidfile: Optional[str] = None
    chroot: Optional[str] = None
    logfile: Optional[str] = None
    noTimes: bool = False
    reactor: Optional[str] = None  # a twistd reactor short name to install; None: the daemon's own


def parseCommandLine(argv: Sequence[str]) -> Invocation:
    """
    Sort the C flags and long options of C{argv} (without the program
    name) into the plugin's options and the process's own.

    @raise CommandLineError: for an unknown flag, a positional argument, a
        missing argument or a bad C{-O} value.
    """
    try:
        pairs, rest = getopt.getopt(list(argv), SHORT_OPTIONS, LONG_OPTIONS)
    except getopt.GetoptError as e:
        raise CommandLineError(str(e))
    if rest:
        raise CommandLineError("unexpected argument %r" % (rest[0],))
    given: Dict[str, str] = {}
    plugin: List[str] = []
    for flag, value in pairs:
        if flag == "-O":
            if value not in _BY_O_VALUE:
                raise CommandLineError("unknown -O option %r (known: %s)" % (value, ", ".join(sorted(_BY_O_VALUE))))
            option = _BY_O_VALUE[value]
        else:
            option = _BY_FLAG[flag]
        given[option.name] = value
        if option in OPTIONS:
            plugin.append("--%s=%s" % (option.name, value) if option.argument else "--" + option.name)
    if "help" in given:
        return Invocation("help")
    if "version" in given:
        return Invocation("version")
    return Invocation(
        "run",
        plugin,
        daemon="daemon" in given,
        pidfile=given.get("pidfile"),
        chroot=given.get("chroot"),
        logfile=given.get("logfile"),
        noTimes="notimes" in given,
        reactor="select" if "select" in given else None,
    )


_LONG_OPTION = re.compile(r"(?<![\w-])--([a-z0-9][a-z0-9-]*)")


def cFlagsIn(message: str) -> str:
    """A message of the plugin, naming each option by its C flag where it has one."""

    def flag(match: "re.Match[str]") -> str:
        option = _BY_NAME.get(match.group(1))
        return option.flag if option is not None and option.flag is not None else match.group(0)

    return _LONG_OPTION.sub(flag, message)


def run(argv: Sequence[str]) -> int:
    """
    Run C{sc_remoted} with C{argv} (no program name); the exit status.
    A start that fails ends the process from inside the service, with
    L{SystemExit}.
    """
    try:
        invocation = parseCommandLine(argv)
    except CommandLineError as e:
        reportError(str(e), usage=usage(), stream=sys.stderr)
        return EXIT_USAGE
    if invocation.action == "help":
        sys.stdout.write(usage())
        return 0
    if invocation.action == "version":
        sys.stdout.write("sc_remoted %s (Python, on Twisted)\n" % (__version__,))
        return 0

    # The reactor first, before anything imports it: -O select's, or the
    # daemon's own (sc_remoted.reactor).
    if invocation.reactor is not None:
        from twisted.application.reactors import installReactor

        installReactor(invocation.reactor)
    else:
        from .reactor import installDefault

        installDefault()
    from twisted.python.usage import UsageError

    from . import tap
    from .options import ConfigurationError
    from .process import ProcessService
    from .service import StartupError
    from .shutdown import ShutdownSignals

    options = tap.Options()
    options.chroot = invocation.chroot
    try:
        options.parseOptions(list(invocation.plugin))
    except ConfigurationError as e:
        reportError(cFlagsIn(str(e)), stream=sys.stderr)
        return EXIT_STARTUP
    except UsageError as e:
        reportError(cFlagsIn(str(e)), usage=usage(), stream=sys.stderr)
        return EXIT_USAGE
    signals = ShutdownSignals(options.reactor)
    signals.install()
    try:
        remoted = tap.buildService(options.config, options["tls"], options["mux-tls"], options.reactor)
    except StartupError as e:
        reportError(cFlagsIn(str(e)), stream=sys.stderr)
        return EXIT_STARTUP
    settings = processSettings(invocation, options.config)
    return _runTwistd(ProcessService(remoted, settings, signals, options.reactor, describe=cFlagsIn), invocation)


def processSettings(invocation: Invocation, config: Configuration) -> ProcessSettings:
    """
    What the command line asks of the process: daemonizing, the pidfile
    (as seen after the chroot), the log level; and the daemon's pace of
    garbage collection (L{sc_remoted.collector}).
    """
    pidfile = chrootedPath(invocation.pidfile, invocation.chroot) if invocation.pidfile else None
    return ProcessSettings(
        daemon=invocation.daemon, pidfile=pidfile, youngGeneration=YOUNG_GENERATION, logLevel=config.logLevel
    )


def _runTwistd(service, invocation: Invocation) -> int:
    """
    Run C{service} with twistd's runner, which does the chroot, the
    logging and the reactor; in the foreground as far as twistd knows,
    since daemonizing and the pidfile are the service's
    (L{sc_remoted.process}).
    """
    from twisted.application.service import Application
    from twisted.scripts._twistd_unix import ServerOptions, UnixApplicationRunner

    class Runner(UnixApplicationRunner):
        def createOrGetApplication(self):
            application = Application(PROGRAM)
            service.setServiceParent(application)
            return application

    config = ServerOptions()
    config.parseOptions(
        ["--nodaemon", "--pidfile=", "--no_save"] + (["--chroot", invocation.chroot] if invocation.chroot else [])
    )
    config["logger"] = lambda: _logObserver(invocation)
    try:
        Runner(config).run()
    except logs.LoggingError as e:
        reportError(str(e))
        return EXIT_STARTUP
    # A shutdown by SIGINT or SIGTERM is a clean exit, status 0, as with
    # the C daemon.
    return 0


def _logObserver(invocation: Invocation):
    """
    Where the logs go: syslog or a file with C{-D} or C{--logfile},
    standard output otherwise; a file and standard output written once
    per turn of the reactor (L{sc_remoted.turnwrite}).
    """
    from twisted.internet import reactor

    if invocation.daemon or invocation.logfile is not None:
        logfile = invocation.logfile
        if logfile is not None:
            # Opened now, before the chroot.
            logfile = chrootedPath(logfile, invocation.chroot, outside=True)
        return logs.daemonObserver(logfile, reactor=reactor)
    return logs.textObserver(sys.stdout, timestamps=not invocation.noTimes, reactor=reactor)


def main() -> None:
    """The console script's entry point."""
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":  # pragma: no cover
    main()
