"""
TLS for scamper connections (C sc_remoted C{-c cert -p key [-C CAfile]}).

With a certificate and key every connection on the scamper port is TLS
(1.2 or later; no SNI expected, scamper sends none).  The pieces:

  - L{TLSFiles}: where the certificate chain, key and client CA live and
    the key's passphrase; L{TLSFiles.makeContext} reads them into a fresh
    C{SSL.Context}, or raises L{TLSConfigError} with one line for the
    operator.
  - L{ReloadableServerTLS}: the connection creator handed to
    L{TLSMemoryBIOFactory}.  Each handshake takes whatever context is
    current, so L{ReloadableServerTLS.reload} (on SIGHUP) changes the
    certificate for the next connection and leaves live ones alone; a
    failed reload keeps the previous context.
  - L{ClientNameCheck}: with C{--tls-ca}, after MASTER_NEW the monitorname
    must be one of the names of the client certificate (docs/protocol.rst 3.11).
  - L{TLSServerFactory}: logs, once, a handshake that failed.
"""

import getpass
import os
from typing import List, Optional, Tuple

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.protocol import connectionDone
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from .eventlog import EventLogger

log = EventLogger()


class TLSConfigError(Exception):
    """TLS files that cannot be used; the message is one line for the operator."""


# Files ------------------------------------------------------------------


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError("cannot read %s %s: %s" % (what, path, e.strerror))


def _certificates(path: str, what: str) -> List[x509.Certificate]:
    data = _read(path, what)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise TLSConfigError("%s %s holds no PEM certificate" % (what, path))
    return certificates


def keyIsEncrypted(path: str) -> bool:
    """
    Whether the PEM private key in C{path} needs a passphrase.

    @raise TLSConfigError: if the file cannot be read or holds no key.
    """
    data = _read(path, "private key file")
    try:
        load_pem_private_key(data, None)
    except TypeError:
        return True
    except (ValueError, UnsupportedAlgorithm):
        raise TLSConfigError("private key file %s holds no usable PEM private key" % (path,))
    return False


def readPassphraseFile(path: str) -> bytes:
    """The first line of C{path}, without its line ending (as C{openssl -passin file:})."""
    data = _read(path, "passphrase file")
    return data.splitlines()[0] if data else b""


def promptPassphrase(keyPath: str) -> bytes:
    """
    Ask for the passphrase of C{keyPath} on the controlling terminal, which
    is still there: twistd calls this while parsing options, before it
    daemonizes.
    """
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        raise TLSConfigError(
            "private key %s is encrypted and there is no terminal to ask for its "
            "passphrase; use --tls-passphrase-file" % (keyPath,)
        )
    try:
        return getpass.getpass("Passphrase for %s: " % (keyPath,)).encode("utf-8")
    except (EOFError, KeyboardInterrupt):
        raise TLSConfigError("no passphrase given for private key %s" % (keyPath,))


def _openSSLReason(error: SSL.Error) -> str:
    """The reasons of an OpenSSL error stack, for a log line."""
    reasons = []
    for item in error.args[0] if error.args and isinstance(error.args[0], list) else []:
        if isinstance(item, tuple) and item:
            reasons.append(str(item[-1]))
    return "; ".join(reasons) or str(error) or error.__class__.__name__


