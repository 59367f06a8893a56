"""
The package's shape, as docs/architecture.rst describes it: dependencies
point one way (no import circle, type-only imports included), and the
session engine and its lifecycle table import nothing that does I/O.
"""

import ast
import os
from typing import Dict, List, Set

from twisted.trial.unittest import SynchronousTestCase

import sc_remoted

PACKAGE = os.path.dirname(os.path.abspath(sc_remoted.__file__))


def moduleFiles() -> Dict[str, str]:
    """Every module of the package, by dotted name, with its file."""
    modules = {}
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
            if relative.endswith(".__init__"):
                relative = relative[: -len(".__init__")]
            modules[relative] = path
    return modules


def importedNames(module: str, path: str) -> Set[str]:
    """Every dotted name C{module} imports, anywhere in its body."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = base + ("." + node.module if node.module else "")
            else:
                target = node.module or ""
            names.add(target)
            names.update(target + "." + alias.name for alias in node.names)
    return names


def dependencyGraph() -> Dict[str, Set[str]]:
    modules = moduleFiles()
    return {
        module: {name for name in importedNames(module, path) if name in modules and name != module}
        for module, path in modules.items()
    }


def findCycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Each back edge of a depth-first walk, as the circle it closes."""
    cycles: List[List[str]] = []
    state: Dict[str, str] = {}
    stack: List[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for successor in sorted(graph[node]):
            if state.get(successor) == "open":
                cycles.append(stack[stack.index(successor) :] + [successor])
            elif successor not in state:
                visit(successor)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


class DependencyTests(SynchronousTestCase):
    def test_cycleFinder(self):
        """The finder reports a circle, so that an empty answer means something."""
        self.assertEqual(findCycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}), [["a", "b", "c", "a"]])
        self.assertEqual(findCycles({"a": {"b"}, "b": set()}), [])

    def test_noImportCircle(self):
        """No module of the package imports, even for types only, one that imports it back."""
        graph = dependencyGraph()
        self.assertIn("sc_remoted.engine", graph)
        self.assertEqual(findCycles(graph), [])

    def test_engineIsSansIO(self):
        """The engine and its lifecycle table import neither Twisted nor sockets."""
        modules = moduleFiles()
        for module in ("sc_remoted.engine", "sc_remoted.lifecycle", "sc_remoted.wire"):
            imported = importedNames(module, modules[module])
            forbidden = {name for name in imported if name.split(".")[0] in ("twisted", "socket", "select", "time")}
            self.assertEqual(forbidden, set(), module)

    def test_layers(self):
        """Codecs and the engine never import an adapter or the service wiring."""
        graph = dependencyGraph()
        adapters = {
            "sc_remoted.scamper",
            "sc_remoted.local",
            "sc_remoted.controller",
            "sc_remoted.mux.server",
            "sc_remoted.status",
            "sc_remoted.service",
            "sc_remoted.tap",
        }
        for module in ("sc_remoted.wire", "sc_remoted.engine", "sc_remoted.lifecycle", "sc_remoted.mux.codec"):
            self.assertEqual(graph[module] & adapters, set(), module)
