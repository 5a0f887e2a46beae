"""Bounded reads in the registry client, against loopback FAKE servers that misbehave on
purpose (no real registry sends these answers; they stand for a hostile or broken one): a
body is streamed and reading stops at the limit, which the error names."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.proxy import LocalRequest, LocalResponse, ReverseProxy
from toolkit.registry.client import (
    MAX_MANIFEST_BYTES,
    RegistryClient,
    RetryPolicy,
    TooLargeError,
    TransportError,
)

FAST = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)
INDEX = "application/vnd.oci.image.index.v1+json"


def client_for(address: str) -> RegistryClient:
    return RegistryClient(address, insecure=True, use_env_credentials=False, retry=FAST)


def test_declared_oversize_manifest_is_refused_naming_the_limit() -> None:
    big = b" " * (MAX_MANIFEST_BYTES + 1)
    routes = {"/v2/": lambda r: LocalResponse(200, big, {"Content-Type": INDEX})}
    with ReverseProxy(None, local_routes=routes) as fake, pytest.raises(TooLargeError) as info:
        client_for(fake.address).get_manifest("app", "v1")
    assert "manifest larger than 4 MiB (4194304 bytes)" in str(info.value)


class _Chunked(BaseHTTPRequestHandler):
    """Answers every GET with a chunked body of `size` bytes and no Content-Length."""

    protocol_version = "HTTP/1.1"
    size = 0
    sent = 0

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", INDEX)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b" " * 65536
        try:
            for _ in range(self.size // len(chunk)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                type(self).sent += len(chunk)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client stopped reading: what the test wants

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def chunked() -> Iterator[tuple[str, type[_Chunked]]]:
    handler = type("Handler", (_Chunked,), {"size": 64 << 20, "sent": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_undeclared_oversize_body_stops_at_the_limit(chunked: tuple[str, type[_Chunked]]) -> None:
    """64 MiB offered without a Content-Length: the config read stops just past 1 KiB."""
    address, handler = chunked
    with pytest.raises(TooLargeError) as info:
        client_for(address).get_blob("app", "sha256:" + "a" * 64, max_bytes=1024)
    assert "blob larger than 1 KiB (1024 bytes)" in str(info.value)
    assert handler.sent < 32 << 20  # the sender was cut off long before the end


def test_oversize_token_answer_is_refused() -> None:
    def registry(request: LocalRequest) -> LocalResponse:
        realm = f"http://{request.headers['Host']}/token"
        challenge = f'Bearer realm="{realm}",service="fake"'
        return LocalResponse(401, b"{}", {"WWW-Authenticate": challenge})

    huge = json.dumps({"token": "x" * (2 << 20)}).encode()
    routes = {"/v2/": registry, "/token": lambda r: LocalResponse(200, huge)}
    with ReverseProxy(None, local_routes=routes) as fake, pytest.raises(TooLargeError) as info:
        client_for(fake.address).head_manifest("app", "v1")
    assert "token answer larger than 1 MiB (1048576 bytes)" in str(info.value)


def test_last_5xx_keeps_the_registrys_explanation() -> None:
    body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "storage is down"}]})
    routes = {"/v2/": lambda r: LocalResponse(503, body.encode())}
    with ReverseProxy(None, local_routes=routes) as fake, pytest.raises(TransportError) as info:
        client_for(fake.address).get_manifest("app", "v1")
    assert "HTTP 503 (UNAVAILABLE: storage is down) after 2 attempts" in str(info.value)
