#!/usr/bin/env python3
"""
Coverage-guided fuzzing (atheris, libFuzzer) of everything that parses a
peer's or an operator's bytes.

    python3 tools/fuzz.py HARNESS [-runs=N] [other libFuzzer flags]
    python3 tools/fuzz.py all -runs=1000000      # each harness in turn

Harnesses, and what each asserts on every input:

  wire      FrameDecoder over the input cut at fuzzed points: every byte
            accounted for, frames re-encode to the stream; parseControl
            returns a message or raises WireError, and a parsed message
            encodes to bytes that parse back to it.
  engine    the session engine (Link.receive) before and after
            registration, reads cut at fuzzed points: it never raises;
            an error leaves nothing for scamper; otherwise the bytes for
            scamper are exactly the ACKs of the frames it acknowledged,
            deliveries go only to open channels, and the sequence numbers
            advance by the frames acknowledged.
  daemon    the fuzzed bytes from one scamper connection, registered or
            not, through the real ScamperProtocol and Controller: no
            exception, and a bystander vantage point still relays both ways.
  mux       MuxDecoder and the mux parseControl: only MuxError subclasses
            escape; a parsed message encodes to bytes that parse back to it.
  metadata  parseMetadata on the input as text: a result or MetadataError;
            every entry is a tuple of (attribute number, value) pairs.
  options   the input as a command line (words split at NUL bytes): the
            sc_remoted command's parser gives an Invocation or a
            CommandLineError; its plugin options, and the words as they
            are, through the option table (twistd sc_remoted's Options and
            configure) give a Configuration within its documented bounds or
            a UsageError of one line.  (The TLS files it names are not
            read: that is loadTLS's job, tested on its own.)

The seeds in tools/fuzz-corpus/HARNESS are read first; what the fuzzer
finds new goes to a temporary directory (or a first directory given on
the command line), never into the repository.  A failure prints the
input and exits non-zero; libFuzzer writes it to crash-* in the current
directory.  docs/security.rst records the runs.
"""

import contextlib
import io
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import atheris  # noqa: E402

with atheris.instrument_imports():
    from sc_remoted import controller, local, scamper, vp, wire  # noqa: E402, F401
    from sc_remoted.engine import Link, Session  # noqa: E402
    from sc_remoted.lifecycle import Input  # noqa: E402
    from sc_remoted.mux import codec  # noqa: E402
    from sc_remoted.mux.metadata import MetadataError, parseMetadata  # noqa: E402
    from sc_remoted import cli, options, tap  # noqa: E402

CORPUS = os.path.join(HERE, "fuzz-corpus")


def _split(data: bytes, flags: int = 0) -> tuple:
    """
    The input as the harnesses read it: C{flags} leading bytes of
    switches, then one byte that sets where the stream is cut into reads
    (0: one read; else every 7n+1 bytes), then the stream itself.  Seeds
    are written in the same layout (tools/fuzz-corpus).
    """
    head, data = data[:flags], data[flags:]
    if not data:
        return head, []
    step, stream = data[0], data[1:]
    if not step:
        return head, [stream] if stream else []
    size = 7 * step + 1
    return head, [stream[start : start + size] for start in range(0, len(stream), size)]


# wire ------------------------------------------------------------------


def _encodeControl(message) -> bytes:
    """The control payload of C{message}, as our encoders write it."""
    if isinstance(message, wire.MasterNew):
        return wire.encodeMasterNew(message.magic, message.monitorname)[10:]
    if isinstance(message, wire.MasterId):
        return wire.encodeMasterId(message.identity)[10:]
    if isinstance(message, wire.ChannelNew):
        return wire.channelNewPayload(message.channel)
    if isinstance(message, wire.ChannelFin):
        return wire.channelFinPayload(message.channel)
    if isinstance(message, wire.Keepalive):
        return wire.encodeKeepalive(0)[10:]
    if isinstance(message, wire.Ack):
        return wire.encodeAck(0, message.seq)[10:]
    if isinstance(message, wire.MasterRes):
        return wire.encodeMasterRes(message.magic, message.rcv_nxt, message.snd_una, message.snd_nxt)[10:]
    if isinstance(message, wire.MasterRej):
        return wire.encodeMasterRej()[10:]
    assert isinstance(message, wire.MasterOk), message
    return wire.encodeMasterOk(message.rcv_nxt)[10:]


