"""
Tests for the one table of options and the L{Configuration} it produces
(L{sc_remoted.options}): both front doors and the manual page agree with
the table, every message names only options they accept, and parsing
reads no file.
"""

import ast
import builtins
import dataclasses
import os
import re

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

import sc_remoted
from sc_remoted import cli
from sc_remoted.limits import Limits
from sc_remoted.options import COMMAND_OPTIONS, OPTIONS, ConfigurationError, chrootedPath, configure
from sc_remoted.tap import Options

from .test_cli import REPO

MANUAL = os.path.join(REPO, "docs", "sc_remoted.1")


def parse(*argv, chroot=None):
    options = Options()
    options.reactor = MemoryReactorClock()
    options.chroot = chroot
    options.parseOptions(list(argv))
    return options.config


class TableTests(SynchronousTestCase):
    def test_unique(self):
        everything = OPTIONS + COMMAND_OPTIONS
        for key in ("name", "letter", "oValue"):
            values = [getattr(option, key) for option in everything if getattr(option, key) is not None]
            self.assertEqual(len(values), len(set(values)), key)
        for option in everything:
            self.assertTrue(option.help.endswith("."), option.name)

    def test_twistdOptions(self):
        """twistd sc_remoted has every entry, its C flag letter as the short form."""
        parameters = {name: short for name, short, _, _ in Options.optParameters}
        flags = {name: short for name, short, _ in Options.optFlags}
        self.assertEqual(parameters, {o.name: o.letter for o in OPTIONS if o.argument is not None})
        self.assertEqual(flags, {o.name: o.letter for o in OPTIONS if o.argument is None})
        usage = str(Options())
        for option in OPTIONS:
            self.assertIn("--" + option.name, usage)

    def test_dropInOptions(self):
        """The sc_remoted command takes every long option, and every C flag."""
        for option in OPTIONS:
            self.assertIn(option.name + ("=" if option.argument else ""), cli.LONG_OPTIONS)
        for option in OPTIONS + COMMAND_OPTIONS:
            if option.letter is not None:
                self.assertIn(option.letter, cli.SHORT_OPTIONS)
        text = cli.usage()
        for option in OPTIONS + COMMAND_OPTIONS:
            self.assertIn(option.flag or "--" + option.name, text)

    def test_sameMeaning(self):
        """A C flag and its long option make the same configuration."""
        directory = self.mktemp()
        needFiles = ("tls-cert", "tls-key", "tls-ca", "skip-name-verification")  # test_tls has them
        for option in OPTIONS:
            if option.flag is None or option.name in ("port", "sockets") + needFiles:
                continue
            argument = [{"zombie-time": "60"}.get(option.name, "/tmp/x")] if option.argument else []
            extra = ["--mux", "/tmp/m"] if option.name == "metadata" else []
            short = cli.parseCommandLine(["-P", "1", "-U", directory, *option.flag.split(), *argument]).plugin
            self.assertEqual(
                parse("--port", "1", "--sockets", directory, "--" + option.name, *argument, *extra),
                parse(*short, *extra),
                option.name,
            )


class ManualTests(SynchronousTestCase):
    """docs/sc_remoted.1 lists exactly the options of the table."""

    def headings(self):
        with open(MANUAL) as f:
            text = f.read()
        section = text.split(".SH OPTIONS", 1)[1].split("\n.SH ", 1)[0]
        lines = section.splitlines()
        return [lines[i + 1] for i, line in enumerate(lines) if line == ".TP"]

    def test_optionsListed(self):
        flags, oValues = set(), set()
        for heading in self.headings():
            words = heading.replace("\\-", "-").split(None, 1)[1]
            names = re.findall(r"(?<![\w-])(--?[\w?][\w-]*)", words)
            if not words.startswith("-"):
                oValues.add(words.split()[0])  # an -O value, perhaps with its long form
            flags.update(names)
        expected = {"-O"}
        for option in OPTIONS + COMMAND_OPTIONS:
            if option.letter is not None:
                expected.add("-" + option.letter)
            if option.oValue is None or option in OPTIONS:
                expected.add("--" + option.name)
        self.assertEqual(flags, expected)
        self.assertEqual(oValues, {option.oValue for option in OPTIONS + COMMAND_OPTIONS if option.oValue})


