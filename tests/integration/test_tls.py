"""TLS is verified unless --insecure: a REAL registry serving HTTPS with a self-signed
certificate is refused, and accepted once its CA is trusted (REQUESTS_CA_BUNDLE)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import self_signed_ca, write_pem
from tests.support.cli import archfleet
from toolkit.lab.registry import LocalRegistry, start_registry

pytestmark = pytest.mark.integration


def self_signed(directory: Path) -> tuple[Path, Path]:
    key, cert = self_signed_ca("archfleet test registry", ip="127.0.0.1", days=1)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    write_pem(key, cert, key_path, cert_path)
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
