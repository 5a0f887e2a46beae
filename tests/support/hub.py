"""Docker Hub's names on loopback, for tests only (there is no network here).

Docker Hub is three names: `docker.io` (what references say; distribution/reference
normalize.go `defaultDomain`), `registry-1.docker.io` (where the registry API answers, as the
comment on that constant says) and `auth.docker.io` (the token realm its 401 challenge names,
`Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`). Here:

- `resolve_to` makes urllib3 connect those names to loopback ports (what an /etc/hosts entry
  would do, without touching the machine), and refuses any other non-loopback name, so a test
  cannot reach the internet by mistake; it records every (host, port) dialled.
- `hub_certificate` is one self-signed CA certificate valid for both names, so TLS is
  verified exactly as against Hub (REQUESTS_CA_BUNDLE pointing at it).
- `HttpsTokenServer` serves tests/support/tokenserver.py's stand-in over HTTPS, as
  auth.docker.io does; its tokens are verified by the real registry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import urllib3.util.connection
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from requests.structures import CaseInsensitiveDict

from tests.support.certs import write_pem
from tests.support.proxy import LocalRequest, LocalResponse

HUB_API_HOST = "registry-1.docker.io"
HUB_AUTH_HOST = "auth.docker.io"
HUB_REALM = f"https://{HUB_AUTH_HOST}/token"
HUB_SERVICE = "registry.docker.io"


def hub_certificate(
    directory: Path, names: tuple[str, ...] = (HUB_API_HOST, HUB_AUTH_HOST)
) -> tuple[Path, Path]:
    """(cert, key) PEM files: a self-signed CA certificate for `names` (a root and a leaf at
    once, as tests/support/certs.py does for an IP)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "hub.crt", directory / "hub.key"
    write_pem(key, cert, key_path, cert_path)
    return cert_path, key_path


@contextlib.contextmanager
def resolve_to(
    mapping: Mapping[tuple[str, int], tuple[str, int]],
) -> Iterator[list[tuple[str, int]]]:
    """Within the block, urllib3 connects `(host, port)` to the mapped loopback address."""
    original: Callable[..., socket.socket] = urllib3.util.connection.create_connection
    dialled: list[tuple[str, int]] = []

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        host, port = address
        dialled.append((host, port))
        if (host, port) in mapping:
            return original(mapping[(host, port)], *args, **kwargs)
        try:
            loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise OSError(f"test resolver: no network here, refusing {host}:{port}")
        return original(address, *args, **kwargs)

    urllib3.util.connection.create_connection = create_connection
    try:
        yield dialled
    finally:
        urllib3.util.connection.create_connection = original


class HttpsTokenServer:
    """`handler` (e.g. TokenServer.handle) served over HTTPS on a loopback port."""

    def __init__(
        self, handler: Callable[[LocalRequest], LocalResponse], cert: Path, key: Path
    ) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                target = urlsplit(self.path)
                request = LocalRequest(
                    "GET",
                    target.path,
                    parse_qs(target.query),
                    CaseInsensitiveDict(self.headers.items()),
                    b"",
                )
                answer = handler(request)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: headers carry credentials."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> HttpsTokenServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