def fuzzWire(data: bytes) -> None:
    _, pieces = _split(data)
    decoder = wire.FrameDecoder()
    frames = []
    for piece in pieces:
        frames += decoder.feed(piece)
    stream = b"".join(pieces)
    rebuilt = b"".join(wire.encodeFrame(*frame) for frame in frames)
    assert stream.startswith(rebuilt) and len(rebuilt) + decoder.buffered == len(stream)
    for frame in frames:
        wire.describeFrame(frame)
        if frame.channel != wire.CONTROL_CHANNEL:
            continue
        try:
            message = wire.parseControl(frame.payload)
        except wire.WireError:
            continue
        if isinstance(message, wire.MasterId) and not message.identity.isascii():
            continue  # decoded with replacement characters: no exact encoding
        assert wire.parseControl(_encodeControl(message)) == message, message


# engine ----------------------------------------------------------------


def fuzzEngine(data: bytes) -> None:
    head, pieces = _split(data, 1)
    registered = bool(head and head[0] & 1)
    link = Link(0.0)
    session = Session()
    opened = [session.openChannel(number)[0] for number in range(2)]
    if registered:
        session.advance(Input.REGISTERED)
        link.attach(session)
    # The oracle: the same bytes cut into frames by the plain decoder.
    # Whatever the engine took in, it must have acknowledged exactly the
    # data and CHANNEL_FIN frames among them, and delivered their payloads.
    reference = wire.FrameDecoder()
    frames: list = []
    acked: list = []
    delivered: dict = {}
    skipped = 0
    now = 0.0
    for piece in pieces:
        now += 1.0
        frames += reference.feed(piece)
        while True:
            before = session.rcvNxt
            result = link.receive(piece, now)
            if result.error is not None:
                assert isinstance(result.error, str) and result.toScamper == b"", result.error
                return
            if link.session is not None:
                assert result.toScamper == (wire.encodeAcks(session.sndNxt, result.acks) if result.acks else b"")
                assert (before + len(result.acks)) & wire.SEQ_MASK == session.rcvNxt
                for channel, payloads in result.deliveries.items():
                    assert channel in opened, channel
                    delivered.setdefault(channel.number, []).extend(payloads)
                for channel in result.finished:
                    assert channel.number not in session.channels
                session.closeFinished(result)
                acked += result.acks
                taken = frames[skipped : skipped + session.framesIn]
                assert acked == [frame.seq for frame in taken if _isAcked(frame)], (acked, taken)
                for number in delivered:
                    assert delivered[number] == [f.payload for f in taken if f.channel == number], number
            if result.request is None or link.session is not None:
                break
            # Registered: what followed in the read goes on, numbered anew.
            skipped = 1
            session.advance(Input.REGISTERED)
            link.attach(session)
            piece = b""


def _isAcked(frame: wire.Frame) -> bool:
    """Whether scamper expects an ACK for C{frame}: data, or a CHANNEL_FIN."""
    return frame.channel != wire.CONTROL_CHANNEL or frame.payload[:1] == bytes((wire.ControlType.CHANNEL_FIN,))


# daemon ----------------------------------------------------------------


def fuzzDaemon(data: bytes) -> None:
    from tests.fakes import FakeClient, makeController
    from tests.peer_twisted import MemoryScamper

    head, pieces = _split(data, 1)
    registered = bool(head and head[0] & 1)
    controller = makeController()
    bystander = MemoryScamper(controller, port=1, magic=b"bystande")
    bystander.register(None)
    bystander.received()
    client = FakeClient(controller.reactor, "127.0.0.1:1")
    bystander.received()
    target = MemoryScamper(controller, port=2, magic=b"target!!")
    if registered:
        target.register(None)
    for piece in pieces:
        target.protocol.dataReceived(piece)  # must not raise
    target.lose()
    client.write(b"x")
    assert [frame.payload for frame in bystander.received() if frame.channel == 1] == [b"x"]
    bystander.sendData(1, b"y")
    assert client.read() == b"y" and not bystander.closed
    controller.stopService()


