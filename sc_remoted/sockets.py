"""
The UNIX socket files this daemon makes: each vantage point's socket in
the sockets directory, and the mux socket.

All the file-system rules live here (docs/protocol.rst 5.10): a path
must fit in C{sun_path}; a socket is created under umask 077 and then
given its exact mode, so it is never more open than configured, not even
between bind() and chmod(); a symlink or any other file where a socket
would go is refused, never followed; and a socket file left by a dead
process (a connect to it is refused) is removed, while one a live
process listens on is left alone.
"""

import errno
import os
import re
import socket
import stat
from typing import List

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorUNIX
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import Factory

from .eventlog import EventLogger
from .localport import LocalPort
from .naming import LONGEST_IPV4_PEER, LONGEST_IPV6_PEER

log = EventLogger()

# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107

# The file names this daemon gives vantage points' sockets end in a
# peer's port: "[monitorname-]a.b.c.d:port" or "[monitorname-]v6addr.port".
_VP_SOCKET_NAME = re.compile(r"[:.][0-9]{1,5}$")


class SocketFileError(Exception):
    """A socket path that cannot be used; the message is one line for the operator."""


class PathTaken(SocketFileError):
    """A live socket, or a file that is not a socket, is where a socket would go."""


TAKEN = "cannot create socket %s: the path exists"


def checkPathLength(path: str) -> None:
    """
    @raise SocketFileError: if C{path} does not fit in a UNIX socket address.
    """
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SocketFileError("%s: longer than the %d-byte limit of a socket path" % (path, MAX_SOCKET_PATH))


def checkSocketsDirectory(directory: str, insecure: bool = False) -> None:
    """
    Check, at startup, that vantage points' sockets can be made in
    C{directory}: it is a directory; unless C{insecure}, it is this
    process's own and not writable by group or others (anyone else who
    can write there could put a symlink where a socket is about to be
    made, or replace a vantage point's socket); and the longest name a
    vantage point can get still fits in a socket path.

    @raise SocketFileError: saying what is wrong, without the path.
    """
    try:
        status = os.stat(directory)
    except OSError as e:
        raise SocketFileError(e.strerror)
    mode = status.st_mode
    if not stat.S_ISDIR(mode):
        raise SocketFileError("not a directory")
    if not insecure:
        if status.st_uid != os.geteuid():
            raise SocketFileError(
                "owned by uid %d, not by this daemon's uid %d (--insecure-sockets-dir to accept)"
                % (status.st_uid, os.geteuid())
            )
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise SocketFileError(
                "writable by group or others (mode %04o; --insecure-sockets-dir to accept)" % (stat.S_IMODE(mode),)
            )
    longest = os.path.join(directory, max(LONGEST_IPV4_PEER, LONGEST_IPV6_PEER, key=len))
    if len(os.fsencode(longest)) > MAX_SOCKET_PATH:
        raise SocketFileError(
            "too long; socket paths such as %s exceed the %d-byte limit" % (longest, MAX_SOCKET_PATH)
        )


def listenUNIX(reactor: IReactorUNIX, path: str, factory: Factory, mode: int) -> IListeningPort:
    """
    Listen on a new socket file at C{path} with permissions C{mode}.

    bind() creates the file with the umask's permissions, which hold until
    the chmod to C{mode}: the umask is 077 meanwhile.  Twisted's own
    C{Factory} start/stop messages are not logged (C{factory.noisy}).  On
    a real reactor the port is a L{LocalPort} (quiet, closed at once, its
    connections read without ancillary data); any other reactor (a test's
    memory reactor) is asked with its own C{listenUNIX}.

    @raise SocketFileError: if the path is too long, or anything (a
        symlink, a file, a live socket) is already there.
    """
    checkPathLength(path)
    real = isinstance(reactor, PosixReactorBase)
    if not real and os.path.lexists(path):
        # Twisted's own listenUNIX would leave the socket it made open
        # until the garbage collector finds it; LocalPort's bind() finds
        # the path taken itself, and closes its socket.
        raise PathTaken(TAKEN % (path,))
    umask = os.umask(0o077)
    try:
        if real:
            port = LocalPort(os.fsencode(path), factory, socket.SOMAXCONN, mode, reactor)
            port.startListening()
            return port
        return reactor.listenUNIX(path, factory, backlog=socket.SOMAXCONN, mode=mode)
    except CannotListenError as e:
        if getattr(e.socketError, "errno", None) == errno.EADDRINUSE:
            raise PathTaken(TAKEN % (path,)) from None
        raise SocketFileError("cannot create socket %s: %s" % (path, e.socketError)) from None
    finally:
        os.umask(umask)


def stopListening(port: IListeningPort) -> defer.Deferred:
    """Close C{port}; its file is gone when the Deferred fires."""
    return defer.maybeDeferred(port.stopListening)


def somebodyListens(path: str) -> bool:
    """
    Whether a process listens on the UNIX socket C{path}: a connect is
    refused when none does.  A full backlog (the connect would block)
    counts as listening.

    @raise OSError: for anything else that stops the probe (permissions,
        a path that is not a socket).
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return False
    except BlockingIOError:
        return True
    finally:
        probe.close()
    return True


def clearStaleSocket(path: str) -> bool:
    """
    Make way for a new socket at C{path}: a socket file no process
    listens on is removed; a live one, or a file that is not a socket, is
    refused.  Returns whether a file was removed.

    @raise PathTaken: if the path is taken.
    @raise SocketFileError: if it cannot be examined.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as e:
        raise SocketFileError("socket %s: %s" % (path, e.strerror))
    if not stat.S_ISSOCK(mode):
        raise PathTaken("socket %s: the path exists and is not a socket" % (path,))
    try:
        live = somebodyListens(path)
    except OSError as e:
        raise SocketFileError("socket %s: %s" % (path, e.strerror))
    if live:
        raise PathTaken("socket %s: another process is listening on it" % (path,))
    os.unlink(path)
    return True


def removeStaleSockets(directory: str) -> List[str]:
    """
    Remove the vantage point sockets a dead process left in C{directory};
    return their names.  A socket a live process still listens on
    (another sc_remoted, say) is left alone, as is any file that is not a
    socket or not named like a vantage point's.
    """
    removed: List[str] = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return removed
    for name in names:
        if _VP_SOCKET_NAME.search(name) is None:
            continue
        path = os.path.join(directory, name)
        try:
            if clearStaleSocket(path):
                log.info("removed stale socket {path} (nothing listens on it)", path=path, sc_event="socket.stale_removed")
                removed.append(name)
        except PathTaken:
            continue
        except SocketFileError as e:
            log.warn("cannot probe socket {path}: {error}", path=path, error=str(e), sc_event="socket.probe_failed")
        except OSError as e:
            log.warn("cannot remove stale socket {path}: {error}", path=path, error=e.strerror, sc_event="socket.stale")
    return removed
