"""
Tests for L{sc_remoted.collector}, and that the daemon's process, not
an application embedding the service tree, is paced by it.
"""

import gc

from twisted.trial.unittest import SynchronousTestCase

from sc_remoted.collector import YOUNG_GENERATION, paceCollector


class PaceCollectorTests(SynchronousTestCase):
    def setUp(self):
        self.addCleanup(gc.set_threshold, *gc.get_threshold())

    def test_youngGenerationOnly(self):
        """The youngest generation's threshold changes; the older two keep theirs."""
        gc.set_threshold(700, 11, 12)
        paceCollector(5000)
        self.assertEqual(gc.get_threshold(), (5000, 11, 12))

    def test_default(self):
        """By default, the daemon's figure, well above CPython's 700."""
        paceCollector()
        self.assertEqual(gc.get_threshold()[0], YOUNG_GENERATION)
        self.assertGreater(YOUNG_GENERATION, 700)
