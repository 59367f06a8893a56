"""
sc_remoted inside another Twisted application: run with

    twistd -n -y examples/embed.tac

It builds the same service tree as C{twistd sc_remoted} (here from the
plugin's own L{Options}), follows vantage points as they come and go,
and runs a second service beside it: a TCP port on 127.0.0.1 that
answers every connection with the current vantage points, one per line.

Configuration, from the environment:
  SC_REMOTED_PORT     where scamper connects (default 31337)
  SC_REMOTED_SOCKETS  the sockets directory (default /run/scamper)
  EXAMPLE_LIST_PORT   the listing service's endpoint
                      (default tcp:31338:interface=127.0.0.1)
"""

import os

from twisted.application import service, strports
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from sc_remoted.interfaces import IVantagePointObserver
from sc_remoted.tap import Options, makeService

log = Logger(namespace="embed")


@implementer(IVantagePointObserver)
class Follower:
    """Logs every change in the set of vantage points."""

    def vantagePointArrived(self, vp):
        log.info("arrived: {name} (monitorname {monitorname})", name=vp.name, monitorname=vp.monitorname)

    def vantagePointDisconnected(self, vp):
        log.info("zombie: {name}", name=vp.name)

    def vantagePointResumed(self, vp):
        log.info("resumed: {name}", name=vp.name)

    def vantagePointDeparted(self, vp):
        log.info("departed: {name}", name=vp.name)


class ListVantagePoints(Protocol):
    def connectionMade(self):
        for vp in self.factory.controller.vantagePoints():
            self.transport.write(("%s %s %s\n" % (vp.name, vp.peer, vp.state.value)).encode("utf-8"))
        self.transport.loseConnection()


options = Options()
options.parseOptions(
    [
        "--port", os.environ.get("SC_REMOTED_PORT", "31337"),
        "--sockets", os.environ.get("SC_REMOTED_SOCKETS", "/run/scamper"),
    ]
)
remoted = makeService(options)
controller = remoted.controller
controller.addObserver(Follower())

listing = Factory.forProtocol(ListVantagePoints)
listing.controller = controller

application = service.Application("scamper-fleet")
remoted.setServiceParent(application)
strports.service(
    os.environ.get("EXAMPLE_LIST_PORT", "tcp:31338:interface=127.0.0.1"), listing
).setServiceParent(application)
