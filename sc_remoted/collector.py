"""
The pace of CPython's cyclic garbage collector in the daemon's process.

CPython collects its youngest generation after every 700 allocations of
container objects (net of deallocations), and promotes what is alive at
that moment; once the promoted objects pass a quarter of the oldest
generation, it collects everything, every object the process tracks.
A daemon's objects are mostly its vantage points' (about 31 tracked
objects each), so that pause grows with the fleet: with 9700 VPs, six
full collections of 53 000 to 305 000 objects took 27 to 151 ms each,
0.6 s in all, and stalled every connection meanwhile; two came during
the round trips on fresh channels, the cause of their 200-ms p99
(docs/performance.rst).  What fills the old generation is short-lived:
the objects of the channels in flight, caught alive by a collection of
the young one.

Collecting the young generation after L{YOUNG_GENERATION} allocations
instead catches fewer of them in flight: the same run made no full
collection, spent 0.15-0.21 s in the collector, and its longest pause
was 38 ms.  What it costs is the cyclic garbage that waits longer to
be found, at most that many objects.  Only the daemon's process is paced
so (L{sc_remoted.process}); an application that embeds the service tree
keeps its own settings.
"""

import gc

YOUNG_GENERATION = 10_000


def paceCollector(young: int = YOUNG_GENERATION) -> None:
    """Collect the youngest generation after C{young} allocations; the older generations keep their thresholds."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
