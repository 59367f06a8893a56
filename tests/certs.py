"""
Test certificates, made at test time with C{cryptography}: a CA that
issues server and client certificates, written as PEM files into a
temporary directory.  No private key is ever committed.

EC P-256 keys keep generation fast.
"""

import datetime
import os
from typing import Iterable, Optional, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ONE_DAY = datetime.timedelta(days=1)


def _name(commonName: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)])


def newKey() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class Issued:
    """A certificate and its private key."""

    def __init__(self, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.certificate = certificate
        self.key = key

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    def certificatePEM(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def keyPEM(self, passphrase: Optional[bytes] = None) -> bytes:
        encryption: serialization.KeySerializationEncryption
        if passphrase is None:
            encryption = serialization.NoEncryption()
        else:
            encryption = serialization.BestAvailableEncryption(passphrase)
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def write(self, directory: str, stem: str, passphrase: Optional[bytes] = None) -> Tuple[str, str]:
        """Write C{stem}.crt and C{stem}.key into C{directory}; their paths."""
        certificatePath = os.path.join(directory, stem + ".crt")
        keyPath = os.path.join(directory, stem + ".key")
        writeFile(certificatePath, self.certificatePEM())
        writeFile(keyPath, self.keyPEM(passphrase), mode=0o600)
        return certificatePath, keyPath


def writeFile(path: str, data: bytes, mode: int = 0o644) -> None:
    """Replace C{path} atomically, so a reload never sees half a file."""
    temporary = path + ".tmp"
    with open(temporary, "wb") as f:
        f.write(data)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


class CertificateAuthority(Issued):
    """A self-signed CA that issues leaf certificates."""

    def __init__(self, commonName: str = "sc_remoted test CA") -> None:
        key = newKey()
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(commonName))
            .issuer_name(_name(commonName))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _ONE_DAY)
            .not_valid_after(now + 30 * _ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        super().__init__(certificate, key)

    def issue(
        self,
        commonName: Optional[str],
        dnsNames: Iterable[str] = (),
        client: bool = False,
    ) -> Issued:
        """
        A leaf certificate for a server (or, with C{client}, a client) with
        subject CN C{commonName} (none if L{None}) and the given SAN
        dNSNames.
        """
        key = newKey()
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = _name(commonName) if commonName is not None else x509.Name([])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _ONE_DAY)
            .not_valid_after(now + 30 * _ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        names = [x509.DNSName(name) for name in dnsNames]
        if names:
            # Critical when the subject is empty (RFC 5280 4.2.1.6).
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=commonName is None)
        return Issued(builder.sign(self.key, hashes.SHA256()), key)
