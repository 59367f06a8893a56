"""
What C{python3 -W default} used to show from our code: a socket left
open when a vantage point's socket file cannot be made, and pyOpenSSL's
deprecation of its own certificate and key objects in the mux TLS
client recipe.  Each is checked with every warning recorded.
"""

import gc
import os
import warnings

from twisted.internet import reactor
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from sc_remoted.mux.client import clientTLSOptions
from sc_remoted.sockets import PathTaken, listenUNIX

from .certs import CertificateAuthority, writeFile
from .realprocs import makeSocketsDirectory


def recordedWarnings(action):
    """Run C{action} (and collect the garbage it left); the warnings it caused."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
        gc.collect()
    return [str(w.message) for w in caught]


class SocketFileTests(SynchronousTestCase):
    def test_pathTakenLeavesNoSocket(self):
        """A file where a vantage point's socket would go: refused, and no socket left open."""
        directory = makeSocketsDirectory(self)
        path = os.path.join(directory, "127.0.0.1:4000")
        writeFile(path, b"in the way")

        def listen():
            with self.assertRaises(PathTaken):
                listenUNIX(reactor, path, Factory.forProtocol(Protocol), 0o700)

        self.assertEqual(recordedWarnings(listen), [])


class MuxClientTLSTests(SynchronousTestCase):
    def test_noDeprecation(self):
        """The README's mux TLS client: a TLS connection made without a deprecation warning."""
        directory = makeSocketsDirectory(self)
        authority = CertificateAuthority("server CA")
        caPath = os.path.join(directory, "ca.crt")
        writeFile(caPath, authority.certificatePEM())
        certificatePath, keyPath = CertificateAuthority("client CA").issue("analysis.example", client=True).write(
            directory, "client"
        )

        def connect():
            options = clientTLSOptions("localhost", caPath, certificatePath, keyPath)
            tls = TLSMemoryBIOFactory(options, True, Factory.forProtocol(Protocol)).buildProtocol(None)
            transport = StringTransport()
            tls.makeConnection(transport)
            self.assertTrue(transport.value(), "no ClientHello")
            tls.connectionLost(Failure(ConnectionDone()))

        self.assertEqual(recordedWarnings(connect), [])