class TLSFiles:
    """
    The operator's TLS files and the key's passphrase, read again for
    every L{makeContext} (at start-up and at each reload).

    @param certificatePath: PEM certificate chain, the server's first.
    @param keyPath: PEM private key, possibly encrypted.
    @param caPath: PEM CA certificates that client certificates must chain
        to, or L{None} for no client authentication.
    @param passphrase: the key's passphrase, if it has one.
    @ivar certificate: the server certificate of the last context made.
    """

    def __init__(
        self,
        certificatePath: str,
        keyPath: str,
        caPath: Optional[str] = None,
        passphrase: Optional[bytes] = None,
    ) -> None:
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.caPath = caPath
        self.passphrase = passphrase
        self.certificate: Optional[x509.Certificate] = None

    def _key(self):
        data = _read(self.keyPath, "private key file")
        try:
            return load_pem_private_key(data, None)
        except TypeError:
            pass  # encrypted
        except (ValueError, UnsupportedAlgorithm):
            raise TLSConfigError("private key file %s holds no usable PEM private key" % (self.keyPath,))
        if self.passphrase is None:
            raise TLSConfigError("private key %s is encrypted and no passphrase was given" % (self.keyPath,))
        try:
            return load_pem_private_key(data, self.passphrase)
        except (ValueError, TypeError):
            raise TLSConfigError("wrong passphrase for private key %s" % (self.keyPath,))

    def makeContext(self) -> SSL.Context:
        """
        A server context from the files as they are now.

        @raise TLSConfigError: on an unreadable or unparsable file, a wrong
            passphrase, or a key that does not belong to the certificate.
        """
        chain = _certificates(self.certificatePath, "certificate file")
        key = self._key()
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION)
        # Needed for session resumption once client certificates are verified.
        context.set_session_id(b"sc_remoted")
        try:
            context.use_certificate(chain[0])
            for extra in chain[1:]:
                context.add_extra_chain_cert(extra)
        except SSL.Error as e:
            raise TLSConfigError("cannot use certificate %s: %s" % (self.certificatePath, _openSSLReason(e)))
        try:
            context.use_privatekey(key)
            context.check_privatekey()
        except SSL.Error:
            raise TLSConfigError(
                "private key %s does not match certificate %s" % (self.keyPath, self.certificatePath)
            )
        if self.caPath is not None:
            _certificates(self.caPath, "CA file")
            try:
                context.load_verify_locations(self.caPath)
                context.load_client_ca(os.fsencode(self.caPath))
            except SSL.Error as e:
                raise TLSConfigError("cannot use CA file %s: %s" % (self.caPath, _openSSLReason(e)))
            context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
        else:
            context.set_verify(SSL.VERIFY_NONE)
        self.certificate = chain[0]
        return context


def describeCertificate(certificate: x509.Certificate) -> str:
    return "%s (serial %x, valid until %s)" % (
        certificate.subject.rfc4514_string(),
        certificate.serial_number,
        certificate.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%SZ"),
    )


# The connection creator ---------------------------------------------------


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableServerTLS:
    """
    Hands each new connection the current context, as txsni picks one per
    connection: a reload changes only the handshakes that follow it.

    @ivar context: the C{SSL.Context} new connections use.
    """

    def __init__(self, files: TLSFiles) -> None:
        """
        @raise TLSConfigError: if the files cannot be used.
        """
        self.files = files
        self.context = files.makeContext()

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        connection.set_accept_state()
        return connection

    def reload(self) -> bool:
        """
        Read the files again.  On success new connections use them; on
        failure the previous context stays in service and the reason is
        logged.  Returns whether the files were taken.
        """
        try:
            context = self.files.makeContext()
        except TLSConfigError as e:
            log.error(
                "TLS reload failed, keeping the previous certificate: {reason}",
                reason=str(e),
                sc_event="tls.reload_failed",
            )
            return False
        self.context = context
        certificate = self.files.certificate
        assert certificate is not None  # makeContext sets it when it succeeds
        log.info(
            "TLS reloaded: new connections get {certificate}",
            certificate=describeCertificate(certificate),
            sc_event="tls.reloaded",
        )
        return True

    def wrapFactory(self, factory, clock=None) -> "TLSServerFactory":
        """C{factory}'s protocols, spoken inside TLS with our context."""
        return TLSServerFactory(self, False, factory, clock)


