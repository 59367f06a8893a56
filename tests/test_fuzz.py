"""
The coverage-guided fuzz harnesses (tools/fuzz.py), each run for a short
fixed number of executions: the long runs are in docs/security.rst.
"""

import os
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SkipTest, TestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(REPO, "tools", "fuzz.py")
RUNS = 3000

try:
    import atheris  # noqa: F401
except ImportError:  # pragma: no cover (CI installs it: setup.py's test extra)
    atheris = None


class HarnessTests(TestCase):
    def fuzz(self, harness: str) -> None:
        if atheris is None:
            raise SkipTest("atheris is not installed (pip install atheris)")
        corpus = tempfile.mkdtemp(prefix="scr-fuzz-")
        crashes = tempfile.mkdtemp(prefix="scr-crash-")
        process = subprocess.run(
            [sys.executable, FUZZ, harness, "-runs=%d" % RUNS, "-seed=1", corpus],
            cwd=crashes,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=240,
        )
        output = process.stdout.decode("utf-8", "replace")
        tail = "\n".join(line for line in output.splitlines() if not line.startswith("INFO: Instrumenting"))[-3000:]
        self.assertEqual(process.returncode, 0, tail)
        self.assertIn("Done %d runs" % (RUNS,), output, tail)
        self.assertEqual(os.listdir(crashes), [], tail)

    def test_wire(self):
        self.fuzz("wire")

    def test_engine(self):
        self.fuzz("engine")

    def test_daemon(self):
        self.fuzz("daemon")

    def test_mux(self):
        self.fuzz("mux")

    def test_metadata(self):
        self.fuzz("metadata")

    def test_options(self):
        self.fuzz("options")
