"""
micro: the CPU cost of the daemon's own code, in-process, without sockets.

Where bench/sc_bench.py measures whole daemons over loopback (and so
Twisted, the kernel and the machine's noise), this drives one checkout's
sc_remoted objects over StringTransports and reports process CPU time
per unit of work.  Use it to compare two checkouts change by change:

    python3 bench/micro.py                      # this checkout
    python3 bench/micro.py --repo /path/to/other/checkout

The other checkout must have the session engine (sc_remoted/engine.py).

  decode      Link.receive on 256 KiB reads of a stream of data frames
              (1000- and 8000-byte payloads): us per read.
  roundtrip   a 20-byte command from a local client to scamper, then
              scamper's ACK and a reply in one read back to the client:
              us per round trip.
  log         one info event (a vantage point's arrival, as the
              controller logs it) through the text and the JSON
              observers to /dev/null: us per event.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def decode(size: int, reads: int = 400) -> float:
    from sc_remoted.engine import Link, Session
    from sc_remoted.lifecycle import Input
    from sc_remoted.wire import encodeFrame

    session = Session()
    session.advance(Input.REGISTERED)
    channel, _ = session.openChannel(object())
    link = Link(0.0)
    link.attach(session)
    payload = b"x" * size
    frames = [encodeFrame(seq, channel.number, payload) for seq in range(reads * 262144 // (size + 10) + 1)]
    stream = b"".join(frames)
    cut = [stream[i : i + 262144] for i in range(0, len(stream), 262144)]
    started = time.process_time()
    for data in cut:
        result = link.receive(data, 1.0)
        assert result.error is None, result.error
    return (time.process_time() - started) / len(cut) * 1e6


def roundTrip(count: int = 20000) -> float:
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from sc_remoted.controller import Controller
    from sc_remoted.local import LocalChannelFactory
    from sc_remoted.wire import FrameDecoder, encodeAck, encodeFrame, encodeMasterNew

    controller = Controller(MemoryReactorClock(), None)
    address = IPv4Address("TCP", "127.0.0.1", 1000)
    scamper = controller.scamperFactory().buildProtocol(address)
    toScamper = StringTransport(peerAddress=address)
    scamper.makeConnection(toScamper)
    scamper.dataReceived(encodeMasterNew(b"micro-01"))
    [vp] = controller.vantagePoints()
    client = LocalChannelFactory(vp).buildProtocol(None)
    toClient = StringTransport()
    client.makeConnection(toClient)
    decoder = FrameDecoder()
    decoder.feed(toScamper.value())
    toScamper.clear()
    scamper.dataReceived(encodeAck(0, 0))
    number = client.number
    started = time.process_time()
    for seq in range(count):
        client.dataReceived(b"ping -c 1 127.0.0.1\n")
        [frame] = decoder.feed(toScamper.value())
        toScamper.clear()
        scamper.dataReceived(encodeAck(seq, frame.seq) + encodeFrame(seq, number, b"OK id-%d\n" % seq))
        decoder.feed(toScamper.value())
        toScamper.clear()
        toClient.clear()
    return (time.process_time() - started) / count * 1e6


def logEvents(kind: str, count: int = 20000) -> float:
    from sc_remoted import logs

    try:  # the daemon's own logger, where the checkout has one
        from sc_remoted.eventlog import EventLogger as Logger
    except ImportError:
        from twisted.logger import Logger

    with open(os.devnull, "w") as sink:
        observer = logs.textObserver(sink) if kind == "text" else logs.jsonObserver(sink)
        log = Logger(namespace="sc_remoted.controller", observer=observer)
        started = time.process_time()
        for n in range(count):
            log.info(
                "{vp}: registered from {peer}",
                vp="vp1-192.0.2.1:%d" % (n,),
                peer="192.0.2.1:%d" % (n,),
                monitorname="vp1",
                identifier=n,
                sc_event="vp.registered",
            )
        return (time.process_time() - started) / count * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=os.path.dirname(HERE), help="the checkout to measure")
    options = parser.parse_args(argv)
    sys.path.insert(0, os.path.abspath(options.repo))
    import sc_remoted

    print("checkout: %s" % (os.path.dirname(os.path.dirname(os.path.abspath(sc_remoted.__file__))),))
    for size in (1000, 8000):
        print("decode %5d-byte frames: %7.1f us per 256 KiB read" % (size, decode(size)))
    print("command round trip:       %7.1f us" % (roundTrip(),))
    for kind in ("text", "json"):
        print("log event, %-4s observer:  %7.1f us" % (kind, logEvents(kind)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