def loadServerTLS(
    certificatePath: str,
    keyPath: str,
    caPath: Optional[str] = None,
    passphraseFile: Optional[str] = None,
    prompt=promptPassphrase,
) -> ReloadableServerTLS:
    """
    What the command line's TLS options make: the passphrase read from
    C{passphraseFile} or, only if the key needs one, asked for with
    C{prompt(keyPath)}; then the files loaded and checked once.

    @raise TLSConfigError: with one line for the operator.
    """
    passphrase = None
    if passphraseFile is not None:
        passphrase = readPassphraseFile(passphraseFile)
    elif keyIsEncrypted(keyPath):
        passphrase = prompt(keyPath)
    return ReloadableServerTLS(TLSFiles(certificatePath, keyPath, caPath, passphrase))


# Handshake failures -------------------------------------------------------


class TLSServerProtocol(BufferingTLSTransport):
    """
    The TLS layer of one scamper connection.  A failed handshake (a
    plaintext client, an unknown or missing client certificate, no common
    protocol version) is logged here, once, naming the peer and OpenSSL's
    reason; the connection below is closed by the TLS layer.
    """

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # _handshakeDone is TLSMemoryBIOProtocol's documented flag.
        handshakeDone = getattr(self, "_handshakeDone", False)
        failure = self._reason or reason
        error = failure.value if failure is not None else None
        if isinstance(error, SSL.Error):
            peer = getattr(self.wrappedProtocol, "peer", "") or str(self.getPeer())
            if handshakeDone:
                log.error("TLS error with {peer}: {reason}; closed", peer=peer,
                          reason=_openSSLReason(error), sc_event="tls.error")
            else:
                log.error("TLS handshake with {peer} failed: {reason}; closed", peer=peer,
                          reason=_openSSLReason(error), sc_event="tls.handshake_failed")
        super().connectionLost(reason)


class TLSServerFactory(TLSMemoryBIOFactory):
    protocol = TLSServerProtocol


# Client certificate names -----------------------------------------------


def certificateNames(certificate: x509.Certificate) -> Tuple[List[str], List[str]]:
    """The subjectAltName dNSNames and the subject CNs of C{certificate}."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        dnsNames = list(extension.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dnsNames = []
    commonNames = [
        str(attribute.value) for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    return dnsNames, commonNames


def nameMatches(name: str, pattern: str) -> bool:
    """
    Whether C{name} is C{pattern}, ignoring case; a leading C{*.} in
    C{pattern} stands for exactly one non-empty label.
    """
    name = name.lower()
    pattern = pattern.lower()
    if pattern.startswith("*."):
        suffix = pattern[1:]
        if len(suffix) < 2 or "*" in suffix:
            return False
        label, dot, rest = name.partition(".")
        return bool(label) and "." + rest == suffix and bool(dot)
    return "*" not in pattern and name == pattern


def clientNameProblem(certificate: Optional[x509.Certificate], monitorname: Optional[str]) -> Optional[str]:
    """
    Why C{monitorname} may not use C{certificate}, or L{None} if one of
    its dNSNames or CNs matches (see L{nameMatches}).
    """
    if certificate is None:
        return "no client certificate"
    if not monitorname:
        return "no monitorname (scamper -M) to match against the client certificate"
    dnsNames, commonNames = certificateNames(certificate)
    for pattern in dnsNames + commonNames:
        if nameMatches(monitorname, pattern):
            return None
    return "monitorname %r matches none of the client certificate's names %s" % (
        monitorname,
        ", ".join(dnsNames + commonNames) or "(none)",
    )


class ClientNameCheck:
    """
    The controller's check of a MASTER_NEW on a connection whose client
    certificate was verified in the handshake (C{--tls-ca}).
    """

    def __call__(self, connection, monitorname: Optional[str]) -> Optional[str]:
        getPeerCertificate = getattr(connection.transport, "getPeerCertificate", None)
        certificate = getPeerCertificate() if getPeerCertificate is not None else None
        if certificate is not None and not isinstance(certificate, x509.Certificate):
            certificate = certificate.to_cryptography()
        return clientNameProblem(certificate, monitorname)
