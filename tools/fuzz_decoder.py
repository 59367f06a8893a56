#!/usr/bin/env python3
"""
Fuzz the scamper-side decoder: L{sc_remoted.wire.FrameDecoder},
L{sc_remoted.wire.parseControl} and the daemon's handling of a
connection's bytes (L{sc_remoted.scamper.ScamperProtocol.dataReceived}),
with hypothesis generating byte streams: pure garbage, and well-formed
frames mutated (bit flips, truncation, splicing) so that the fuzzer gets
past the header checks.

    python3 tools/fuzz_decoder.py --cases 100000 [--seed N]

Each case must end with the decoder accounting for every byte,
parseControl returning a message or raising WireError, and the daemon
neither raising nor harming a bystander vantage point.  Exits non-zero
with the smallest failing input if one is found.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sc_remoted import wire  # noqa: E402
from tests.fakes import FakeClient, FakeScamper, makeController  # noqa: E402

u32 = st.integers(0, 0xFFFFFFFF)
controlPayloads = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda m, n: wire.encodeMasterNew(m, n)[10:], st.binary(min_size=1, max_size=20), st.sampled_from([None, "vp", "a.b-c"])),
    st.builds(lambda m, a, b, c: wire.encodeMasterRes(m, a, b, c)[10:], st.binary(min_size=1, max_size=20), u32, u32, u32),
    st.builds(wire.channelFinPayload, st.integers(0, 4)),
    st.builds(wire.channelNewPayload, st.integers(0, 4)),
    st.builds(lambda s, a: wire.encodeAck(s, a)[10:], u32, st.integers(0, 4)),
    st.just(b"\x04"),
)
frames = st.builds(
    lambda seq, channel, payload: wire.encodeFrame(seq, channel, payload),
    st.integers(0, 6) | u32,
    st.integers(0, 3) | u32,
    controlPayloads,
)


@st.composite
def streams(draw):
    pieces = draw(st.lists(frames | st.binary(max_size=30), max_size=12))
    data = bytearray(b"".join(pieces))
    for _ in range(draw(st.integers(0, 3))):
        if data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    if data and draw(st.booleans()):
        del data[draw(st.integers(0, len(data))):]
    return bytes(data)


cases = 0


def check(stream, cutPoints):
    global cases
    cases += 1
    decoder = wire.FrameDecoder()
    got = []
    start = 0
    for point in sorted(p % (len(stream) + 1) for p in cutPoints) + [len(stream)]:
        got.extend(decoder.feed(stream[start:point]))
        start = max(start, point)
    rebuilt = b"".join(wire.encodeFrame(*f) for f in got)
    assert rebuilt == stream[: len(rebuilt)] and len(rebuilt) + decoder.buffered == len(stream)
    for frame in got:
        wire.describeFrame(frame)
        if frame.channel == 0:
            try:
                wire.parseControl(frame.payload)
            except wire.WireError:
                pass

    controller = makeController()
    bystander = FakeScamper(controller, port=1)
    bystander.send(wire.encodeMasterNew(b"bystande"))
    client = FakeClient(controller.reactor, "127.0.0.1:1")
    bystander.received()
    for registered in (False, True):
        target = FakeScamper(controller, port=2 + registered)
        if registered:
            target.send(wire.encodeMasterNew(b"target!!"))
        target.send(stream)  # must not raise
        if target.closed:
            assert target.protocol.vp is None
        target.lose()
    bystander.send(wire.encodeAck(0, 0))
    client.write(b"x")
    assert [f.payload for f in bystander.received() if f.channel == 1] == [b"x"]
    bystander.send(wire.encodeFrame(0, 1, b"y"))
    assert client.read() == b"y" and not bystander.closed
    controller.stopService()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10000, help="examples to run (default 10000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed, for a replay")
    args = parser.parse_args()
    test = settings(
        max_examples=args.cases,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )(given(streams(), st.lists(st.integers(0, 1 << 16), max_size=5))(check))
    if args.seed is not None:
        test = seed(args.seed)(test)
    started = time.monotonic()
    test()
    print("fuzz_decoder: %d cases, no failure, %.1f s" % (cases, time.monotonic() - started))


if __name__ == "__main__":
    main()
