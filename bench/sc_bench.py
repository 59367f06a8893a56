#!/usr/bin/env python3
"""
sc_bench: a load generator and benchmark for sc_remoted.

It plays many scamper instances speaking the real remote-control protocol
(docs/protocol.rst section 1) over TCP on loopback, and the local programs on
the daemon's UNIX sockets, and measures either daemon: ours (the Twisted
re-implementation, run with C{twistd sc_remoted} from this checkout) or
the C C{sc_remoted} from Debian's scamper package.  Each scenario starts
a fresh daemon per repetition, alternating the daemons, and every byte
and every sequence number is checked.

Scenarios (see C{--help} and docs/performance.rst):

  down     one VP streams N MB to one local client in messages of a given
           size: MB/s, daemon CPU seconds per GB
  up       the reverse: the client writes N MB, scamper receives it
  latency  short request/response round trips through 1 and 32 channels
  scale    N VPs connect at once: time until every socket exists, RSS per
           VP, idle CPU, then round trips on fresh channels through every
           VP (rounds through all of them, 10 000 in all at least)
  churn    connect/register/disconnect cycles: rate, and leaks of fds,
           socket files and memory

The fake scamper behaves as the real one: MASTER_NEW with an 8-byte magic,
TCP_NODELAY set after connecting, every data/CHANNEL_NEW/CHANNEL_FIN frame
from the daemon ACKed individually with header seq = its own snd_nxt, its
own acked frames numbered from 0, every ACK it gets checked against the
head of its unacked list, its in-flight bytes bounded by a window.

Single-threaded, non-blocking sockets and epoll (C{selectors}); frames
are built in batches and parsed with C{struct.unpack_from}.  The
generator's own CPU time is reported with every run, so that one can see
it is not the bottleneck.

Plain standard library; matplotlib only for C{--plot}.
"""

import argparse
import collections
import datetime
import errno
import json
import os
import platform
import random
import resource
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

HEADER = struct.Struct("!IIH")
U32 = struct.Struct("!I")
ACK_FRAME = struct.Struct("!IIHBI")
HDR = 10
T_MASTER_NEW, T_MASTER_ID, T_CHANNEL_NEW, T_CHANNEL_FIN, T_KEEPALIVE, T_ACK = 0, 1, 2, 3, 4, 5
T_MASTER_RES, T_MASTER_REJ, T_MASTER_OK = 6, 7, 8
MASK = 0xFFFFFFFF

EV_R = selectors.EVENT_READ
EV_W = selectors.EVENT_WRITE

RECV_SIZE = 1 << 20
# Bytes of frames built and sent at once: small enough that the loop gets
# back to the other sockets (the local client) before their buffers fill.
SEND_BATCH = 256 << 10
NOFILE = 65536

REQUEST = b"ping -c 1 127.0.0.1\n"
# The most bytes a fake scamper keeps unacknowledged, unless a scenario
# says otherwise (--window for the streams: down, up, mixed).
WINDOW = 4 << 20


class BenchError(Exception):
    """A correctness failure: wrong bytes, a protocol violation, a timeout."""


# The byte pattern every stream carries --------------------------------

PATTERN_PERIOD = (1 << 20) + 7  # not a multiple of any message size


def makePattern():
    rnd = random.Random(20211212)
    one = rnd.randbytes(PATTERN_PERIOD)
    return one + one  # any slice of length <= PERIOD is contiguous


PATTERN = makePattern()
PATTERN_MV = memoryview(PATTERN)


def patternSlice(offset, length):
    """The stream's bytes [offset, offset+length), length <= PERIOD."""
    o = offset % PATTERN_PERIOD
    return PATTERN_MV[o : o + length]


def matches(buf, start, stop, offset):
    """
    Whether C{buf[start:stop]} are the stream's bytes from C{offset}.
    (C{bytes.startswith} compares with memcmp and copies nothing; comparing
    memoryviews is a hundred times slower.)
    """
    while stop - start > PATTERN_PERIOD:
        if not buf.startswith(patternSlice(offset, PATTERN_PERIOD), start):
            return False
        start += PATTERN_PERIOD
        offset += PATTERN_PERIOD
    return buf.startswith(patternSlice(offset, stop - start), start)


# Event loop ---------------------------------------------------------------


