"""
Network namespaces joined to the root namespace by a veth pair, for the
tests that put real scampers behind a real link (tests/test_netns.py):
outages (the link's root end set down), an address change, a slow link
(a tbf qdisc).  Linux only, as root, with iproute2's C{ip}, C{tc} and
C{ss}.

Each L{NetnsLink} is one namespace and one veth pair carrying
documentation addresses only: a /28 of 198.51.100.0/24 and a /64 of
2001:db8:1234::/48 of its own, so that several links can exist at once.
Names carry this process's PID and a counter (a veth name has at most 15
characters).  The test's clean-up removes everything; if the process is
ended first, an atexit hook and handlers chained in front of SIGTERM,
SIGINT and SIGHUP end the processes started in our namespaces (by PID)
and remove the namespaces and veths; and each run first removes the
links and namespaces that a run killed outright (SIGKILL) left, known by
the dead PID in their names.

The commands run synchronously: each takes milliseconds, which the
daemon sharing the test's reactor does not notice.
"""

import atexit
import fcntl
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence

from twisted.trial.unittest import SkipTest

from .realprocs import requireRealScamper

NAMESPACE_PREFIX = "scr-netns-"
_NAMESPACE = re.compile(r"^scr-netns-(\d+)-(\d+)$")
_VETH = re.compile(r"^scr(\d+)[rn](\d+)$")
# The /28 slots of 198.51.100.0/24 tried in turn, each with a /64 of
# 2001:db8:1234::/48; slot 3 puts the namespace end at 198.51.100.55 and
# 2001:db8:1234::1, as in the man page's examples.
_SLOTS = list(range(3, 16)) + [1, 2]


def _address6(slot: int, host: int) -> str:
    """Host C{host} of slot C{slot}'s /64, as the kernel and scamper write it."""
    return str(ipaddress.IPv6Address("2001:db8:1234:%x::%x" % ((slot - 3) % 16, host)))
_LOCK = "/tmp/sc_remoted-netns.lock"


def ip(*argv: str, check: bool = True) -> str:
    """Run C{ip ARGV} and return its output; fail with its stderr."""
    return command("ip", *argv, check=check)


def command(*argv: str, check: bool = True) -> str:
    path = shutil.which(argv[0])
    if path is None:
        raise RuntimeError("%s is not installed" % (argv[0],))
    done = subprocess.run([path, *argv[1:]], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), done.returncode, done.stderr.strip()))
    return done.stdout


def requireNamespaces() -> None:
    """
    Skip the calling test unless scamper and its tools are installed, we
    are root, and a network namespace with a veth pair can be made here.
    """
    requireRealScamper()
    for program in ("ip", "tc", "ss"):
        if shutil.which(program) is None:
            raise SkipTest("not installed: %s (apt-get install iproute2)" % (program,))
    global _probed
    if _probed is None:
        _probed = _probe()
    if _probed:
        raise SkipTest("network namespaces are not available here: %s" % (_probed,))


_probed: Optional[str] = None


def _probe() -> str:
    """Why a namespace and a veth pair cannot be made; C{""} if they can."""
    removeStale()
    link = NetnsLink()
    try:
        link.create()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return str(e)
    finally:
        link.remove()
    return ""


# Clean-up when the process ends before its tests' clean-up -------------

_live: Dict[str, "NetnsLink"] = {}
# The handlers ours replaced, while any link exists: put back when the
# last one is removed, so that no later test runs with ours in front.
_previousHandlers: Dict[int, object] = {}
_atexitRegistered = False
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _removeAll() -> None:
    for link in list(_live.values()):
        link.remove(endProcesses=True)


def _handler(signum, frame) -> None:
    previous = _previousHandlers.get(signum, signal.SIG_DFL)
    _removeAll()
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _linkAdded(link: "NetnsLink") -> None:
    global _atexitRegistered
    if not _atexitRegistered:
        atexit.register(_removeAll)
        _atexitRegistered = True
    if not _live:
        for signum in _SIGNALS:
            _previousHandlers[signum] = signal.signal(signum, _handler)
    _live[link.namespace] = link


def _linkRemoved(link: "NetnsLink") -> None:
    if _live.pop(link.namespace, None) is None or _live:
        return
    for signum, previous in list(_previousHandlers.items()):
        if signal.getsignal(signum) is _handler:
            signal.signal(signum, previous)  # type: ignore[arg-type]
    _previousHandlers.clear()


