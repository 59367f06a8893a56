"""
Tests for the packaging (setup.py): every distribution the package
imports is an install requirement, and the README names them; a
C{pip install} of the tree holds the code, the command, the manual page
and the example files; the Python versions claimed are a consistent
range that holds the one running the suite, and the oldest of them can
parse every module; and the shipped systemd unit's command line starts
the daemon.
"""

import ast
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from typing import Dict, List, Set

from twisted.internet import defer, reactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody

import sc_remoted

from .realprocs import LOOPBACK, freePort, makeSocketsDirectory, runToCompletion, sleep, spawn
from .test_cli import COMMAND

REPO = os.path.dirname(os.path.dirname(os.path.abspath(sc_remoted.__file__)))

# Installed modules: the package and its twistd plugin.
INSTALLED_SOURCES = [os.path.join(REPO, "sc_remoted"), os.path.join(REPO, "twisted", "plugins")]

# Requirements that no module imports, and why they are needed anyway.
INDIRECT_REQUIREMENTS = {"service-identity": "Twisted checks a TLS peer's name with it"}

# What a pip install puts under the prefix, besides the code.
DATA_FILES = [
    "share/man/man1/sc_remoted.1",
    "share/doc/sc_remoted/sc_remoted.service",
    "share/doc/sc_remoted/grafana-dashboard.json",
    "share/doc/sc_remoted/prometheus-alerts.yml",
]

UNIT = os.path.join(REPO, "docs", "sc_remoted.service")
UNIT_PROGRAM = "/opt/sc_remoted/bin/sc_remoted"


def setupArguments() -> Dict[str, object]:
    """The literal keyword arguments of setup.py's C{setup()} call."""
    with open(os.path.join(REPO, "setup.py")) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            arguments = {}
            for keyword in node.keywords:
                try:
                    arguments[keyword.arg] = ast.literal_eval(keyword.value)
                except ValueError:
                    pass  # computed, e.g. long_description
            return arguments
    raise AssertionError("no setup() call in setup.py")


def projectName(requirement: str) -> str:
    """C{"Twisted>=22.10"} -> C{"twisted"} (PEP 503 normalized)."""
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def pythonFiles(roots: List[str]) -> List[str]:
    found = []
    for root in roots:
        for directory, _, files in os.walk(root):
            found.extend(os.path.join(directory, name) for name in sorted(files) if name.endswith(".py"))
    return found


def absoluteImports(path: str) -> Set[str]:
    """The dotted names of every absolute import in a module, anywhere in it."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def isStandardLibrary(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names


def providedModules(distribution: str) -> Set[str]:
    """
    The modules and regular packages an installed distribution provides,
    as dotted names: C{zope.interface} (not C{zope}, a namespace that
    other distributions share), C{twisted}, C{OpenSSL}.
    """
    files = importlib.metadata.distribution(distribution).files or []
    paths = {str(f).replace(os.sep, "/") for f in files}
    modules = set()
    for path in paths:
        if path.endswith("/__init__.py"):
            modules.add(path[: -len("/__init__.py")].replace("/", "."))
        elif path.endswith(".py") and "/" not in path:
            modules.add(path[:-3])
    return modules


def providedBy(module: str, modules: Set[str]) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:n]) in modules for n in range(1, len(parts) + 1))


class RequirementsTests(SynchronousTestCase):
    def setUp(self):
        self.requirements = {projectName(r): r for r in setupArguments()["install_requires"]}
        self.imported = set()
        for path in pythonFiles(INSTALLED_SOURCES):
            self.imported.update(absoluteImports(path))
        self.thirdParty = {
            name for name in self.imported if not isStandardLibrary(name) and name.split(".")[0] != "sc_remoted"
        }

    def test_walkerSeesThirdParty(self):
        """The walk finds what is known to be imported, so an empty difference means something."""
        for module in ["twisted.internet.endpoints", "cryptography.x509.oid", "OpenSSL", "zope.interface"]:
            self.assertIn(module, self.imported)
        self.assertNotIn("os", self.thirdParty)
        self.assertTrue(isStandardLibrary("json") and not isStandardLibrary("twisted"))

    def test_importsAreRequirements(self):
        """Each module imported from outside the package is provided by an install requirement."""
        provided = {name: providedModules(name) for name in self.requirements}
        missing = sorted(
            module for module in self.thirdParty if not any(providedBy(module, mods) for mods in provided.values())
        )
        self.assertEqual(missing, [], "imported, but no install requirement provides them")

    def test_requirementsAreUsed(self):
        """Each install requirement is imported, or needed for a stated reason."""
        unused = []
        for name in self.requirements:
            modules = providedModules(name)
            if not any(providedBy(module, modules) for module in self.thirdParty) and name not in INDIRECT_REQUIREMENTS:
                unused.append(name)
        self.assertEqual(unused, [])
        self.assertLessEqual(set(INDIRECT_REQUIREMENTS), set(self.requirements))

    def test_cryptographyAtRunTime(self):
        """tls.py imports cryptography: a run-time requirement, not only the tests'."""
        self.assertIn("cryptography", self.requirements)
        for extra in setupArguments()["extras_require"].values():
            self.assertNotIn("cryptography", [projectName(r) for r in extra])

    def test_readmeListsThem(self):
        with open(os.path.join(REPO, "README.rst")) as f:
            readme = f.read()
        install = readme.split("\nInstall\n-------\n", 1)[1].split("\nRun it\n", 1)[0]
        for requirement in self.requirements.values():
            name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
            self.assertIn(name, install)
        for path in DATA_FILES:
            self.assertIn(path.rsplit("/", 1)[-1], install)


