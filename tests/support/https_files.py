"""A loopback HTTPS server for downloads (gitlab-runner binaries, release.sha256), for tests.

Provisioning downloads over https only (curl --proto =https, GNU wget --https-only), so what
the tests serve must be https too: a self-signed CA (tests/support/certs.py) for 127.0.0.1.
A client trusts it through `CURL_CA_BUNDLE` (curl) or, in a lab host, through the root's own
trust store (`trust_in_root`). Every GET is recorded; unknown paths are 404.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.certs import self_signed_ca, write_pem


@dataclass
class HttpsFiles:
    base: str  # https://127.0.0.1:PORT
    ca_file: Path
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@contextmanager
def serve_https(files: Mapping[str, bytes], workdir: Path) -> Iterator[HttpsFiles]:
    """Serve `files` (path -> bytes) at https://127.0.0.1:PORT/path; yields where, and the CA."""
    key, cert = self_signed_ca("archfleet test downloads", ip="127.0.0.1")
    key_path, cert_path = workdir / "downloads-key.pem", workdir / "downloads-ca.pem"
    write_pem(key, cert, key_path, cert_path)
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serve_tls(Handler, key_path, cert_path) as base:
        yield HttpsFiles(base, cert_path, seen)


@contextmanager
def serve_tls(
    handler: type[BaseHTTPRequestHandler], key_path: Path, cert_path: Path
) -> Iterator[str]:
    """Run `handler` on https://127.0.0.1:<free port> (yielded) until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def trust_in_root(root: Path, ca_file: Path) -> None:
    """Add `ca_file` to a Debian root's trust store as update-ca-certificates would: the PEM
    under /usr/local/share/ca-certificates and appended to the bundle curl and GNU wget read
    (/etc/ssl/certs/ca-certificates.crt, from the ca-certificates package). Appending here
    saves running update-ca-certificates under QEMU in an arm64 root."""
    pem = ca_file.read_bytes()
    local = root / "usr/local/share/ca-certificates/archfleet-test-downloads.crt"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(pem)
    bundle = root / "etc/ssl/certs/ca-certificates.crt"
    if not bundle.exists():
        raise FileNotFoundError(f"{bundle}: the root has no ca-certificates bundle")
    with bundle.open("ab") as out:
        out.write(b"\n" + pem)
