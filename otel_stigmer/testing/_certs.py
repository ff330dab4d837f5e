"""Throw-away TLS certificates (a CA and a server certificate it signed) for tests."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["TestCertificates", "make_test_certificates"]

_VALIDITY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class TestCertificates:
    """PEM files written by :func:`make_test_certificates`, with their contents.

    Attributes:
        ca_cert_path: The CA certificate; give it to clients as their trust root.
        server_cert_path: The server certificate, signed by the CA.
        server_key_path: The server's private key (unencrypted PEM).
        ca_cert: Contents of ``ca_cert_path``.
        server_cert: Contents of ``server_cert_path``.
        server_key: Contents of ``server_key_path``.
    """

    __test__: ClassVar[bool] = False  # not a pytest test class despite its name

    ca_cert_path: Path
    server_cert_path: Path
    server_key_path: Path
    ca_cert: bytes = field(repr=False)
    server_cert: bytes = field(repr=False)
    server_key: bytes = field(repr=False)


def _import_cryptography() -> Any:
    try:
        import cryptography  # noqa: PLC0415 - optional test dependency, imported on use
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "make_test_certificates needs the 'cryptography' package: "
            "install it with `pip install 'otel-stigmer[dev]'`"
        ) from exc
    return cryptography


def _san(hosts: Sequence[str]) -> list[x509.GeneralName]:
    from cryptography import x509  # noqa: PLC0415 - optional test dependency

    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_test_certificates(
    directory: Path, hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1")
) -> TestCertificates:
    """Create a CA and a server certificate for ``hosts``, valid for one day.

    Writes ``ca.pem``, ``server.pem`` and ``server-key.pem`` into ``directory``
    (created when missing). Keys are ECDSA P-256.

    Args:
        directory: Where to write the PEM files.
        hosts: DNS names and IP addresses the server certificate is valid for.

    Raises:
        ImportError: ``cryptography`` is not installed (it comes with ``otel-stigmer[dev]``).
    """
    _import_cryptography()
    from cryptography import x509  # noqa: PLC0415 - optional test dependency
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    if not hosts:
        raise ValueError("hosts must name at least one DNS name or IP address")
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = now - datetime.timedelta(minutes=5), now + _VALIDITY

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "otel-stigmer test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    cert_pem = server_cert.public_bytes(serialization.Encoding.PEM)
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server-key.pem"
    ca_path.write_bytes(ca_pem)
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    return TestCertificates(
        ca_cert_path=ca_path,
        server_cert_path=cert_path,
        server_key_path=key_path,
        ca_cert=ca_pem,
        server_cert=cert_pem,
        server_key=key_pem,
    )