class MessagesTests(SynchronousTestCase):
    def test_onlyAcceptedOptions(self):
        """
        Every option an error message of the package names is one both
        front doors take (or, for COMMAND_OPTIONS, twistd's own).
        """
        known = {"--" + option.name for option in OPTIONS + COMMAND_OPTIONS}
        package = os.path.dirname(sc_remoted.__file__)
        named = set()
        for directory, _, files in os.walk(package):
            for name in files:
                if name.endswith(".py"):
                    with open(os.path.join(directory, name)) as f:
                        tree = ast.parse(f.read())
                    for node in ast.walk(tree):
                        if isinstance(node, ast.Raise) and node.exc is not None:
                            for constant in ast.walk(node.exc):
                                if isinstance(constant, ast.Constant) and isinstance(constant.value, str):
                                    named.update(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", constant.value))
        self.assertIn("--insecure-sockets-dir", named)
        self.assertIn("--tls-passphrase-file", named)
        self.assertEqual(named - known, set())


class ConfigureTests(SynchronousTestCase):
    def setUp(self):
        self.directory = self.mktemp()

    def test_defaults(self):
        config = parse("--port", "31337", "--sockets", self.directory)
        self.assertEqual(config.zombieTime, 900)
        self.assertEqual(config.socketMode, 0o700)
        self.assertEqual(config.limits, Limits())
        self.assertEqual((config.port.host, config.port.port), (None, 31337))
        self.assertEqual(config.sockets, os.path.abspath(self.directory))
        self.assertFalse(config.debug)
        self.assertEqual(config.logLevel, LogLevel.info)

    def test_logLevel(self):
        """--log-level names one of twisted.logger's levels; --debug's events are at debug."""
        for name in ("debug", "info", "warn", "error", "critical"):
            config = parse("--port", "1", "--sockets", self.directory, "--log-level", name)
            self.assertEqual(config.logLevel, LogLevel.levelWithName(name))
        self.assertEqual(parse("--port", "1", "--sockets", self.directory, "--debug").logLevel, LogLevel.debug)
        config = parse("--port", "1", "--sockets", self.directory, "--debug", "--log-level", "debug")
        self.assertEqual(config.logLevel, LogLevel.debug)

    def test_logLevelRefused(self):
        """A level twisted.logger does not have, and --debug with a level that leaves its events out."""
        with self.assertRaises(UsageError) as caught:
            parse("--port", "1", "--sockets", self.directory, "--log-level", "warning")
        self.assertEqual(
            str(caught.exception), "--log-level must be one of debug, info, warn, error, critical, not 'warning'"
        )
        with self.assertRaises(UsageError) as caught:
            parse("--port", "1", "--sockets", self.directory, "--debug", "--log-level", "info")
        self.assertEqual(str(caught.exception), "--debug logs at level debug, which --log-level info leaves out")

    def test_immutable(self):
        config = parse("--port", "1", "--sockets", self.directory)
        with self.assertRaises(dataclasses.FrozenInstanceError):
            config.zombieTime = 5  # type: ignore[misc]

    def test_values(self):
        config = parse("-P", "127.0.0.1:1", "-U", self.directory, "-Z", "0", "--allow-group", "--allow-other",
                       "--debug", "--max-channels", "7", "--max-zombies", "8")
        self.assertEqual(config.socketMode, 0o777)
        self.assertEqual(config.zombieTime, 0)
        self.assertTrue(config.debug)
        self.assertEqual((config.limits.maxChannels, config.limits.maxZombies), (7, 8))

    def test_budgets(self):
        """Budgets in bytes, or with K, M or G (powers of 1024)."""
        config = parse("--port", "1", "--sockets", self.directory, "--channel-budget", "1000", "--vp-budget",
                       "64k", "--mux-client-budget", "3M", "--queue-budget", "1G")
        limits = config.limits
        self.assertEqual(
            (limits.channelBudget, limits.vantagePointBudget, limits.muxClientBudget, limits.processBudget),
            (1000, 64 * 1024, 3 * 1024 * 1024, 1024 * 1024 * 1024),
        )
        defaults = parse("--port", "1", "--sockets", self.directory).limits
        self.assertEqual((defaults.channelBudget, defaults.processBudget), (8 * 1024 * 1024, 256 * 1024 * 1024))

    def test_usageErrors(self):
        """A bad command line: exit status 2, with the usage."""
        for argv, message in [
            (["--sockets", self.directory], "--port is required"),
            (["--port", "1"], "--sockets is required"),
            (["--port", "99999", "--sockets", self.directory], "--port: port '99999' is not a number"),
            (["--port", "1", "--sockets", self.directory, "-Z", "10801"], "0 to 10800"),
            (["--port", "1", "--sockets", self.directory, "-Z", "abc"], "--zombie-time: 'abc' is not a whole number"),
            (["--port", "1", "--sockets", self.directory, "--max-channels", "0"], "--max-channels must be at least 1"),
            (["--port", "1", "--sockets", self.directory, "--channel-budget", "8MB"], "--channel-budget: '8MB' is not"),
            (["--port", "1", "--sockets", self.directory, "--vp-budget", "M"], "--vp-budget: 'M' is not a size"),
            (["--port", "1", "--sockets", self.directory, "--queue-budget", "0K"], "at least 1 byte"),
            (["--", "86", "--_shell-completion", "c"], "--_shell-completion takes SHELL:POSITION"),
            (["--port", "1", "--_shell-completion", "zsh:9"], "--_shell-completion takes SHELL:POSITION"),
            (["--port", "1", "-4", "-6", "--sockets", self.directory], "exclude each other"),
            (["--port", "127.0.0.1:1", "-6", "--sockets", self.directory], "IPv4 address, but --ipv6-only"),
            (["--port", "[::1]:1", "-4", "--sockets", self.directory], "IPv6 address, but --ipv4-only"),
            (["--port", "tcp:1", "-4", "--sockets", self.directory], "apply only to the PORT form"),
            (["--port", "1", "--sockets", self.directory, "--status-port", "nonsense:1"], "--status-port: bad"),
            (["--port", "1", "--mux-port", "[::1]"], "--mux-port: cannot parse"),
        ]:
            with self.assertRaises(UsageError, msg=argv) as caught:
                parse(*argv)
            self.assertFalse(isinstance(caught.exception, ConfigurationError), argv)
            self.assertIn(message, str(caught.exception), argv)

    def test_refusals(self):
        """Well-formed, but refused: exit status 1, one line."""
        for argv, message in [
            (["--port", "unix:/tmp/s", "--sockets", self.directory], "--port: 'unix:/tmp/s' is not TCP"),
            (["--port", "ssl:1", "--sockets", self.directory], "is not TCP"),
            (["--port", "systemd:domain=INET:index=0", "--sockets", self.directory], "is not TCP"),
            (["--port", "1", "--sockets", self.directory, "--status-port", "tcp:9"], "not a loopback address"),
            (["--port", "1", "--sockets", self.directory, "--status-port", "0.0.0.0:9"], "not a loopback"),
            (["--port", "1", "--sockets", self.directory, "--status-port", "systemd:domain=INET:index=0"],
             "cannot tell"),
            (["--port", "1", "--mux-port", "192.0.2.1:7000"], "--mux-port: '192.0.2.1:7000' is not a loopback"),
            (["--port", "1", "--mux", "/tmp/" + "m" * 110], "--mux /tmp/mmm"),
            (["--port", "1", "--mux", "/tmp/\n" + "m" * 110], "--mux /tmp/\\nmmm"),
        ]:
            with self.assertRaises(ConfigurationError, msg=argv) as caught:
                parse(*argv)
            self.assertIn(message, str(caught.exception), argv)
            self.assertNotIn("\n", str(caught.exception))

    def test_remoteAllowed(self):
        config = parse("--port", "1", "--sockets", self.directory, "--status-port", "tcp:9", "--status-allow-remote",
                       "--mux-port", "tcp:7000:interface=0.0.0.0", "--mux-port-insecure")
        self.assertEqual(config.statusPort.host, "")
        self.assertEqual(config.muxPort.host, "0.0.0.0")

    def test_statusAndMuxForms(self):
        """The same forms as --port; a bare PORT is on 127.0.0.1."""
        config = parse("--port", "1", "--sockets", self.directory, "--status-port", "127.0.0.1:9100",
                       "--mux-port", "[::1]:7000")
        self.assertEqual((config.statusPort.host, config.statusPort.port), ("127.0.0.1", 9100))
        self.assertEqual((config.muxPort.type, config.muxPort.host), ("tcp6", "::1"))

    def test_chroot(self):
        """With a chroot every path names a file inside it; outside() is where it is before."""
        config = parse("--port", "1", "--sockets", "/run/scamper", "--mux", "mux", chroot="/srv/jail")
        self.assertEqual((config.sockets, config.mux, config.chroot), ("/run/scamper", "/mux", "/srv/jail"))
        self.assertEqual(config.outside(config.sockets), "/srv/jail/run/scamper")
        self.assertEqual(chrootedPath("../../etc/x", "/srv/jail"), "/etc/x")
        self.assertEqual(chrootedPath("a/b", None), os.path.abspath("a/b"))
        self.assertEqual(chrootedPath("/a/b", None, outside=True), "/a/b")

    def test_configureMapping(self):
        """configure() takes any mapping, flags as booleans."""
        config = configure({"port": "1", "mux": "/tmp/m", "debug": True, "allow-group": 1})
        self.assertTrue(config.debug)
        self.assertEqual(config.socketMode, 0o770)


class NoFileTests(SynchronousTestCase):
    def test_parsingReadsNoFile(self):
        """
        Without TLS, parsing touches no file, not even those it names: the
        checks that need them are made at startup.
        """

        def refuse(*args, **kwargs):
            raise AssertionError("file system touched while parsing: %r" % (args,))

        for module, name in [(builtins, "open"), (os, "open"), (os, "stat"), (os, "lstat"), (os, "listdir"),
                             (os, "access"), (os, "scandir")]:
            self.patch(module, name, refuse)
        parse("--port", "1", "--sockets", "/nonexistent/sockets", "--mux", "/nonexistent/mux",
              "--metadata", "/nonexistent/meta", "--status-port", "unix:/nonexistent/status",
              "--mux-port", r"tcp6:7000:interface=\:\:1", "--insecure-sockets-dir")
