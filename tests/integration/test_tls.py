"""TLS is verified unless --insecure: a REAL registry serving HTTPS with a self-signed
certificate is refused, and accepted once its CA is trusted (REQUESTS_CA_BUNDLE)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.cli import archfleet
from toolkit.lab.registry import LocalRegistry, start_registry

pytestmark = pytest.mark.integration


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "archfleet test registry")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[tuple[LocalRegistry, Path]]:
    cert, key = self_signed(tmp_path)
    try:
        registry = start_registry(
            tmp_path / "reg",
            extra_config={"http": {"tls": {"certificate": str(cert), "key": str(key)}}},
        )
    except Exception as exc:  # the lab's readiness probe speaks plain HTTP
        pytest.fail(f"TLS registry did not start: {exc}")
    yield registry, cert
    registry.stop()


def test_self_signed_registry_is_refused_then_trusted(
    tls_registry: tuple[LocalRegistry, Path], tmp_path: Path
) -> None:
    registry, cert = tls_registry
    args = ("verify-manifest", "--target", f"{registry.address}/app:v1")
    refused = archfleet(*args, env={"REQUESTS_CA_BUNDLE": ""})
    assert refused.code == 1
    assert "TLS verification failed" in refused.stderr and "--insecure" in refused.stderr
    trusted = archfleet(*args, env={"REQUESTS_CA_BUNDLE": str(cert)})
    # Trusted: the TLS handshake passes and the registry answers (the tag does not exist).
    assert trusted.code == 1 and "manifest not found" in trusted.stderr, trusted.stderr