# mux -------------------------------------------------------------------


def fuzzMux(data: bytes) -> None:
    head, pieces = _split(data, 2)
    limit = int.from_bytes(head, "big") if len(head) == 2 else 1 << 16
    decoder = codec.MuxDecoder(limit)
    for piece in pieces:
        try:
            frames = decoder.feed(piece)
        except codec.MessageTooLarge:
            return
        for frame in frames:
            assert len(frame.payload) <= limit
            codec.describe(frame)
            if frame.channel != codec.CONTROL_CHANNEL:
                continue
            try:
                message = codec.parseControl(frame.payload)
            except codec.MuxError as e:
                codec.optionalChannel(e)
                continue
            encoded = codec.encodeControl(message)
            [again] = codec.MuxDecoder().feed(encoded)
            assert codec.parseControl(again.payload) == message, message


# metadata --------------------------------------------------------------


def fuzzMetadata(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        entries = parseMetadata(text)
    except MetadataError:
        return
    for name, attributes in entries.items():
        assert name and not any(c.isspace() for c in name), name
        for number, value in attributes:
            assert isinstance(number, int) and "\0" not in value


# options ---------------------------------------------------------------


def _configuration(argv: list) -> None:
    parsed = tap.Options()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            parsed.parseOptions(argv)
    except SystemExit as e:
        # --help and --version print and exit 0, as Twisted's options do.
        assert e.code == 0, e.code
        return
    except options.usage.UsageError as e:
        assert "\n" not in str(e) or not isinstance(e, options.ConfigurationError), repr(str(e))
        return
    config = parsed.config
    assert config.port is not None
    assert 0 <= config.zombieTime <= options.MAX_ZOMBIE_TIME, config.zombieTime
    limits = config.limits
    for name in ("maxConnections", "maxPerAddress", "maxChannels", "maxZombies", "channelBudget",
                 "vantagePointBudget", "muxClientBudget", "processBudget"):
        assert getattr(limits, name) >= 1, (name, limits)


def fuzzOptions(data: bytes) -> None:
    argv = data.decode("utf-8", "replace").split("\0")
    try:
        invocation = cli.parseCommandLine(argv)
    except cli.CommandLineError:
        invocation = None
    if invocation is not None and invocation.action == "run":
        _configuration(list(invocation.plugin))
    _configuration(argv)


HARNESSES = {
    "wire": fuzzWire,
    "engine": fuzzEngine,
    "daemon": fuzzDaemon,
    "mux": fuzzMux,
    "metadata": fuzzMetadata,
    "options": fuzzOptions,
}


def run(name: str, flags: list) -> None:
    """Fuzz with one harness (this process ends when libFuzzer is done)."""
    # A fuzzed command line may name any file as a certificate or key
    # (/dev/zero too): the options harness parses, it does not read them.
    tap.loadTLS = lambda config: (None, None)
    directories = [flag for flag in flags if not flag.startswith("-")]
    flags = [flag for flag in flags if flag.startswith("-")]
    if not directories:
        directories = [tempfile.mkdtemp(prefix="sc_remoted-fuzz-%s-" % (name,))]
    for directory in directories:
        os.makedirs(directory, exist_ok=True)
    seeds = os.path.join(CORPUS, name)
    if os.path.isdir(seeds):
        directories.append(seeds)
    atheris.Setup([sys.argv[0]] + flags + directories, HARNESSES[name])
    atheris.Fuzz()


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in list(HARNESSES) + ["all"]:
        print("usage: tools/fuzz.py {%s|all} [libFuzzer flags] [corpus dir]" % ("|".join(HARNESSES),), file=sys.stderr)
        return 2
    name, flags = sys.argv[1], sys.argv[2:]
    if name != "all":
        run(name, flags)
        return 0
    import subprocess

    for each in HARNESSES:
        status = subprocess.call([sys.executable, os.path.abspath(__file__), each] + flags)
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