class PythonVersionTests(SynchronousTestCase):
    """The versions setup.py claims are ones this code can run on."""

    def claimed(self) -> List[tuple]:
        versions = []
        for classifier in setupArguments()["classifiers"]:
            match = re.match(r"Programming Language :: Python :: (3)\.([0-9]+)$", classifier)
            if match:
                versions.append((int(match.group(1)), int(match.group(2))))
        return sorted(versions)

    def test_claimsAreConsistent(self):
        versions = self.claimed()
        self.assertEqual(versions, [(3, minor) for minor in range(versions[0][1], versions[-1][1] + 1)])
        self.assertEqual(setupArguments()["python_requires"], ">=%d.%d" % versions[0])
        self.assertIn(sys.version_info[:2], versions, "the suite runs on a Python that setup.py does not claim")
        with open(os.path.join(REPO, "ruff.toml")) as f:
            self.assertIn('target-version = "py%d%d"' % versions[0], f.read())
        with open(os.path.join(REPO, "mypy.ini")) as f:
            self.assertIn("python_version = %d.%d" % versions[0], f.read())

    def test_oldestParses(self):
        """
        Every module of the package and of the tests is valid syntax for
        the oldest version claimed, which CI does not run: no C{except*}
        or C{type X = ...} creeps in from a newer one.
        """
        oldest = self.claimed()[0]
        roots = INSTALLED_SOURCES + [os.path.join(REPO, name) for name in ("tests", "bench", "tools", "examples")]
        problems = []
        for path in pythonFiles(roots):
            with open(path) as f:
                try:
                    ast.parse(f.read(), path, feature_version=oldest)
                except SyntaxError as e:
                    problems.append("%s: %s" % (path, e))
        self.assertEqual(problems, [])


class PipInstallTests(TestCase):
    """C{pip install} of a copy of the tree, offline, into a fresh --target."""

    timeout = 240

    @defer.inlineCallbacks
    def test_installed(self):
        for module in ("setuptools", "wheel"):
            if importlib.util.find_spec(module) is None:
                raise SkipTest("%s is not installed (pip install '.[test]')" % (module,))
        work = tempfile.mkdtemp(prefix="scr-pip-")
        self.addCleanup(shutil.rmtree, work, True)
        source = os.path.join(work, "source")
        shutil.copytree(
            REPO,
            source,
            ignore=shutil.ignore_patterns(
                ".git", "_trial_temp*", ".mypy_cache", ".ruff_cache", ".hypothesis", ".tox", "build",
                "*.egg-info", "__pycache__", "*.pid",
            ),
        )
        target = os.path.join(work, "target")
        result = yield runToCompletion(
            reactor,
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
             "--disable-pip-version-check", "--target", target, source],
            180,
            self,
        )
        self.assertEqual(result.exitCode, 0, result)
        for path in DATA_FILES + ["sc_remoted/statuspage.py", "twisted/plugins/sc_remoted_dropin.py", "bin/sc_remoted"]:
            self.assertTrue(os.path.isfile(os.path.join(target, path)), path)
        for name in DATA_FILES:
            with open(os.path.join(target, name), "rb") as installed, open(
                os.path.join(REPO, "docs", name.rsplit("/", 1)[-1]), "rb"
            ) as original:
                self.assertEqual(installed.read(), original.read(), name)
        [info] = [name for name in os.listdir(target) if name.endswith(".dist-info")]
        with open(os.path.join(target, info, "METADATA")) as f:
            metadata = f.read()
        self.assertIn("Requires-Dist: cryptography", metadata)
        self.assertIn("Requires-Python: >=3.10", metadata)


def unitCommand() -> List[str]:
    with open(UNIT) as f:
        [line] = [line for line in f if line.startswith("ExecStart=")]
    return line[len("ExecStart="):].split()


class UnitTests(TestCase):
    """docs/sc_remoted.service."""

    timeout = 60

    def test_program(self):
        """Not /usr/local/bin (pip's scripts dir varies): the venv the README installs into."""
        self.assertEqual(unitCommand()[0], UNIT_PROGRAM)
        with open(os.path.join(REPO, "README.rst")) as f:
            self.assertIn(os.path.dirname(UNIT_PROGRAM), f.read())

    def test_statusPort(self):
        """Outside Prometheus's exporter range (9100 is node_exporter) and its own 9090-9094."""
        arguments = unitCommand()
        port = int(arguments[arguments.index("--status-port") + 1])
        self.assertFalse(9090 <= port <= 9999, port)

    @defer.inlineCallbacks
    def test_commandStarts(self):
        """
        The unit's command line, with this machine's free ports and a
        private sockets directory, starts the daemon and serves the page.
        """
        arguments = unitCommand()[1:]
        replace = {
            "-P": "%s:%d" % (LOOPBACK, freePort()),
            "-U": makeSocketsDirectory(self),
            "--status-port": str(freePort()),
        }
        for flag, value in replace.items():
            arguments[arguments.index(flag) + 1] = value
        daemon = spawn(self, reactor, COMMAND + arguments)
        url = ("http://%s:%s/" % (LOOPBACK, replace["--status-port"])).encode("ascii")
        body = None
        for _ in range(100):
            if not daemon.running:
                break
            try:
                response = yield Agent(reactor).request(b"GET", url)
                body = yield readBody(response)
                break
            except Exception:
                yield sleep(reactor, 0.2)
        self.assertIsNotNone(body, daemon.output())
        self.assertIn(b"<title>sc_remoted ", body)
        yield daemon.stop()