def _endProcesses(namespace: str) -> None:
    """SIGKILL, by PID, every process in C{namespace}."""
    for word in ip("netns", "pids", namespace, check=False).split():
        try:
            os.kill(int(word), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass


def _alive(pid: int) -> bool:
    return os.path.exists("/proc/%d" % (pid,))


def removeStale() -> None:
    """
    Remove the namespaces and veths of runs whose process is gone (killed
    with SIGKILL, which no handler sees), and end by PID the processes
    still in those namespaces: only a run of these tests makes them, and
    only its scampers run in them.
    """
    for line in ip("-o", "link", "show", check=False).splitlines():
        fields = line.split(":", 2)
        if len(fields) < 3:
            continue
        name = fields[1].strip().split("@", 1)[0]
        match = _VETH.match(name)
        if match is not None and not _alive(int(match.group(1))):
            ip("link", "del", name, check=False)
    for line in ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAMESPACE.match(name)
        if match is not None and not _alive(int(match.group(1))):
            _endProcesses(name)
            ip("netns", "del", name, check=False)


# Links ---------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """A TCP connection as C{ss -tin} lists it."""

    state: str
    local: str
    localPort: int
    peer: str
    peerPort: int
    info: str

    @property
    def retransmitted(self) -> int:
        """Segments retransmitted over the connection's life (C{retrans:N/TOTAL})."""
        match = re.search(r"\bretrans:\d+/(\d+)", self.info)
        return int(match.group(1)) if match else 0


def _endpoint(text: str):
    host, port = text.rsplit(":", 1)
    return host.strip("[]").split("%", 1)[0], int(port) if port.isdigit() else 0


def parseConnections(output: str) -> List[Connection]:
    """The connections in C{ss -tanHi} output (one line each, then indented info lines)."""
    found: List[Connection] = []
    current: Optional[List[str]] = None
    info: List[str] = []

    def flush() -> None:
        if current is not None and len(current) >= 5:
            local, localPort = _endpoint(current[3])
            peer, peerPort = _endpoint(current[4])
            found.append(Connection(current[0], local, localPort, peer, peerPort, " ".join(info)))

    for line in output.splitlines():
        if line[:1].isspace():
            info.append(line.strip())
            continue
        flush()
        current, info = line.split(), []
    flush()
    return found


_counter = itertools.count(1)


class NetnsLink:
    """
    A namespace whose veth end carries the namespace's addresses, and the
    root end with an address in the same prefix (the route to the
    namespace).  Setting the root end down cuts the link: nothing crosses
    and neither end hears of it.  The namespace end's neighbour entries for
    the root addresses are pinned, so that while the link is down packets
    vanish silently, as on a cut beyond the first hop, rather than fail
    with EHOSTUNREACH once the namespace's ARP probes go unanswered.

    @ivar namespace: the namespace's name.
    @ivar rootVeth: the veth in the root namespace.
    @ivar nsVeth: the veth in the namespace.
    @ivar rootAddress4: the root end's IPv4 address (what scamper dials).
    @ivar address4: the namespace end's IPv4 address now.
    """

    def __init__(self) -> None:
        self.number = next(_counter)
        pid = os.getpid()
        self.namespace = "%s%d-%d" % (NAMESPACE_PREFIX, pid, self.number)
        self.rootVeth = "scr%dr%d" % (pid, self.number)
        self.nsVeth = "scr%dn%d" % (pid, self.number)
        assert len(self.rootVeth) <= 15, self.rootVeth
        self.slot = 0
        self.address4 = ""
        self.created = False

    # Addresses -----------------------------------------------------------

    def _v4(self, host: int) -> str:
        return "198.51.100.%d" % (16 * self.slot + host,)

    def _v6(self, host: int) -> str:
        return _address6(self.slot, host)

    @property
    def rootAddress4(self) -> str:
        return self._v4(1)

    @property
    def rootAddress6(self) -> str:
        return self._v6(2)

    @property
    def address6(self) -> str:
        return self._v6(1)

    def spareAddress4(self) -> str:
        """Another IPv4 address of the link's prefix, for an address change."""
        return self._v4(8)

    def _freeSlot(self) -> int:
        used = ip("-o", "addr", "show", check=False)
        for slot in _SLOTS:
            v4 = "198.51.100.%d/28" % (16 * slot + 1,)
            v6 = _address6(slot, 2) + "/64"
            if v4 not in used and v6 not in used:
                return slot
        raise RuntimeError("every 198.51.100.0/28 slot is in use")

    # Life ------------------------------------------------------------------

    def create(self) -> "NetnsLink":
        _linkAdded(self)
        self.created = True
        ns, root = self.namespace, self.rootVeth
        ip("netns", "add", ns)
        ip("link", "add", root, "type", "veth", "peer", "name", self.nsVeth, "netns", ns)
        # Keep the IPv6 addresses while the link is down (they would go).
        _sysctl("net/ipv6/conf/%s/keep_addr_on_down" % (root,), "1")
        self.inside("sysctl", "-qw", "net.ipv6.conf.%s.keep_addr_on_down=1" % (self.nsVeth,))
        # A slot no other link (of this run or another) has taken.
        with open(_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.slot = self._freeSlot()
            self.address4 = self._v4(7)
            ip("addr", "add", "%s/28" % (self.rootAddress4,), "dev", root)
            ip("addr", "add", "%s/64" % (self.rootAddress6,), "dev", root, "nodad")
        ip("link", "set", root, "up")
        self.inside("ip", "link", "set", "lo", "up")
        self.inside("ip", "addr", "add", "%s/28" % (self.address4,), "dev", self.nsVeth)
        self.inside("ip", "addr", "add", "%s/64" % (self.address6,), "dev", self.nsVeth, "nodad")
        self.inside("ip", "link", "set", self.nsVeth, "up")
        with open("/sys/class/net/%s/address" % (root,)) as f:
            mac = f.read().strip()
        for address in (self.rootAddress4, self.rootAddress6):
            self.inside("ip", "neigh", "replace", address, "lladdr", mac, "nud", "permanent", "dev", self.nsVeth)
        return self

    def remove(self, endProcesses: bool = False) -> None:
        """
        Delete the veth pair (both ends go with either) and the namespace.
        With C{endProcesses}, first SIGKILL by PID what runs inside it
        (only processes this run started can be there).
        """
        if not self.created:
            return
        if endProcesses:
            _endProcesses(self.namespace)
        ip("link", "del", self.rootVeth, check=False)
        ip("netns", "del", self.namespace, check=False)
        self.created = False
        _linkRemoved(self)

    def inside(self, *argv: str, check: bool = True) -> str:
        """Run C{argv} in the namespace."""
        return ip("netns", "exec", self.namespace, *argv, check=check)

    def prefix(self) -> Sequence[str]:
        """The argv prefix that runs a program in the namespace."""
        path = shutil.which("ip")
        assert path is not None
        return [path, "netns", "exec", self.namespace]

    # Faults ----------------------------------------------------------------

    def down(self) -> None:
        """Cut the link: its root end goes down."""
        ip("link", "set", self.rootVeth, "down")

    def up(self) -> None:
        ip("link", "set", self.rootVeth, "up")

    def changeAddress(self, address: str) -> None:
        """
        Give the namespace end C{address} in place of its IPv4 address (the
        old one goes first: deleting a primary address takes its
        secondaries with it).
        """
        self.inside("ip", "addr", "del", "%s/28" % (self.address4,), "dev", self.nsVeth)
        self.inside("ip", "addr", "add", "%s/28" % (address,), "dev", self.nsVeth)
        self.address4 = address

    def limitRate(self, rate: str, burst: str, latency: str) -> None:
        """A token bucket on what leaves the namespace (scamper's output)."""
        self.inside("tc", "qdisc", "add", "dev", self.nsVeth, "root", "tbf", "rate", rate, "burst", burst, "latency", latency)

    def qdiscStatistics(self) -> Dict[str, int]:
        """C{sent} bytes, C{packets}, C{dropped} and C{overlimits} of the namespace end's qdisc."""
        out = self.inside("tc", "-s", "qdisc", "show", "dev", self.nsVeth)
        match = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)", out)
        if match is None:
            raise AssertionError("no statistics in %r" % (out,))
        sent, packets, dropped, overlimits = (int(group) for group in match.groups())
        return {"sent": sent, "packets": packets, "dropped": dropped, "overlimits": overlimits}

    def connections(self, peerPort: int) -> List[Connection]:
        """The namespace's TCP connections to C{peerPort}, with C{ss -tin}'s details."""
        out = self.inside("ss", "-tanHi")
        return [c for c in parseConnections(out) if c.peerPort == peerPort]


def established(connections: Sequence[Connection]) -> Iterator[Connection]:
    return (c for c in connections if c.state == "ESTAB")


def _sysctl(key: str, value: str) -> None:
    with open("/proc/sys/" + key, "w") as f:
        f.write(value)


def makeLink(testCase) -> NetnsLink:
    """A new L{NetnsLink}, removed when C{testCase} is cleaned up."""
    link = NetnsLink()
    testCase.addCleanup(link.remove, True)
    return link.create()