class Loop:
    def __init__(self):
        self.sel = selectors.EpollSelector()
        self.errors = []
        self.timers = []
        self.conns = set()
        self.result = {}

    def closeAll(self):
        for conn in list(self.conns):
            conn.close()
        self.sel.close()

    def error(self, message):
        if len(self.errors) < 50:
            self.errors.append(message)

    def every(self, interval, fn):
        self.timers.append([time.monotonic() + interval, interval, fn])

    def runUntil(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        select = self.sel.select
        while True:
            if predicate():
                return
            now = time.monotonic()
            if self.errors:
                raise BenchError("%s: %s" % (what, "; ".join(self.errors[:5])))
            if now > deadline:
                raise BenchError("timed out after %.1f s waiting for %s" % (timeout, what))
            for timer in self.timers:
                if now >= timer[0]:
                    timer[0] = now + timer[1]
                    timer[2]()
            for key, mask in select(0.02):
                conn = key.data
                if mask & EV_R and not conn.closed:
                    conn.onReadable()
                if mask & EV_W and not conn.closed:
                    conn.onWritable()

    def sleep(self, seconds):
        end = time.monotonic() + seconds
        self.runUntil(lambda: time.monotonic() >= end, seconds + 5, "sleep")


class Conn:
    """A non-blocking socket with an output queue."""

    closed = False
    connected = True

    def __init__(self, loop, sock, connecting=False):
        self.loop = loop
        self.sock = sock
        self.out = collections.deque()
        self.events = EV_R
        self.connected = not connecting
        if connecting:
            self.events = EV_W
        loop.sel.register(sock, self.events, self)
        loop.conns.add(self)

    def _setEvents(self, events):
        if events != self.events and not self.closed:
            self.events = events
            self.loop.sel.modify(self.sock, events, self)

    def send(self, data):
        if self.closed:
            return
        if not self.out and self.connected:
            try:
                n = self.sock.send(data)
            except BlockingIOError:
                n = 0
            except OSError as e:
                self.lost(e)
                return
            if n == len(data):
                return
            data = memoryview(data)[n:]
        self.out.append(data)
        if self.connected:
            self._setEvents(EV_R | EV_W)

    def onWritable(self):
        if not self.connected:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.lost(OSError(err, os.strerror(err)))
                return
            self.connected = True
            self._setEvents(EV_R)
            self.connectionMade()
            if self.closed:
                return
        out = self.out
        while out:
            data = out[0]
            try:
                n = self.sock.send(data)
            except BlockingIOError:
                return
            except OSError as e:
                self.lost(e)
                return
            if n < len(data):
                out[0] = memoryview(data)[n:]
                self._setEvents(EV_R | EV_W)
                return
            out.popleft()
        self._setEvents(EV_R)
        self.drained()

    def connectionMade(self):
        pass

    def drained(self):
        pass

    def onReadable(self):
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError as e:
            self.lost(e)
            return
        if not data:
            self.lost(None)
            return
        self.dataReceived(data)

    def close(self):
        if not self.closed:
            self.closed = True
            self.loop.conns.discard(self)
            try:
                self.loop.sel.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            self.sock.close()

    def lost(self, reason):
        self.close()
        self.connectionLost(reason)

    def connectionLost(self, reason):
        pass


# The fake scamper -----------------------------------------------------


class ScamperApp:
    """What a fake scamper does with its channels; the default is a server."""

    nregistered = 0
    openChannels = 0

    def channelNew(self, sc, channel):
        pass

    def data(self, sc, channel, buf, start, stop):
        # Answer each request line with one OK line, as scamper does.
        pending = sc.lines.get(channel, b"") + buf[start:stop]
        lines = pending.split(b"\n")
        sc.lines[channel] = lines.pop()
        for line in lines:
            if line:
                sc.replies += 1
                sc.sendData(channel, b"OK id-%d\n" % (sc.replies,))

    def channelFin(self, sc, channel):
        # scamper finishes its side of the channel at once.
        sc.sendFin(channel)

    def registered(self, sc):
        pass

    def lost(self, sc, reason):
        sc.loop.error("scamper %s: %s (%s)" % (getattr(sc, "localPort", "?"), "the daemon closed the connection" if sc.connected else "could not connect", reason or "EOF"))


class FakeScamper(Conn):
    """
    One scamper in remote-control mode, connected to the daemon.

    @ivar window: the most bytes of acked frames this scamper keeps in
        flight (unacknowledged).
    """

    def __init__(self, loop, port, app, window=None, nodelay=True, quickack=False):
        self.app = app
        self.quickack = quickack
        self.window = window or WINDOW
        self.nodelay = nodelay
        self.magic = os.urandom(8)
        self.rcvNxt = 0
        self.sndNxt = 0
        self.sndUna = 0
        self.inflight = 0
        self.sizes = collections.deque()
        self.inbuf = b""
        self.registered = False
        self.alias = None
        self.channels = set()
        self.lines = {}
        self.replies = 0
        self.batch = None
        self.lastSent = time.monotonic()
        self.source = None  # streaming: (channel, offset, end, msgsize)
        self.finAfterStream = False
        self.streamDone = False
        self.dataBytesIn = 0
        self.verifyOffset = {}
        self.verify = False
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(err, os.strerror(err))
        Conn.__init__(self, loop, sock, connecting=True)

    @property
    def socketName(self):
        return "127.0.0.1:%d" % (self.localPort,)

    def connectionMade(self):
        if self.nodelay:
            # As scamper does, once the (blocking) connect has completed.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.localPort = self.sock.getsockname()[1]
        body = bytes((T_MASTER_NEW, 8)) + self.magic + b"\0"
        self.send(HEADER.pack(0, 0, len(body)) + body)

    # sending acked frames

    def _write(self, frame):
        batch = self.batch
        if batch is not None:
            batch.append(frame)
        else:
            self.send(frame)
        self.lastSent = time.monotonic()

    def _sequenced(self, channel, payload):
        seq = self.sndNxt
        self.sndNxt = (seq + 1) & MASK
        n = HDR + len(payload)
        self.sizes.append(n)
        self.inflight += n
        self._write(HEADER.pack(seq, channel, len(payload)) + payload)

    def sendData(self, channel, payload):
        self._sequenced(channel, payload)

    def sendFin(self, channel):
        if channel in self.channels:
            self.channels.discard(channel)
            self.app.openChannels -= 1
        self._sequenced(0, bytes((T_CHANNEL_FIN,)) + U32.pack(channel))

    def keepalive(self):
        if self.registered and not self.closed and time.monotonic() - self.lastSent > 25:
            self._write(HEADER.pack(self.sndNxt, 0, 1) + bytes((T_KEEPALIVE,)))

    def stream(self, channel, nbytes, msgsize, fin=True):
        """Send C{nbytes} of the pattern on C{channel} in C{msgsize} frames."""
        self.source = [channel, 0, nbytes, msgsize]
        self.finAfterStream = fin
        self.pump()

    def pump(self):
        """Send more of the stream while the window and the socket allow."""
        src = self.source
        if src is None or self.closed:
            return
        if self.out:
            return  # the socket is full; drained() calls again
        channel, offset, end, msgsize = src
        room = self.window - self.inflight
        if room < msgsize + HDR and self.inflight:
            return
        budget = min(room, SEND_BATCH)
        parts = []
        append = parts.append
        pack = HEADER.pack
        seq = self.sndNxt
        sizes = self.sizes
        sent = 0
        while offset < end and sent < budget:
            n = min(msgsize, end - offset)
            append(pack(seq, channel, n))
            append(patternSlice(offset, n))
            seq = (seq + 1) & MASK
            offset += n
            sizes.append(n + HDR)
            sent += n + HDR
        self.sndNxt = seq
        self.inflight += sent
        src[1] = offset
        if offset >= end:
            self.source = None
            self.streamDone = True
        if parts:
            self.send(b"".join(parts))
            self.lastSent = time.monotonic()
        if self.source is None and self.finAfterStream:
            self.sendFin(channel)

    def drained(self):
        if self.source is not None:
            self.pump()

    # receiving

    def fail(self, message):
        self.loop.error("scamper %s: %s" % (getattr(self, "localPort", "?"), message))
        self.close()

    def dataReceived(self, data):
        if self.quickack:
            # Not what scamper does: acknowledge at once rather than
            # delaying (the flag does not stick; set it after every read).
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        if self.inbuf:
            data = self.inbuf + data
            self.inbuf = b""
        end = len(data)
        off = 0
        unpack = HEADER.unpack_from
        self.batch = batch = []
        rcvNxt = self.rcvNxt
        try:
            while end - off >= HDR:
                seq, channel, length = unpack(data, off)
                stop = off + HDR + length
                if stop > end:
                    break
                if seq != rcvNxt:
                    raise BenchError("got seq %d expected %d" % (seq, rcvNxt))
                if channel:
                    batch.append(ACK_FRAME.pack(self.sndNxt, 0, 5, T_ACK, seq))
                    rcvNxt = self.rcvNxt = (rcvNxt + 1) & MASK
                    if channel not in self.channels:
                        raise BenchError("data for unknown channel %d" % (channel,))
                    self.dataBytesIn += length
                    self.app.data(self, channel, data, off + HDR, stop)
                elif not self.registered:
                    self._connectMode(data, off, length)
                elif length == 0:
                    raise BenchError("empty control message")
                else:
                    kind = data[off + HDR]
                    if kind == T_ACK:
                        if length != 5:
                            raise BenchError("ACK of length %d" % (length,))
                        acked = U32.unpack_from(data, off + HDR + 1)[0]
                        if not self.sizes:
                            raise BenchError("ACK %d with nothing outstanding" % (acked,))
                        if acked != self.sndUna:
                            raise BenchError("ACK %d but head of unacked is %d" % (acked, self.sndUna))
                        self.sndUna = (acked + 1) & MASK
                        self.inflight -= self.sizes.popleft()
                    elif kind == T_KEEPALIVE:
                        if length != 1:
                            raise BenchError("KEEPALIVE of length %d" % (length,))
                    elif kind in (T_CHANNEL_NEW, T_CHANNEL_FIN):
                        if length != 5:
                            raise BenchError("control %d of length %d" % (kind, length))
                        batch.append(ACK_FRAME.pack(self.sndNxt, 0, 5, T_ACK, seq))
                        rcvNxt = self.rcvNxt = (rcvNxt + 1) & MASK
                        number = U32.unpack_from(data, off + HDR + 1)[0]
                        if kind == T_CHANNEL_NEW:
                            if number == 0 or number in self.channels:
                                raise BenchError("CHANNEL_NEW %d reuses a channel" % (number,))
                            self.channels.add(number)
                            self.app.openChannels += 1
                            self.app.channelNew(self, number)
                        else:
                            if number not in self.channels:
                                raise BenchError("CHANNEL_FIN for unknown channel %d" % (number,))
                            self.app.channelFin(self, number)
                    else:
                        raise BenchError("unexpected control type %d" % (kind,))
                off = stop
        except BenchError as e:
            self.batch = None
            self.fail(str(e))
            return
        if off < end:
            self.inbuf = data[off:]
        self.batch = None
        if batch:
            self.send(b"".join(batch) if len(batch) > 1 else batch[0])
            self.lastSent = time.monotonic()
        if self.source is not None:
            self.pump()

    def _connectMode(self, data, off, length):
        seq = HEADER.unpack_from(data, off)[0]
        if seq != 0 or length < 1:
            raise BenchError("bad frame in CONNECT mode")
        kind = data[off + HDR]
        if kind == T_MASTER_ID:
            idlen = data[off + HDR + 1]
            ident = data[off + HDR + 2 : off + HDR + 2 + idlen]
            if idlen == 0 or len(ident) != idlen or ident[-1] != 0:
                raise BenchError("malformed MASTER_ID")
            self.alias = ident[:-1].decode("ascii", "replace")
            if self.alias != self.socketName:
                raise BenchError("MASTER_ID %r, expected %r" % (self.alias, self.socketName))
            self.registered = True
            self.app.nregistered += 1
            self.app.registered(self)
        elif kind == T_MASTER_REJ:
            raise BenchError("MASTER_REJ")
        else:
            raise BenchError("control type %d in CONNECT mode" % (kind,))

    def connectionLost(self, reason):
        self.app.lost(self, reason)


# Local clients ------------------------------------------------------------


class UnixClient(Conn):
    def __init__(self, loop, path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise BenchError("connect to %s: %s" % (path, e))
        sock.setblocking(False)
        Conn.__init__(self, loop, sock)
        self.eof = False

    def shutdownWrite(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def connectionLost(self, reason):
        self.eof = True
        if reason is not None:
            self.loop.error("client: %s" % (reason,))


class SinkClient(UnixClient):
    """Receives the pattern stream and checks every byte."""

    def __init__(self, loop, path):
        UnixClient.__init__(self, loop, path)
        self.received = 0
        self.bad = 0

    def dataReceived(self, data):
        n = len(data)
        o = self.received
        if not matches(data, 0, n, o):
            self.bad += 1
            self.loop.error("client got wrong bytes in [%d, %d)" % (o, o + n))
        self.received = o + n


class SourceClient(UnixClient):
    """Writes C{nbytes} of the pattern in writes of C{writeSize}."""

    def __init__(self, loop, path, nbytes, writeSize):
        UnixClient.__init__(self, loop, path)
        self.offset = 0
        self.nbytes = nbytes
        self.writeSize = min(writeSize, PATTERN_PERIOD)
        self.extra = 0

    def start(self):
        self.fill()

    def fill(self):
        # Queue up to 1 MB of writes of writeSize at a time.
        budget = 1 << 20
        while self.offset < self.nbytes and budget > 0 and not self.out and not self.closed:
            n = min(self.writeSize, self.nbytes - self.offset)
            self.send(patternSlice(self.offset, n))
            self.offset += n
            budget -= n
        if self.offset >= self.nbytes:
            if not self.out:
                self.shutdownWrite()
        elif not self.out and not self.closed:
            # Everything went out: ask to be told when more fits.
            self._setEvents(EV_R | EV_W)

    def drained(self):
        self.fill()

    def dataReceived(self, data):
        self.extra += len(data)


class PingClient(UnixClient):
    """Closed-loop request/response: send a line, wait for the OK line."""

    def __init__(self, loop, path, samples, count=None, closeAfter=False):
        UnixClient.__init__(self, loop, path)
        self.samples = samples
        self.count = count
        self.done = 0
        self.buf = b""
        self.sentAt = 0
        self.running = True
        self.closeAfter = closeAfter
        self.ok = False
        self.waiting = False

    def ask(self):
        self.waiting = True
        self.sentAt = time.perf_counter_ns()
        self.send(REQUEST)

    def dataReceived(self, data):
        now = time.perf_counter_ns()
        buf = self.buf + data
        if not buf.endswith(b"\n"):
            self.buf = buf
            return
        self.buf = b""
        if not buf.startswith(b"OK id-") or buf.count(b"\n") != 1:
            self.loop.error("client got %r" % (buf[:80],))
            return
        self.samples.append(now - self.sentAt)
        self.waiting = False
        self.done += 1
        if self.count is not None and self.done >= self.count:
            self.ok = True
            self.running = False
            if self.closeAfter:
                self.close()
            return
        if self.running:
            self.ask()


# Measuring the daemon -----------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpuSeconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rssBytes(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * PAGE


def fdCount(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def countSockets(directory):
    return len(os.listdir(directory))


PIN = {"daemon": None, "generator": None}


def pinCpus(enable):
    """Put the daemon on the first CPU and the generator on the second."""
    cpus = sorted(os.sched_getaffinity(0))
    if enable and len(cpus) >= 2:
        PIN["daemon"], PIN["generator"] = {cpus[0]}, {cpus[1]}
        os.sched_setaffinity(0, PIN["generator"])
    return PIN


def daemonPreexec():
    raiseNofile()
    if PIN["daemon"]:
        os.sched_setaffinity(0, PIN["daemon"])


def raiseNofile(limit=NOFILE):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = limit
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def twistdScript():
    candidates = [os.path.join(sysconfig.get_path("scripts"), "twistd")]
    found = shutil.which("twistd")
    if found:
        candidates.append(found)
    for candidate in candidates:
        try:
            with open(candidate, "rb") as f:
                first = f.readline()
        except OSError:
            continue
        if first.startswith(b"#!") and b"python" in first:
            return candidate
    raise SystemExit("sc_bench: no Python twistd script found (looked at %s)" % (", ".join(candidates),))


def cDaemonPath():
    for candidate in ("/usr/bin/sc_remoted", shutil.which("sc_remoted")):
        if candidate and os.path.exists(candidate):
            with open(candidate, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    return candidate
    return None


_LIMIT_OPTIONS = None

# twistd's --reactor for our daemon (--ours-reactor); None: the daemon's own.
OURS_REACTOR = None

# More options of twistd sc_remoted for our daemon (--ours-option), such as
# --log-level warn, to measure it as an operator would configure it.
OURS_OPTIONS = []

# Where each daemon's directory (its sockets directory inside) is made
# (--socket-base).  Binding a UNIX socket makes an inode in that file
# system, whose cost is the file system's: on this project's ext4 test
# machines it grows with the files deleted in the last half minute
# (docs/performance.rst), on tmpfs (/dev/shm) it does not.
SOCKET_BASE = "/tmp"


def oursLimitOptions(env):
    """
    Every fake scamper comes from 127.0.0.1: lift our daemon's per-address
    and total connection limits (where this version has them), which the
    C daemon does not have.
    """
    global _LIMIT_OPTIONS
    if _LIMIT_OPTIONS is None:
        out = subprocess.run([sys.executable, twistdScript(), "sc_remoted", "--help"], env=env,
                             capture_output=True, text=True, cwd="/tmp").stdout
        _LIMIT_OPTIONS = []
        for option in ("--max-per-address", "--max-connections", "--max-zombies"):
            if option in out:
                _LIMIT_OPTIONS += [option, "1000000"]
    return _LIMIT_OPTIONS


def fdCapacity():
    """How many VPs a daemon can hold: two descriptors each (TCP, listener)."""
    return (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 600) // 2


class Daemon:
    """One daemon process, ours or C, on a fresh port and socket directory."""

    def __init__(self, kind, zombie=0, cPath=None):
        self.kind = kind
        self.port = freePort()
        self.dir = tempfile.mkdtemp(dir=SOCKET_BASE, prefix="scb")
        self.sockets = os.path.join(self.dir, "s")
        os.mkdir(self.sockets)
        self.logPath = os.path.join(self.dir, "daemon.log")
        if kind == "ours":
            env = dict(os.environ)
            # Measure this checkout (its twisted/plugins and sc_remoted).
            env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            reactorOption = ["--reactor=" + OURS_REACTOR] if OURS_REACTOR else []
            argv = [
                sys.executable, twistdScript(), "-n", "--pidfile=", "--logfile", self.logPath, *reactorOption,
                "sc_remoted", "--port", "127.0.0.1:%d" % self.port, "--sockets", self.sockets,
                "-Z", str(zombie),
            ] + oursLimitOptions(env) + OURS_OPTIONS
        else:
            env = None
            argv = [cPath or cDaemonPath(), "-P", "127.0.0.1:%d" % self.port, "-U", self.sockets, "-Z", str(zombie)]
        self.log = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            env=env, cwd=self.dir, preexec_fn=daemonPreexec,
        )
        self.pid = self.proc.pid
        self._waitListening()

    def _waitListening(self):
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise BenchError("%s daemon exited with %s: %s" % (self.kind, self.proc.returncode, self.output()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError("%s daemon did not listen within 30 s" % (self.kind,))
                time.sleep(0.02)

    def output(self):
        text = []
        for name in ("stdout.log", "daemon.log"):
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    text.append(f.read()[-3000:].decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(text)

    def problems(self):
        """Lines of the daemon's log that report errors."""
        found = []
        out = self.output()
        for line in out.splitlines():
            if "Traceback" in line or "rror" in line or "CRITICAL" in line:
                found.append(line.strip()[:300])
        return found[:10]

    def cpu(self):
        return cpuSeconds(self.pid)

    def rss(self):
        return rssBytes(self.pid)

    def fds(self):
        return fdCount(self.pid)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def cleanup(self, keep=False):
        self.stop()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# Scenarios ------------------------------------------------------------------


def connectScampers(loop, daemon, n, app, window=None, timeout=120, quickack=False):
    """Connect C{n} fake scampers and wait for every MASTER_ID."""
    scampers = [FakeScamper(loop, daemon.port, app, window, quickack=quickack) for _ in range(n)]
    loop.runUntil(lambda: app.nregistered >= n, timeout, "%d MASTER_IDs" % n)
    return scampers


def waitSocket(loop, daemon, name, timeout=10):
    path = os.path.join(daemon.sockets, name)
    loop.runUntil(lambda: os.path.exists(path), timeout, "socket %s" % name)
    return path


def genCpu():
    return time.process_time()


def scenarioDown(loop, daemon, nbytes, msgsize, window):
    app = ScamperApp()
    (sc,) = connectScampers(loop, daemon, 1, app, window)
    path = waitSocket(loop, daemon, sc.socketName)
    client = SinkClient(loop, path)
    loop.runUntil(lambda: sc.channels, 10, "CHANNEL_NEW")
    (channel,) = sc.channels
    cpu0, g0, t0 = daemon.cpu(), genCpu(), time.perf_counter()
    sc.stream(channel, nbytes, msgsize)
    loop.runUntil(lambda: client.received >= nbytes, 600, "%d bytes at the client" % nbytes)
    t1, g1, cpu1 = time.perf_counter(), genCpu(), daemon.cpu()
    wall = t1 - t0
    result = loop.result
    result.update({
        "MB/s": nbytes / wall / 1e6,
        "daemon CPU s/GB": (cpu1 - cpu0) / (nbytes / 1e9),
        "generator CPU s/GB": (g1 - g0) / (nbytes / 1e9),
        "generator busy": (g1 - g0) / wall,
        "verified bytes": client.received,
    })
    loop.runUntil(lambda: not sc.sizes, 30, "the ACKs of every frame")
    loop.runUntil(lambda: client.eof, 10, "the client's EOF after scamper's CHANNEL_FIN")
    result["ok"] = client.received == nbytes and client.bad == 0 and not loop.errors
    sc.close()
    return result


def scenarioUp(loop, daemon, nbytes, msgsize, window):

    class Checker(ScamperApp):
        offset = 0
        bad = 0

        def data(self, sc, channel, buf, start, stop):
            n = stop - start
            if not matches(buf, start, stop, self.offset):
                self.bad += 1
                loop.error("scamper got wrong bytes at offset %d" % self.offset)
            self.offset += n

    app = Checker()
    (sc,) = connectScampers(loop, daemon, 1, app, window)
    path = waitSocket(loop, daemon, sc.socketName)
    client = SourceClient(loop, path, nbytes, msgsize)
    loop.runUntil(lambda: sc.channels, 10, "CHANNEL_NEW")
    cpu0, g0, t0 = daemon.cpu(), genCpu(), time.perf_counter()
    client.start()
    loop.runUntil(lambda: app.offset >= nbytes, 600, "%d bytes at scamper" % nbytes)
    t1, g1, cpu1 = time.perf_counter(), genCpu(), daemon.cpu()
    wall = t1 - t0
    result = loop.result
    result.update({
        "MB/s": nbytes / wall / 1e6,
        "daemon CPU s/GB": (cpu1 - cpu0) / (nbytes / 1e9),
        "generator CPU s/GB": (g1 - g0) / (nbytes / 1e9),
        "generator busy": (g1 - g0) / wall,
        "verified bytes": app.offset,
    })
    loop.runUntil(lambda: client.eof, 10, "the client's EOF after the CHANNEL_FIN exchange")
    result["ok"] = app.offset == nbytes and app.bad == 0 and not loop.errors and not sc.channels
    sc.close()
    return result


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def scenarioLatency(loop, daemon, channels, duration, warmup=5, quickack=False):
    app = ScamperApp()
    (sc,) = connectScampers(loop, daemon, 1, app, quickack=quickack)
    path = waitSocket(loop, daemon, sc.socketName)
    perClient = []
    clients = []
    for _ in range(channels):
        samples = []
        perClient.append(samples)
        clients.append(PingClient(loop, path, samples))
    loop.runUntil(lambda: len(sc.channels) == channels, 10, "%d CHANNEL_NEWs" % channels)
    cpu0, t0 = daemon.cpu(), time.perf_counter()
    for c in clients:
        c.ask()
    loop.sleep(duration)
    for c in clients:
        c.running = False
    t1, cpu1 = time.perf_counter(), daemon.cpu()
    # Let the round trips in progress finish, then close.
    loop.runUntil(lambda: not any(c.waiting for c in clients), 10, "the last replies")
    for c in clients:
        c.close()
    loop.runUntil(lambda: not sc.channels, 10, "the channels' CHANNEL_FIN exchange")
    total = sum(c.done for c in clients)
    samples = sorted(x for s in perClient for x in s[warmup:]) or sorted(x for s in perClient for x in s)
    ok = not loop.errors and total == sc.replies and all(c.done for c in clients)
    sc.close()
    return {
        "p50 us": percentile(samples, 0.5) / 1e3,
        "p99 us": percentile(samples, 0.99) / 1e3,
        "round trips/s": total / (t1 - t0),
        "samples": len(samples),
        "daemon CPU us/round trip": (cpu1 - cpu0) / max(total, 1) * 1e6,
        "ok": ok,
    }


def scenarioScale(loop, daemon, nvps, idle, freshMinimum=0, concurrency=256):
    app = ScamperApp()
    rss0, fd0 = daemon.rss(), daemon.fds()
    cpu0, g0, t0 = daemon.cpu(), genCpu(), time.perf_counter()
    scampers = []
    for _ in range(nvps):
        scampers.append(FakeScamper(loop, daemon.port, app))
    state = {"sockets": 0, "at": None}

    def allSockets():
        if state["at"] is None:
            n = countSockets(daemon.sockets)
            state["sockets"] = n
            if n >= nvps:
                state["at"] = time.perf_counter()
        return state["at"] is not None

    loop.every(0.05, allSockets)
    loop.runUntil(lambda: state["at"] is not None and app.nregistered >= nvps,
                  120 + nvps / 50, "%d VPs registered with their sockets" % nvps)
    loop.timers.clear()
    tRegistered = time.perf_counter()
    connectCpu = daemon.cpu() - cpu0
    loop.every(5, lambda: [s.keepalive() for s in scampers])
    loop.sleep(0.5)
    rss1, fd1 = daemon.rss(), daemon.fds()
    i0, it0 = daemon.cpu(), time.perf_counter()
    loop.sleep(idle)
    i1, it1 = daemon.cpu(), time.perf_counter()
    loop.result.update({
        "all sockets s": state["at"] - t0,
        "all registered s": tRegistered - t0,
        "RSS per VP KB": (rss1 - rss0) / nvps / 1024,
        "RSS MB": rss1 / 1e6,
        "fds": fd1 - fd0,
        "idle CPU %": (i1 - i0) / (it1 - it0) * 100,
        "connect CPU s": connectCpu,
        "sockets": state["sockets"],
    })
    # Round trips on fresh channels, C{concurrency} at a time: as many
    # rounds through every VP as make at least C{freshMinimum} in all (one
    # round at least), so that the figure is more than a few clock ticks of
    # the daemon's CPU.
    rounds = max(1, -(-freshMinimum // nvps))
    samples = []
    queue = collections.deque(scampers * rounds)
    active = []
    okCount = [0]
    rc0, r0 = daemon.cpu(), time.perf_counter()

    def refill():
        still = []
        for c in active:
            if c.ok or c.closed:
                if c.ok:
                    okCount[0] += 1
                c.close()
            else:
                still.append(c)
        active[:] = still
        while queue and len(active) < concurrency:
            s = queue.popleft()
            c = PingClient(loop, os.path.join(daemon.sockets, s.socketName), samples, count=1, closeAfter=True)
            c.ask()
            active.append(c)
        return not queue and not active

    loop.runUntil(refill, 120 + nvps * rounds / 50, "%d round(s) of round trips through each of %d VPs" % (rounds, nvps))
    r1 = time.perf_counter()
    loop.runUntil(lambda: app.openChannels == 0, 30, "every channel closed")
    rc1 = daemon.cpu()
    g1 = genCpu()
    ok = (not loop.errors and okCount[0] == nvps * rounds and state["sockets"] >= nvps
          and all(s.registered and not s.closed for s in scampers) and daemon.alive())
    for s in scampers:
        s.close()
    samples.sort()
    result = loop.result
    result.update({
        "round trips s": r1 - r0,
        "fresh round trips/s": nvps * rounds / (r1 - r0),
        "daemon CPU us/fresh round trip": (rc1 - rc0) / (nvps * rounds) * 1e6,
        "round trip p50 us": percentile(samples, 0.5) / 1e3,
        "round trip p99 us": percentile(samples, 0.99) / 1e3,
        "generator CPU s": g1 - g0,
        "round trips ok": okCount[0],
        "fresh rounds": rounds,
        "ok": ok,
    })
    return result


def scenarioChurn(loop, daemon, cycles, concurrency=32, warmup=None):
    """Connect, register, check the socket exists, disconnect; repeat."""
    if warmup is None:
        warmup = max(cycles // 5, 10)
    stats = {"done": 0, "missing": 0, "started": 0}

    class Cycler(ScamperApp):
        def registered(self, sc):
            if not os.path.exists(os.path.join(daemon.sockets, sc.socketName)):
                stats["missing"] += 1
            sc.close()
            stats["done"] += 1
            start()

    app = Cycler()

    def start():
        if stats["started"] < stats["target"]:
            stats["started"] += 1
            FakeScamper(loop, daemon.port, app)

    def run(n):
        stats["target"] = stats["started"] + n
        goal = stats["target"]
        for _ in range(concurrency):
            start()
        loop.runUntil(lambda: stats["done"] >= goal, 60 + n / 20, "%d churn cycles" % n)

    def settle(what):
        loop.runUntil(lambda: countSockets(daemon.sockets) == 0, 30, "socket files removed after " + what)
        loop.sleep(0.3)

    fdStart, rssStart = daemon.fds(), daemon.rss()
    run(warmup)
    settle("the warm-up")
    fd0, rss0 = daemon.fds(), daemon.rss()
    cpu0, g0, t0 = daemon.cpu(), genCpu(), time.perf_counter()
    run(cycles)
    t1, g1, cpu1 = time.perf_counter(), genCpu(), daemon.cpu()
    try:
        settle("the cycles")
        left = 0
    except BenchError:
        left = countSockets(daemon.sockets)
    fd1, rss1 = daemon.fds(), daemon.rss()
    ok = not loop.errors and left == 0 and stats["missing"] == 0 and fd1 <= fd0 and daemon.alive()
    return {
        "cycles/s": cycles / (t1 - t0),
        "daemon CPU ms/cycle": (cpu1 - cpu0) / cycles * 1e3,
        "fd growth": fd1 - fd0,
        "fd growth from start": fd1 - fdStart,
        "socket files left": left,
        "RSS growth KB": (rss1 - rss0) / 1024,
        "RSS growth from start KB": (rss1 - rssStart) / 1024,
        "sockets missing at MASTER_ID": stats["missing"],
        "generator CPU s": g1 - g0,
        "ok": ok,
    }


def scenarioSlowClient(loop, daemon, seconds, rate, msgsize=8000, tick=0.02):
    """
    One VP, two local clients: scamper sends C{rate} bytes/s to each for
    C{seconds}; one client reads (and checks every byte), the other never
    reads.  Measures what the reader gets (rate, longest gap between two
    reads), what the daemon holds meanwhile (peak RSS growth), and what
    becomes of the client that never reads (its channel closed, and when).
    """

    class Reader(SinkClient):
        lastAt = None
        gap = 0.0

        def dataReceived(self, data):
            now = time.monotonic()
            if self.lastAt is not None:
                self.gap = max(self.gap, now - self.lastAt)
            self.lastAt = now
            SinkClient.dataReceived(self, data)

    class App(ScamperApp):
        finishedAt = None

        def channelFin(self, sc, channel):
            if channel == stuckChannel[0] and self.finishedAt is None:
                self.finishedAt = time.monotonic()
            sc.sendFin(channel)

    app = App()
    stuckChannel = [None]
    (sc,) = connectScampers(loop, daemon, 1, app)
    path = waitSocket(loop, daemon, sc.socketName)
    # The client that never reads: a socket with a small receive buffer,
    # outside the loop, so nothing ever reads it.
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(path)
    loop.runUntil(lambda: len(sc.channels) == 1, 10, "the stuck client's CHANNEL_NEW")
    stuckChannel[0] = next(iter(sc.channels))
    reader = Reader(loop, path)
    loop.runUntil(lambda: len(sc.channels) == 2, 10, "the reader's CHANNEL_NEW")
    (readerChannel,) = sc.channels - {stuckChannel[0]}
    state = {"sent": 0, "offset": 0, "peak": 0, "due": 0.0}
    filler = b"s" * msgsize
    rss0 = daemon.rss()
    t0 = time.monotonic()

    def pace():
        # Send what is due by now to both channels, in msgsize frames.
        now = time.monotonic()
        if now - t0 >= seconds:
            return
        due = rate * (now - t0)
        while state["sent"] + msgsize <= due:
            if stuckChannel[0] in sc.channels:
                sc.sendData(stuckChannel[0], filler)
            sc.sendData(readerChannel, patternSlice(state["offset"], msgsize))
            state["offset"] += msgsize
            state["sent"] += msgsize
        state["peak"] = max(state["peak"], daemon.rss())

    loop.every(tick, pace)
    try:
        loop.runUntil(lambda: time.monotonic() - t0 >= seconds, seconds + 30, "the slow-client run")
        sent = state["offset"]
        loop.runUntil(lambda: reader.received >= sent, 30, "the reader's %d bytes" % sent)
        t1 = time.monotonic()
    finally:
        loop.timers = [t for t in loop.timers if t[2] is not pace]
        stuck.close()
    rssPeak = max(state["peak"], daemon.rss())
    result = loop.result
    result.update({
        "reader MB/s": reader.received / (t1 - t0) / 1e6,
        "reader max gap ms": reader.gap * 1e3,
        "RSS growth MB": (rssPeak - rss0) / 1e6,
        "stuck closed after s": (app.finishedAt - t0) if app.finishedAt is not None else None,
        "sent to each MB": sent / 1e6,
    })
    result["ok"] = reader.received == sent and reader.bad == 0 and not loop.errors
    sc.close()
    return result


def scenarioMixed(loop, daemon, nvps, seconds, window, resultSize=1000, resultRate=10.0, commandInterval=1.0,
                  commandClients=2, tick=0.05):
    """
    A fleet at work: C{nvps} VPs, each with one client reading a stream
    of C{resultSize}-byte results (C{resultRate} a second, every byte
    checked) and C{commandClients} clients each sending a command every
    C{commandInterval} s and waiting for its reply, for C{seconds}.
    Measures the daemon's CPU per message (results and replies), the
    command latency, and RSS.
    """
    app = ScamperApp()
    rssStart = daemon.rss()
    scampers = connectScampers(loop, daemon, nvps, app, window, timeout=120 + nvps / 50)
    paths = [os.path.join(daemon.sockets, sc.socketName) for sc in scampers]
    loop.runUntil(lambda: all(os.path.exists(p) for p in paths), 60, "every socket")
    sinks = []
    for sc, path in zip(scampers, paths):
        sinks.append(SinkClient(loop, path))
    loop.runUntil(lambda: all(len(sc.channels) == 1 for sc in scampers), 60, "the result channels")
    resultChannel = [next(iter(sc.channels)) for sc in scampers]
    samples = []
    commanders = []
    for path in paths:
        for _ in range(commandClients):
            c = PingClient(loop, path, samples)
            c.running = False  # paced below, not closed-loop
            commanders.append(c)
    loop.runUntil(lambda: all(len(sc.channels) == 1 + commandClients for sc in scampers), 60,
                  "the command channels")
    state = {"sentResults": 0, "offsets": [0] * nvps, "asked": 0, "late": 0}
    rss0 = daemon.rss()
    cpu0, t0 = daemon.cpu(), time.monotonic()
    # Commands spread evenly over the interval, not all at once.
    due = [t0 + commandInterval * i / len(commanders) for i in range(len(commanders))]

    def pace():
        now = time.monotonic()
        if now - t0 >= seconds:
            return
        dueBytes = (int(resultRate * (now - t0)) + 1) * resultSize
        for i, sc in enumerate(scampers):
            while state["offsets"][i] < dueBytes:
                sc.sendData(resultChannel[i], patternSlice(state["offsets"][i], resultSize))
                state["offsets"][i] += resultSize
                state["sentResults"] += 1
        for i, c in enumerate(commanders):
            if now >= due[i]:
                if c.waiting:
                    state["late"] += 1
                else:
                    c.ask()
                    state["asked"] += 1
                due[i] += commandInterval

    loop.every(tick, pace)
    try:
        loop.runUntil(lambda: time.monotonic() - t0 >= seconds, seconds + 30, "the mixed-fleet run")
    finally:
        loop.timers = [t for t in loop.timers if t[2] is not pace]
    sent = list(state["offsets"])
    loop.runUntil(lambda: all(s.received >= n for s, n in zip(sinks, sent))
                  and not any(c.waiting for c in commanders), 60, "the last results and replies")
    t1, cpu1 = time.monotonic(), daemon.cpu()
    rss1 = daemon.rss()
    answered = sum(c.done for c in commanders)
    messages = state["sentResults"] + answered
    samples.sort()
    ok = (not loop.errors and all(s.received == n and s.bad == 0 for s, n in zip(sinks, sent))
          and answered == state["asked"] and daemon.alive())
    for c in commanders + sinks:
        c.close()
    for sc in scampers:
        sc.close()
    return {
        "daemon CPU us/message": (cpu1 - cpu0) / max(messages, 1) * 1e6,
        "daemon CPU %": (cpu1 - cpu0) / (t1 - t0) * 100,
        "command p50 us": percentile(samples, 0.5) / 1e3,
        "command p99 us": percentile(samples, 0.99) / 1e3,
        "results/s": state["sentResults"] / (t1 - t0),
        "commands/s": answered / (t1 - t0),
        "commands late": state["late"],
        "RSS MB": rss1 / 1e6,
        "RSS per VP KB": (rss1 - rssStart) / nvps / 1024,
        "RSS growth MB": (rss1 - rss0) / 1e6,
        "messages": messages,
        "ok": ok,
    }


# Orchestration -------------------------------------------------------------


def summarise(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values), "n": len(values),
            "spread %": (max(values) - min(values)) / med * 100 if med else 0.0}


def machine():
    info = {"python": platform.python_version(), "kernel": platform.release(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["memory GB"] = round(int(f.readline().split()[1]) / 1e6, 1)
    except OSError:
        pass
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "scamper"], capture_output=True, text=True)
        info["scamper package"] = out.stdout.strip() or None
    except OSError:
        info["scamper package"] = None
    try:
        import twisted

        info["twisted"] = twisted.__version__
    except ImportError:
        pass
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "sc_remoted"], capture_output=True, text=True)
        info["commit"] = rev.stdout.strip() + ("+dirty (sc_remoted/ has uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        pass
    return info


def runCase(kind, name, fn, args, zombie, keepLogs, log, cPath):
    daemon = Daemon(kind, zombie=zombie, cPath=cPath)
    loop = Loop()
    try:
        result = fn(loop, daemon, *args)
        if loop.errors:
            result["ok"] = False
            result["error"] = "; ".join(loop.errors[:5])
        problems = daemon.problems()
        if problems:
            result["daemon log"] = problems
        if not daemon.alive():
            result["ok"] = False
            result["daemon died"] = daemon.proc.returncode
    except BenchError as e:
        # Keep what was measured before the failure.
        result = dict(loop.result, ok=False, error=str(e))
        problems = daemon.problems()
        if problems:
            result["daemon log"] = problems
    finally:
        loop.closeAll()
        daemon.cleanup(keep=keepLogs)
    log("  %-5s %-22s %s" % (kind, name, brief(result)))
    return result


def brief(result):
    parts = []
    for key, value in result.items():
        if key in ("daemon log",):
            continue
        if isinstance(value, float):
            parts.append("%s=%.4g" % (key, value))
        else:
            parts.append("%s=%s" % (key, value))
    return ", ".join(parts)


KEY_METRICS = {
    "down": ["MB/s", "daemon CPU s/GB", "generator busy"],
    "up": ["MB/s", "daemon CPU s/GB", "generator busy"],
    "latency": ["p50 us", "p99 us", "round trips/s"],
    "latency-quickack": ["p50 us", "p99 us", "round trips/s", "daemon CPU us/round trip"],
    "scale": ["all sockets s", "RSS per VP KB", "idle CPU %", "fresh round trips/s",
              "daemon CPU us/fresh round trip"],
    "churn": ["cycles/s", "daemon CPU ms/cycle", "fd growth", "socket files left", "RSS growth KB"],
    "slow-client": ["reader MB/s", "reader max gap ms", "RSS growth MB", "stuck closed after s"],
    "mixed": ["daemon CPU us/message", "command p99 us", "RSS MB", "RSS per VP KB", "results/s"],
}

# Which way is better for each metric, for the target column: "higher",
# "lower", or "zero" (must be 0 for both); others are not targets.
BETTER = {
    "MB/s": "higher", "daemon CPU s/GB": "lower", "p50 us": "lower", "p99 us": "lower",
    "round trips/s": "higher", "daemon CPU us/round trip": "lower", "all sockets s": "lower",
    "RSS per VP KB": "lower", "fresh round trips/s": "higher", "daemon CPU us/fresh round trip": "lower",
    "cycles/s": "higher", "daemon CPU ms/cycle": "lower", "fd growth": "zero", "socket files left": "zero",
    "reader MB/s": "higher", "reader max gap ms": "lower", "RSS growth MB": "lower",
    "daemon CPU us/message": "lower", "command p99 us": "lower", "RSS MB": "lower",
}


def target(key, ours, c):
    """Whether ours meets the target on one row: at least C's figure."""
    way = BETTER.get(key)
    if way is None or ours is None:
        return "-"
    if way == "zero":
        return "met" if ours == 0 else "no"
    if not c:
        return "-"
    return "met" if (ours >= c if way == "higher" else ours <= c) else "no"


def windowText(window):
    return "%dM" % (window >> 20) if window and window % (1 << 20) == 0 else str(window or "-")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--daemons", default="ours,c", help="comma-separated: ours, c (default both)")
    p.add_argument("--scenarios", default="down,up,latency,latency-quickack,scale,churn,slow-client,mixed",
                   help="comma-separated (default all); latency-quickack is latency with TCP_QUICKACK "
                        "forced on the fake scamper, which real scamper does not do")
    p.add_argument("--reps", type=int, default=3, help="repetitions of every measurement (default 3)")
    p.add_argument("--slow-seconds", type=float, default=20,
                   help="seconds of the slow-client scenario (default 20)")
    p.add_argument("--slow-rate", type=float, default=8,
                   help="MB/s scamper sends to each of its two clients in the slow-client scenario (default 8)")
    p.add_argument("--mb", type=float, default=200, help="MB streamed in the down/up scenarios (default 200)")
    p.add_argument("--msg-size", type=int, default=8000, help="message size in bytes (default 8000)")
    p.add_argument("--sizes", default="1000,4000,16000,65535",
                   help="further message sizes for the throughput-by-size plot ('' for none)")
    p.add_argument("--sweep-mb", type=float, default=50, help="MB per run for the other sizes (default 50)")
    p.add_argument("--window", type=int, default=16 << 20,
                   help="bytes the fake scamper keeps unacknowledged at most (default 16 MiB; real scamper has no bound)")
    p.add_argument("--channels", default="1,16,64", help="concurrent channels for the latency scenarios")
    p.add_argument("--latency-seconds", type=float, default=4.0)
    p.add_argument("--vps", default="1000,5000,10000", help="VP counts for the scale scenario")
    p.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement (default 10)")
    p.add_argument("--fresh-minimum", type=int, default=10000, metavar="N",
                   help="scale: rounds of fresh-channel round trips through every VP until at least N in all "
                        "(default 10000; one round at least)")
    p.add_argument("--churn", default="5000,20000", help="churn cycles, comma-separated (default 5000,20000)")
    p.add_argument("--mixed-vps", type=int, default=1000, help="VPs of the mixed-fleet scenario (default 1000)")
    p.add_argument("--mixed-seconds", type=float, default=60,
                   help="seconds of the mixed-fleet scenario (default 60)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 repetition, 2 MB, 10 VPs, 50 churn cycles, a 2-s mixed fleet of 10, "
                        "no size sweep")
    p.add_argument("--json", default=None, help="write all results here (default bench/results-DATE.json)")
    p.add_argument("--plot", default=None, help="write the plot here (PNG; needs matplotlib)")
    p.add_argument("--ours-reactor", default=None, metavar="NAME",
                   help="run ours with twistd --reactor=NAME (e.g. epoll, Twisted's own; default: the daemon's, "
                        "sc_remoted/reactor.py)")
    p.add_argument("--ours-option", action="append", default=[], metavar="OPTION",
                   help="one more option of twistd sc_remoted for ours, repeatable (e.g. --ours-option=--log-level "
                        "--ours-option=warn); recorded in the results")
    p.add_argument("--socket-base", default="/tmp", metavar="DIR",
                   help="make each daemon's directory, its sockets directory inside, in DIR (default /tmp; "
                        "/dev/shm for tmpfs)")
    p.add_argument("--c-daemon", default=None, help="path of the C sc_remoted (default /usr/bin/sc_remoted)")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin the daemon and the generator to separate CPUs")
    p.add_argument("--keep-logs", action="store_true", help="keep each daemon's directory and log (in --socket-base)")
    p.add_argument("--report", metavar="JSON", default=None,
                   help="print the tables of a saved run (and --plot it) instead of measuring")
    p.add_argument("--compare", metavar="JSON", nargs=2, default=None,
                   help="compare two saved runs (BEFORE AFTER) of both daemons, as reStructuredText")
    opts = p.parse_args(argv)
    if opts.report:
        return report(opts.report, opts.plot)
    if opts.compare:
        return compare(*opts.compare)

    if opts.quick:
        opts.reps = 1
        opts.mb = min(opts.mb, 2)
        opts.sizes = ""
        opts.vps = "10"
        opts.idle = min(opts.idle, 0.5)
        opts.fresh_minimum = 0
        opts.churn = "50"
        opts.mixed_vps = min(opts.mixed_vps, 10)
        opts.mixed_seconds = min(opts.mixed_seconds, 2)
        opts.latency_seconds = min(opts.latency_seconds, 0.3)

    global OURS_REACTOR, OURS_OPTIONS, SOCKET_BASE
    OURS_REACTOR = opts.ours_reactor
    OURS_OPTIONS = list(opts.ours_option)
    SOCKET_BASE = opts.socket_base
    raiseNofile()
    pinCpus(not opts.no_pin)
    daemons = [d.strip() for d in opts.daemons.split(",") if d.strip()]
    cPath = opts.c_daemon or cDaemonPath()
    if "c" in daemons and not cPath:
        print("sc_bench: the C sc_remoted is not installed (apt-get install scamper); measuring ours only",
              file=sys.stderr)
        daemons.remove("c")
    scenarios = [s.strip() for s in opts.scenarios.split(",") if s.strip()]
    nbytes = int(opts.mb * 1e6)
    sweepBytes = int(opts.sweep_mb * 1e6)
    sizes = [int(s) for s in opts.sizes.split(",") if s.strip()]
    vps = [int(v) for v in opts.vps.split(",") if v.strip()]
    chans = [int(c) for c in opts.channels.split(",") if c.strip()]
    churns = [int(c) for c in opts.churn.split(",") if c.strip()]

    # (scenario, case name, function, args, zombie time, x value, the fake scamper's window)
    cases = []
    for sc in scenarios:
        if sc in ("down", "up"):
            fn = scenarioDown if sc == "down" else scenarioUp
            cases.append((sc, "%d B" % opts.msg_size, fn, (nbytes, opts.msg_size, opts.window), 0, opts.msg_size,
                          opts.window))
            for size in sizes:
                if size != opts.msg_size:
                    cases.append((sc + " sweep", "%d B" % size, fn, (sweepBytes, size, opts.window), 0, size,
                                  opts.window))
        elif sc in ("latency", "latency-quickack"):
            quick = sc.endswith("quickack")
            for c in chans:
                cases.append((sc, "%d channel%s" % (c, "s" if c > 1 else ""), scenarioLatency,
                              (c, opts.latency_seconds, 5, quick), 0, c, WINDOW))
        elif sc == "scale":
            for n in vps:
                name = "%d VPs" % n
                if n > fdCapacity():
                    print("sc_bench: %d VPs need more than the hard RLIMIT_NOFILE of %d descriptors "
                          "(two per VP); measuring %d" % (n, resource.getrlimit(resource.RLIMIT_NOFILE)[1],
                                                          fdCapacity()), flush=True)
                    n = fdCapacity()
                    name = "%d VPs*" % n
                cases.append((sc, name, scenarioScale, (n, opts.idle, opts.fresh_minimum), 900, n, WINDOW))
        elif sc == "churn":
            for n in churns:
                cases.append((sc, "%d cycles" % n, scenarioChurn, (n,), 0, n, WINDOW))
        elif sc == "slow-client":
            rate = opts.slow_rate * 1e6
            cases.append((sc, "%g MB/s each" % opts.slow_rate, scenarioSlowClient, (opts.slow_seconds, rate),
                          0, opts.slow_rate, WINDOW))
        elif sc == "mixed":
            cases.append((sc, "%d VPs" % opts.mixed_vps, scenarioMixed,
                          (opts.mixed_vps, opts.mixed_seconds, opts.window), 0, opts.mixed_vps, opts.window))
        else:
            p.error("unknown scenario %r" % (sc,))

    started = datetime.datetime.now(datetime.timezone.utc)
    info = machine()
    print("sc_bench %s: daemons %s, %d repetition(s), sockets under %s%s; machine %s" % (
        started.strftime("%Y-%m-%d %H:%M UTC"), "+".join(daemons), opts.reps, SOCKET_BASE,
        ", ours with " + " ".join(OURS_OPTIONS) if OURS_OPTIONS else "", json.dumps(info)), flush=True)

    def log(text):
        print(text, flush=True)

    results = []
    for scenario, name, fn, args, zombie, x, window in cases:
        print("%s, %s:" % (scenario, name), flush=True)
        runs = {d: [] for d in daemons}
        for rep in range(opts.reps):
            for d in (daemons if rep % 2 == 0 else list(reversed(daemons))):
                runs[d].append(runCase(d, name, fn, args, zombie, opts.keep_logs, log, cPath))
        entry = {"scenario": scenario, "case": name, "x": x, "window": window, "runs": runs, "summary": {}}
        for d in daemons:
            metrics = {}
            for key in runs[d][0] if runs[d] else []:
                vals = [r.get(key) for r in runs[d]]
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                    metrics[key] = summarise(vals)
            metrics["ok"] = all(r.get("ok") for r in runs[d])
            entry["summary"][d] = metrics
        results.append(entry)

    finished = datetime.datetime.now(datetime.timezone.utc)
    doc = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((finished - started).total_seconds()),
        "command": " ".join([os.path.basename(sys.argv[0])] + (argv if argv is not None else sys.argv[1:])),
        "machine": info,
        "options": vars(opts),
        "results": results,
    }
    path = opts.json or os.path.join(HERE, "results-%s.json" % started.strftime("%Y%m%dT%H%M%S"))
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    print()
    print(table(results, daemons))
    print("\nfull results: %s (%d s)" % (path, doc["seconds"]))
    if opts.plot:
        plot(results, daemons, opts.plot)
    failed = [(e["scenario"], e["case"], d) for e in results for d in daemons if not e["summary"][d]["ok"]]
    if failed:
        print("CORRECTNESS FAILURES: %s" % (failed,))
        for e in results:
            for d in daemons:
                for r in e["runs"][d]:
                    if not r.get("ok"):
                        print("  %s %s %s: %s" % (e["scenario"], e["case"], d, brief(r)))
        return 1
    return 0


def fmt(summary):
    if summary is None:
        return "-"
    m = summary["median"]
    text = "%.3g" % m if abs(m) < 1000 else "%.0f" % m
    if summary["n"] > 1:
        text += " ±%.0f%%" % (summary["spread %"] / 2)
    return text


def caseMetrics(scenario):
    """The metrics the tables show for a case of C{scenario}: a sweep shows its first only."""
    keys = KEY_METRICS.get(scenario.split()[0], [])
    return keys[:1] if scenario.endswith("sweep") else keys


def rstGrid(head, rows):
    """C{head} and C{rows} as a reStructuredText simple table."""
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    rule = "  ".join("=" * w for w in widths)

    def line(r):
        return "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()

    return "\n".join([rule, line(head), rule] + [line(r) for r in rows] + [rule])


def metricRows(entry, daemons):
    """
    The rows of one case in both tables: for each of its key metrics, the
    metric, each daemon's cell, the ours/C ratio of the medians and the
    target (L{target}).
    """
    for key in caseMetrics(entry["scenario"]):
        summaries = [entry["summary"][d].get(key) for d in daemons]
        meds = {d: s["median"] if s else None for d, s in zip(daemons, summaries)}
        o, c = meds.get("ours"), meds.get("c")
        ratio = "%.2f" % (o / c) if o is not None and c else "-"
        yield key, [fmt(s) for s in summaries], ratio, target(key, o, c)


def table(results, daemons):
    """Medians with half the min-max spread, and ours/C ratios of medians."""
    both = "ours" in daemons and "c" in daemons
    head = "%-16s %-14s %-6s %-30s %16s" % ("scenario", "case", "window", "metric",
                                             "ours" if "ours" in daemons else "")
    if "c" in daemons:
        head += " %16s" % "C"
    if both:
        head += " %8s %6s" % ("ours/C", "target")
    lines = [head, "-" * len(head)]
    for e in results:
        window = windowText(e.get("window"))
        for key, cells, ratio, met in metricRows(e, daemons):
            line = "%-16s %-14s %-6s %-30s" % (e["scenario"], e["case"], window, key)
            line += "".join(" %16s" % cell for cell in cells)
            if both:
                line += " %8s %6s" % (ratio, met)
            lines.append(line)
        oks = ", ".join("%s %s" % (d, "ok" if e["summary"][d]["ok"] else "FAILED") for d in daemons)
        lines.append("%-16s %-14s %-6s %-30s %s" % (e["scenario"], e["case"], window, "correctness", oks))
    return "\n".join(lines)


def rstTable(results, daemons):
    """The table as reStructuredText, for docs/performance.rst."""
    rows = []
    for e in results:
        window = windowText(e.get("window"))
        for key, cells, ratio, met in metricRows(e, daemons):
            rows.append([e["scenario"], e["case"], window, key] + cells + [ratio, met])
        row = [e["scenario"], e["case"], window, "correct (all runs)"]
        row += ["yes" if e["summary"][d]["ok"] else "**NO**" for d in daemons] + ["", ""]
        rows.append(row)
    head = ["scenario", "case", "window", "metric"] + [{"ours": "ours", "c": "C"}[d] for d in daemons]
    head += ["ours/C", "target"]
    return rstGrid(head, rows)


def compare(beforePath, afterPath):
    """
    Two saved runs side by side: our daemon before and after a change,
    each beside the C daemon of its own run (absolute figures drift from
    run to run; the ratio to C from the same run is what compares).
    """
    runs = []
    for path in (beforePath, afterPath):
        with open(path) as f:
            runs.append({(e["scenario"], e["case"]): e for e in json.load(f)["results"]})
    before, after = runs
    head = ["scenario", "case", "metric", "ours before", "C", "ours/C", "ours after", "C", "ours/C"]
    rows = []
    for key, entry in after.items():
        if key not in before:
            continue
        for metric in caseMetrics(key[0]):
            row = list(key) + [metric]
            for e in (before[key], entry):
                ours, c = e["summary"].get("ours", {}).get(metric), e["summary"].get("c", {}).get(metric)
                ratio = "%.2f" % (ours["median"] / c["median"]) if ours and c and c["median"] else "-"
                row += [fmt(ours), fmt(c), ratio]
            rows.append(row)
    print(rstGrid(head, rows))
    return 0


def report(path, plotPath=None):
    """Print a saved run's tables (plain and reStructuredText), replot it."""
    with open(path) as f:
        doc = json.load(f)
    results = doc["results"]
    daemons = [d for d in ("ours", "c") if results and d in results[0]["summary"]]
    print(table(results, daemons))
    print()
    print(rstTable(results, daemons))
    if plotPath:
        plot(results, daemons, plotPath)
    return 0


def plot(results, daemons, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("sc_bench: matplotlib is not installed (pip install -r bench/requirements.txt); no plot")
        return
    labels = {"ours": "ours (Twisted)", "c": "C sc_remoted"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, direction, title in ((axes[0], "down", "scamper → client"), (axes[1], "up", "client → scamper")):
        for d in daemons:
            pts = []
            for e in results:
                if e["scenario"] in (direction, direction + " sweep"):
                    s = e["summary"][d].get("MB/s")
                    if s:
                        pts.append((e["x"], s["median"], s["min"], s["max"]))
            pts.sort()
            if pts:
                xs = [p[0] for p in pts]
                ax.errorbar(xs, [p[1] for p in pts], yerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
                            marker="o", capsize=3, label=labels[d])
        ax.set_xscale("log")
        ax.set_xlabel("message size, bytes" if direction == "down" else "client write size, bytes")
        ax.set_ylabel("MB/s")
        ax.set_title("throughput, " + title)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax = axes[2]
    for d in daemons:
        pts = sorted((e["x"], e["summary"][d]["RSS MB"]["median"]) for e in results
                     if e["scenario"] == "scale" and e["summary"][d].get("RSS MB"))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=labels[d])
    ax.set_xlabel("connected VPs")
    ax.set_ylabel("daemon RSS, MB")
    ax.set_title("memory by VP count")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print("plot: %s" % path)


if __name__ == "__main__":
    sys.exit(main())
