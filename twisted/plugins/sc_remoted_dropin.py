from twisted.application.service import ServiceMaker
from twisted.application.reactors import Reactor

scRemoted = ServiceMaker(
    "sc_remoted",
    "sc_remoted.tap",
    "Controller for remote scamper instances (scamper -R host:port).",
    "sc_remoted",
)

# twistd --reactor=sc_remoted: sc_remoted/reactor.py.
scRemotedReactor = Reactor(
    "sc_remoted",
    "sc_remoted.reactor",
    "epoll, without a log context per descriptor event (sc_remoted).",
)
