"""
The C{twistd sc_remoted} command line: L{Options} and L{makeService}.
"""

import os
import stat

from twisted.application.service import IService
from twisted.internet import reactor as globalReactor
from twisted.python import usage

from .controller import DEFAULT_ZOMBIE_TIME, MAX_ZOMBIE_TIME, Controller
from .listen import PortSpecError, parsePortSpec
from .naming import LONGEST_IPV4_PEER, LONGEST_IPV6_PEER, MAX_SOCKET_PATH
from .service import SighupService, makeRemotedService


class Options(usage.Options):
    """Options of C{twistd sc_remoted}; each names its C sc_remoted flag."""

    synopsis = "--port [IP:]PORT --sockets DIR [options]"

    optParameters = [
        ["port", "P", None, "Where scamper connects: PORT, IPv4:PORT, [IPv6]:PORT or a Twisted endpoint description (C: -P)."],
        ["sockets", "U", None, "Directory for each scamper's UNIX socket (C: -U)."],
        ["zombie-time", "Z", DEFAULT_ZOMBIE_TIME, "Seconds a disconnected scamper is kept for a resume; 0 disables (C: -Z).", int],
    ]

    optFlags = [
        ["ipv4-only", "4", "With a bare PORT, listen on IPv4 only (C: -4)."],
        ["ipv6-only", "6", "With a bare PORT, listen on IPv6 only (C: -6)."],
        ["allow-group", None, "Let the sockets' group use them (C: -O allowgroup)."],
        ["allow-other", None, "Let everyone use the sockets (C: -O allowother)."],
        ["debug", None, "Log every message exchanged (C: -O debug)."],
    ]

    compData = usage.Completions(
        optActions={"sockets": usage.CompleteDirs(descr="sockets directory")}
    )

    def postOptions(self) -> None:
        if self["port"] is None:
            raise usage.UsageError("--port is required")
        if self["sockets"] is None:
            raise usage.UsageError("--sockets is required")
        if not 0 <= self["zombie-time"] <= MAX_ZOMBIE_TIME:
            raise usage.UsageError("--zombie-time must be from 0 to %d seconds" % (MAX_ZOMBIE_TIME,))
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

    reactor = globalReactor

    def _checkSocketsDirectory(self) -> None:
        directory = self["sockets"]
        try:
            mode = os.stat(directory).st_mode
        except OSError as e:
            raise usage.UsageError("--sockets %s: %s" % (directory, e.strerror))
        if not stat.S_ISDIR(mode):
            raise usage.UsageError("--sockets %s: not a directory" % (directory,))
        longest = os.path.join(directory, max(LONGEST_IPV4_PEER, LONGEST_IPV6_PEER, key=len))
        if len(os.fsencode(longest)) > MAX_SOCKET_PATH:
            raise usage.UsageError(
                "--sockets %s: too long; socket paths such as %s exceed the %d-byte limit"
                % (directory, longest, MAX_SOCKET_PATH)
            )


def makeService(options: Options) -> IService:
    controller = Controller(
        options.reactor,
        options["sockets"],
        socketMode=options["socket-mode"],
        zombieTime=options["zombie-time"],
        debug=options["debug"],
    )
    top = makeRemotedService(controller, options["endpoints"])
    SighupService().setServiceParent(top)
    return top
