"""
Telling a live UNIX socket from one a dead process left behind.
"""

import socket


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
