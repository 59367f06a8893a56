"""
Tests for the resource limits (L{sc_remoted.limits}): each costs only the
connection that crosses it, is logged, and leaves everyone else working.
"""

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from sc_remoted.limits import Limits
from .fakes import FakeClient, makeController
from .peer_twisted import MemoryScamper


def magic(n):
    return n.to_bytes(8, "big")


class LimitTests(SynchronousTestCase):
    def controller(self, **limits):
        return makeController(zombieTime=100, limits=Limits(**limits))

    def connect(self, controller, host="127.0.0.1", port=40000, n=1):
        scamper = MemoryScamper(controller, host=host, port=port, magic=magic(n))
        scamper.register()
        return scamper

    def limitEvents(self, events):
        return [e for e in events if e.get("sc_event", "").startswith("limit.")]

    def test_maxConnections(self):
        controller = self.controller(maxConnections=2)
        first = self.connect(controller, port=1, n=1)
        MemoryScamper(controller, port=2)
        with capturedLogs() as events:
            third = MemoryScamper(controller, port=3)
        self.assertTrue(third.closed)
        [event] = self.limitEvents(events)
        self.assertEqual((event["limit"], event["peer"]), ("max-connections", "127.0.0.1:3"))
        self.assertFalse(first.closed)
        first.lose()
        fourth = self.connect(controller, port=4, n=4)
        self.assertFalse(fourth.closed)
        self.assertEqual(len(fourth.received()), 1)

    def test_refusedConnectionNotCounted(self):
        """Closing a refused connection does not free a slot it never had."""
        controller = self.controller(maxConnections=1)
        self.connect(controller, port=1, n=1)
        refused = MemoryScamper(controller, port=2)
        refused.lose()
        self.assertTrue(MemoryScamper(controller, port=3).closed)

    def test_maxPerAddress(self):
        controller = self.controller(maxPerAddress=1)
        self.connect(controller, host="192.0.2.1", port=1, n=1)
        with capturedLogs() as events:
            second = MemoryScamper(controller, host="192.0.2.1", port=2)
        self.assertTrue(second.closed)
        self.assertEqual(self.limitEvents(events)[0]["limit"], "max-per-address")
        other = self.connect(controller, host="192.0.2.2", port=3, n=3)
        self.assertFalse(other.closed)

    def test_maxChannels(self):
        controller = self.controller(maxChannels=2)
        scamper = self.connect(controller, port=42694)
        scamper.received()
        clients = [FakeClient(controller.reactor, "127.0.0.1:42694") for _ in range(2)]
        with capturedLogs() as events:
            third = FakeClient(controller.reactor, "127.0.0.1:42694")
        self.assertTrue(third.transport.disconnecting)
        [event] = self.limitEvents(events)
        self.assertEqual((event["limit"], event["vp"]), ("max-channels", "127.0.0.1:42694"))
        self.assertEqual(len(scamper.received()), 2)
        third.close()
        self.assertEqual(scamper.received(), [])
        # A closed client's channel counts until scamper finishes it.
        clients[0].close()
        self.assertTrue(FakeClient(controller.reactor, "127.0.0.1:42694").transport.disconnecting)
        scamper.sendFin(1)
        fourth = FakeClient(controller.reactor, "127.0.0.1:42694")
        self.assertFalse(fourth.transport.disconnecting)

    def test_maxZombies(self):
        """Past the zombie limit the longest-waiting zombie is freed."""
        controller = self.controller(maxZombies=2)
        scampers = [self.connect(controller, port=n, n=n) for n in (1, 2, 3)]
        for scamper in scampers[:2]:
            scamper.lose()
        with capturedLogs() as events:
            scampers[2].lose()
        self.assertEqual([vp.identifier for vp in controller.vantagePoints()], [2, 3])
        [event] = self.limitEvents(events)
        self.assertEqual(event["vp"], "127.0.0.1:1")
