"""
The lifecycle of a vantage point, as one table.

A vantage point is I{registering} from scamper's MASTER_NEW until its
socket exists, I{connected} while a scamper connection serves it, a
I{zombie} between the loss of that connection and a resume, and I{gone}
once freed.  Every change of state is one row of L{TRANSITIONS}; anything
else is a bug in the caller and raises L{LifecycleError}, so no path can
free a session twice or resume one that is gone.

The table is pure data: what each change I{does} (logging, timers, socket
files, observers) is the controller's, which applies a transition first
and acts on the result.  docs/architecture.rst draws the same table.
"""

import enum
from typing import Dict, Tuple


class State(enum.Enum):
    """Where a vantage point is in its life."""

    REGISTERING = "registering"
    """MASTER_NEW accepted; its socket is being made, MASTER_ID not yet sent."""

    CONNECTED = "connected"
    """A scamper connection serves it: frames flow both ways."""

    ZOMBIE = "zombie"
    """Its connection is gone; its state waits, up to the zombie time, for a resume."""

    GONE = "gone"
    """Freed: no socket, no channels, its magic forgotten.  Final."""


class Input(enum.Enum):
    """What can happen to a vantage point."""

    REGISTERED = "registered"
    """Its socket exists and MASTER_ID went out."""

    SOCKET_FAILED = "socket failed"
    """Its socket could not be made: the registration is abandoned."""

    RESUME_ACCEPTED = "resume accepted"
    """A MASTER_RES passed the resume checks: MASTER_OK, retransmission."""

    TAKEOVER = "takeover"
    """
    A MASTER_RES passed the checks while an older connection still serves
    the session: the older one is dropped, the new one serves.
    """

    RESUME_REJECTED = "resume rejected"
    """A MASTER_RES failed the checks: MASTER_REJ; the session is unchanged."""

    LINK_LOST = "link lost"
    """The connection ended (closed, reset, silent for 60 s): keep it for a resume."""

    RELEASED = "released"
    """The connection ended and no zombie is to be kept (zombie time 0)."""

    PROTOCOL_ERROR = "protocol error"
    """scamper broke the protocol: its state is not to be trusted, no zombie."""

    EXPIRED = "expired"
    """The zombie time passed without a resume."""

    REPLACED = "replaced"
    """A MASTER_NEW came with this zombie's magic: scamper dropped the old state."""

    EVICTED = "evicted"
    """The oldest zombie, freed to keep within the max-zombies limit."""

    FREED = "freed"
    """Shutdown, or an embedding application freeing it."""


REGISTERING, CONNECTED, ZOMBIE, GONE = State
_LIVE = (REGISTERING, CONNECTED, ZOMBIE)

TRANSITIONS: Dict[Tuple[State, Input], State] = {
    (REGISTERING, Input.REGISTERED): CONNECTED,
    (REGISTERING, Input.SOCKET_FAILED): GONE,
    (CONNECTED, Input.TAKEOVER): CONNECTED,
    (CONNECTED, Input.RESUME_REJECTED): CONNECTED,
    (CONNECTED, Input.LINK_LOST): ZOMBIE,
    (CONNECTED, Input.RELEASED): GONE,
    (CONNECTED, Input.PROTOCOL_ERROR): GONE,
    (ZOMBIE, Input.RESUME_ACCEPTED): CONNECTED,
    (ZOMBIE, Input.RESUME_REJECTED): ZOMBIE,
    (ZOMBIE, Input.EXPIRED): GONE,
    (ZOMBIE, Input.REPLACED): GONE,
    (ZOMBIE, Input.EVICTED): GONE,
}
TRANSITIONS.update({(state, Input.FREED): GONE for state in _LIVE})


class LifecycleError(Exception):
    """An input the current state does not take: a bug, never a peer's fault."""


def advance(state: State, event: Input) -> State:
    """
    The state after C{event} in C{state}.

    @raise LifecycleError: if the table has no such row.
    """
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise LifecycleError("%s in state %s" % (event.value, state.value)) from None
