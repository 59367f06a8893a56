"""
Smoke test of the benchmark (bench/sc_bench.py): each scenario in
C{--quick} mode against our daemon, with tiny sizes (2 MB, 10 VPs, 50
churn cycles), checking only correctness: every byte verified, every
socket created, nothing leaked.  No timing is asserted.  One more test
runs two scenarios against the C sc_remoted where Debian's scamper
package is installed.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SkipTest, TestCase

from .realprocs import twistdScript

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(os.path.dirname(HERE), "bench", "sc_bench.py")
QUICK_BYTES = 2_000_000


class BenchSmokeTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        if not os.path.exists(BENCH):
            raise SkipTest("bench/sc_bench.py is not in this tree")
        twistdScript()  # skips where there is no twistd to run our daemon

    def bench(self, scenario: str, daemon: str = "ours", *options: str) -> dict:
        """
        Run one scenario in quick mode, check that each of its cases was
        correct, and return the (last) case's result.
        """
        directory = tempfile.mkdtemp(prefix="scbt")
        self.addCleanup(shutil.rmtree, directory, True)
        out = os.path.join(directory, "results.json")
        proc = subprocess.run(
            [sys.executable, BENCH, "--quick", "--no-pin", "--daemons", daemon, "--scenarios", scenario, "--json", out,
             *options],
            capture_output=True,
            text=True,
            timeout=150,
        )
        self.assertTrue(os.path.exists(out), "no results; exit %s\n%s\n%s" % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
        with open(out) as f:
            results = json.load(f)["results"]
        self.assertEqual(proc.returncode, 0, proc.stdout[-3000:] + proc.stderr[-3000:])
        self.assertTrue(results)
        for entry in results:
            (run,) = entry["runs"][daemon]
            self.assertTrue(run["ok"], run)
            self.assertNotIn("error", run)
        return run

    def test_down(self) -> None:
        """Every byte scamper streamed reached the client, unchanged."""
        run = self.bench("down")
        self.assertEqual(run["verified bytes"], QUICK_BYTES)

    def test_up(self) -> None:
        """Every byte the client wrote reached scamper, unchanged."""
        run = self.bench("up")
        self.assertEqual(run["verified bytes"], QUICK_BYTES)

    def test_latency(self) -> None:
        """Request/response round trips on 1, 16 and 64 channels all answered."""
        run = self.bench("latency")
        self.assertGreater(run["samples"], 0)

    def test_scale(self) -> None:
        """Every VP got its socket and answered one round trip."""
        run = self.bench("scale")
        self.assertEqual(run["sockets"], 10)
        self.assertEqual(run["round trips ok"], 10)

    def test_churn(self) -> None:
        """Connect/register/disconnect cycles leave no socket file or fd behind."""
        run = self.bench("churn")
        self.assertEqual(run["socket files left"], 0)
        self.assertEqual(run["sockets missing at MASTER_ID"], 0)
        self.assertLessEqual(run["fd growth"], 0)

    def test_socketBase(self) -> None:
        """--socket-base: each daemon's directory, sockets and log inside, is made there."""
        base = tempfile.mkdtemp(prefix="scbb", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.addCleanup(shutil.rmtree, base, True)
        run = self.bench("churn", "ours", "--socket-base", base, "--keep-logs")
        self.assertEqual(run["socket files left"], 0)
        (kept,) = os.listdir(base)
        self.assertTrue(kept.startswith("scb"), kept)
        self.assertEqual(sorted(os.listdir(os.path.join(base, kept))), ["daemon.log", "s", "stdout.log"])

    def test_oursOption(self) -> None:
        """--ours-option: our daemon runs with it (--log-level warn: no arrival in its log)."""
        logged = {}
        for options in ((), ("--ours-option=--log-level", "--ours-option=warn")):
            base = tempfile.mkdtemp(prefix="scbo")
            self.addCleanup(shutil.rmtree, base, True)
            self.bench("churn", "ours", "--socket-base", base, "--keep-logs", *options)
            (kept,) = os.listdir(base)
            with open(os.path.join(base, kept, "daemon.log")) as f:
                logged[options] = "registered from" in f.read()
        self.assertEqual(list(logged.values()), [True, False])

    def test_mixed(self) -> None:
        """A small fleet with results and commands: every result byte checked, every command answered."""
        run = self.bench("mixed")
        self.assertGreater(run["messages"], 10 * 2 * 10)
        self.assertGreater(run["commands/s"], 0)

    def test_c_daemon(self) -> None:
        """The generator also drives the C sc_remoted (the baseline)."""
        if not os.path.exists("/usr/bin/sc_remoted"):
            raise SkipTest("the C sc_remoted is not installed (apt-get install scamper)")
        run = self.bench("down", daemon="c")
        self.assertEqual(run["verified bytes"], QUICK_BYTES)
        run = self.bench("churn", daemon="c")
        self.assertEqual(run["socket files left"], 0)
