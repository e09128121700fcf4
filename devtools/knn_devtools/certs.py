"""The throwaway PKI of a local control plane: CA, serving cert, admin client cert, SA key.

ECDSA P-256 keys throughout: Kubernetes accepts them everywhere used here, and
generating one takes well under a millisecond where RSA-2048 takes tens, which
matters for a control plane started once per test session.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)
# Tolerates small clock differences between the writer and a reader of the cert.
_BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class CertKey:
    """A PEM certificate with its PEM (PKCS#8, unencrypted) private key."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class PKIFiles:
    """Where :meth:`PKI.write` put each file, for command-line flags."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_private_key: Path
    sa_public_key: Path


class CertificateAuthority:
    @classmethod
    def load(cls, cert_key: CertKey) -> CertificateAuthority:
        """The CA of an existing :class:`PKI`, to issue more certificates from it."""
        key = serialization.load_pem_private_key(cert_key.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("the CA key is not an ECDSA key")
        ca = cls.__new__(cls)
        ca._key = key
        ca._cert = x509.load_pem_x509_certificate(cert_key.cert_pem)
        return ca

    def __init__(self, common_name: str) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                _key_usage(ca=True),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_key(self) -> CertKey:
        return CertKey(_cert_pem(self._cert), _key_pem(self._key))

    def issue(
        self,
        common_name: str,
        *,
        organizations: tuple[str, ...] = (),
        dns_names: tuple[str, ...] = (),
        ip_addresses: tuple[str, ...] = (),
        server: bool = False,
        client: bool = False,
    ) -> CertKey:
        """Issues a leaf certificate; Kubernetes reads the user's groups from O=."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if not usages:
            raise ValueError("a leaf certificate needs server=True, client=True or both")
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                _key_usage(ca=False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return CertKey(_cert_pem(builder.sign(self._key, hashes.SHA256())), _key_pem(key))


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Signatures (TLS handshakes) for every certificate; signing certificates and CRLs
    only for the CA. Everything else off: ECDSA keys cannot encipher."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class PKI:
    """Everything kube-apiserver needs to serve TLS, authenticate and sign tokens."""

    ca: CertKey
    serving: CertKey
    admin: CertKey
    sa_private_key_pem: bytes
    sa_public_key_pem: bytes

    @classmethod
    def generate(cls, *, service_ip: str | None = None, extra_ips: tuple[str, ...] = ()) -> PKI:
        """``service_ip`` is the in-cluster ``kubernetes`` Service address, for pods;
        ``extra_ips`` are more addresses the apiserver serves on (the node's)."""
        ca = CertificateAuthority("knn-operator local control plane CA")
        ips: tuple[str, ...] = ("127.0.0.1",) if service_ip is None else ("127.0.0.1", service_ip)
        ips += tuple(ip for ip in extra_ips if ip not in ips)
        serving = ca.issue(
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=ips,
            server=True,
        )
        # system:masters bypasses RBAC: this is the cluster-admin of the test cluster.
        admin = ca.issue("knn-admin", organizations=("system:masters",), client=True)
        sa_key = ec.generate_private_key(ec.SECP256R1())
        return cls(
            ca=ca.cert_key,
            serving=serving,
            admin=admin,
            sa_private_key_pem=_key_pem(sa_key),
            sa_public_key_pem=sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def write(self, directory: Path) -> PKIFiles:
        """Writes every file with owner-only permissions and returns their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        files = PKIFiles(
            ca_cert=directory / "ca.crt",
            ca_key=directory / "ca.key",
            serving_cert=directory / "apiserver.crt",
            serving_key=directory / "apiserver.key",
            admin_cert=directory / "admin.crt",
            admin_key=directory / "admin.key",
            sa_private_key=directory / "sa.key",
            sa_public_key=directory / "sa.pub",
        )
        for path, data in (
            (files.ca_cert, self.ca.cert_pem),
            (files.ca_key, self.ca.key_pem),
            (files.serving_cert, self.serving.cert_pem),
            (files.serving_key, self.serving.key_pem),
            (files.admin_cert, self.admin.cert_pem),
            (files.admin_key, self.admin.key_pem),
            (files.sa_private_key, self.sa_private_key_pem),
            (files.sa_public_key, self.sa_public_key_pem),
        ):
            _write_private(path, data)
        return files


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
