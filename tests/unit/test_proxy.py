"""The fault-injecting reverse proxy, against a tiny local upstream (http.server)."""

from __future__ import annotations

import hashlib
import http.client
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from tests.support.proxy import (
    LocalRequest,
    LocalResponse,
    ReverseProxy,
    Rule,
    corrupt_body,
    delay,
    drop_after_forward,
    drop_before_response,
    free_port,
    status,
    truncate_body,
)


def payload(size: int) -> bytes:
    return bytes(i * 7 % 251 for i in range(size))


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    address: str
    seen: list[Seen] = field(default_factory=list)


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
        parts = self.path.strip("/").split("/")
        match parts:
            case ["blob", size]:
                data = payload(int(size))
                self._send(200, data, {"Docker-Content-Digest": digest(data)})
            case ["chunked", size]:
                data = payload(int(size))
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(data), 1000):
                    piece = data[start : start + 1000]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            case ["range"]:
                data = payload(100)
                first, last = self.headers["Range"].removeprefix("bytes=").split("-")
                part = data[int(first) : int(last) + 1]
                self._send(206, part, {"Content-Range": f"bytes {first}-{last}/{len(data)}"})
            case ["short"]:  # a broken upstream: promises 100 bytes, sends 50, hangs up
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(payload(50))
                self.close_connection = True
            case ["redirect"]:
                self._send(307, b"", {"Location": "/blob/10"})
            case ["auth"]:
                challenge = 'Bearer realm="http://x/token",service="reg"'
                self._send(401, b'{"errors":[]}', {"WWW-Authenticate": challenge})
            case ["echo", *_]:
                self._send(201, body, {"Location": f"/stored/{len(body)}"})
            case _:
                self._send(404, b"not found")

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _UpstreamHandler)
    server.daemon_threads = True
    result = Upstream(f"127.0.0.1:{server.server_address[1]}")
    server.seen = result.seen  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield result
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[ReverseProxy]:
    with ReverseProxy(upstream.address) as running:
        yield running


def test_passes_bodies_and_headers_through(proxy: ReverseProxy, upstream: Upstream) -> None:
    resp = requests.get(f"{proxy.url}/blob/1000", timeout=10)
    assert resp.status_code == 200
    assert resp.content == payload(1000)
    assert resp.headers["Docker-Content-Digest"] == digest(payload(1000))

    resp = requests.get(f"{proxy.url}/redirect", allow_redirects=False, timeout=10)
    assert (resp.status_code, resp.headers["Location"]) == (307, "/blob/10")

    resp = requests.get(f"{proxy.url}/auth", timeout=10)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="http://x/token"')

    resp = requests.get(f"{proxy.url}/range", headers={"Range": "bytes=10-19"}, timeout=10)
    assert (resp.status_code, resp.content) == (206, payload(100)[10:20])
    assert resp.headers["Content-Range"] == "bytes 10-19/100"

    # Host is passed through untouched, so an upstream builds URLs that name the proxy.
    assert upstream.seen[0].headers["Host"] == proxy.address
    assert [r.status for r in proxy.records] == [200, 307, 401, 206]
    assert all(r.fault is None and not r.local for r in proxy.records)


def test_head_has_length_but_no_body(proxy: ReverseProxy) -> None:
    with requests.Session() as session:
        head = session.head(f"{proxy.url}/blob/5000", timeout=10)
        assert head.status_code == 200
        assert head.headers["Content-Length"] == "5000"
        assert head.content == b""
        # The connection is still in sync after a body-less response.
        assert session.get(f"{proxy.url}/blob/7", timeout=10).content == payload(7)
    assert len({r.connection for r in proxy.records}) == 1


def test_large_and_chunked_responses_stream(proxy: ReverseProxy) -> None:
    size = 8 * 1024 * 1024 + 3
    with requests.get(f"{proxy.url}/blob/{size}", stream=True, timeout=30) as resp:
        received = b"".join(resp.iter_content(1 << 20))
    assert received == payload(size)

    resp = requests.get(f"{proxy.url}/chunked/25000", timeout=10)
    assert resp.content == payload(25000)
    assert resp.headers["Transfer-Encoding"] == "chunked"


def test_request_bodies_are_forwarded(proxy: ReverseProxy, upstream: Upstream) -> None:
    body = payload(300_000)
    resp = requests.put(f"{proxy.url}/echo/a", data=body, timeout=10)
    assert resp.status_code == 201
    assert resp.headers["Location"] == "/stored/300000"
    assert resp.content == body

    # A generator body makes requests send Transfer-Encoding: chunked.
    resp = requests.patch(f"{proxy.url}/echo/b", data=iter([b"abc", b"defg"]), timeout=10)
    assert resp.content == b"abcdefg"

    resp = requests.put(f"{proxy.url}/echo/empty", data=b"", timeout=10)
    assert resp.status_code == 201
    assert [s.body for s in upstream.seen] == [body, b"abcdefg", b""]
    assert upstream.seen[2].headers["Content-Length"] == "0"


def test_keep_alive_across_requests_and_faults(proxy: ReverseProxy) -> None:
    proxy.add_rule(Rule("GET", r"^/blob/3$", 1, status(503)))
    with requests.Session() as session:
        codes = [session.get(f"{proxy.url}/blob/{n}", timeout=10).status_code for n in range(6)]
        session.put(f"{proxy.url}/echo/x", data=b"body", timeout=10)
    assert codes == [200, 200, 200, 503, 200, 200]
    assert len(proxy.records) == 7
    assert len({r.connection for r in proxy.records}) == 1


def test_status_answers_without_forwarding(proxy: ReverseProxy, upstream: Upstream) -> None:
    proxy.set_rules(
        [
            Rule("PUT", r"^/echo/", 2, status(429, retry_after="3")),
            ("GET", None, 1, status(500, body="boom")),
        ]
    )
    first = requests.put(f"{proxy.url}/echo/1", data=b"x", timeout=10)
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "3"
    assert first.json()["errors"][0]["code"] == "UNAVAILABLE"
    assert requests.put(f"{proxy.url}/echo/2", data=b"x", timeout=10).status_code == 429
    assert requests.put(f"{proxy.url}/echo/3", data=b"x", timeout=10).status_code == 201

    failed = requests.get(f"{proxy.url}/blob/1", timeout=10)
    assert (failed.status_code, failed.content) == (500, b"boom")
    assert requests.get(f"{proxy.url}/blob/1", timeout=10).status_code == 200

    assert [s.path for s in upstream.seen] == ["/echo/3", "/blob/1"]
    assert [(r.status, r.fault, r.upstream_status) for r in proxy.records] == [
        (429, "status:429", None),
        (429, "status:429", None),
        (201, None, 201),
        (500, "status:500", None),
        (200, None, 200),
    ]
    assert [rule.remaining for rule in proxy.rules] == [0, 0]


def test_drop_before_response_forwards_nothing(proxy: ReverseProxy, upstream: Upstream) -> None:
    proxy.add_rule(Rule("PUT", None, 1, drop_before_response()))
    with pytest.raises(requests.ConnectionError):
        requests.put(f"{proxy.url}/echo/lost", data=b"payload", timeout=10)
    assert upstream.seen == []
    assert requests.put(f"{proxy.url}/echo/ok", data=b"payload", timeout=10).status_code == 201
    assert [(r.status, r.fault) for r in proxy.records] == [
        (None, "drop_before_response"),
        (201, None),
    ]


def test_drop_after_forward_takes_effect_upstream(proxy: ReverseProxy, upstream: Upstream) -> None:
    proxy.add_rule(Rule("PUT", r"/echo/", 1, drop_after_forward()))
    with pytest.raises(requests.ConnectionError):
        requests.put(f"{proxy.url}/echo/ambiguous", data=b"manifest", timeout=10)
    # The client saw nothing, yet the upstream stored it: the ambiguous PUT.
    assert [(s.method, s.path, s.body) for s in upstream.seen] == [
        ("PUT", "/echo/ambiguous", b"manifest")
    ]
    (record,) = proxy.records
    assert (record.status, record.upstream_status, record.fault) == (
        None,
        201,
        "drop_after_forward",
    )


def test_truncate_body_sends_half_then_closes(proxy: ReverseProxy) -> None:
    proxy.add_rule(Rule("GET", r"^/blob/", 2, truncate_body()))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{proxy.url}/blob/1000", timeout=10)

    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("GET", "/blob/1000")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Length") == "1000"
    assert resp.getheader("Docker-Content-Digest") == digest(payload(1000))
    with pytest.raises(http.client.IncompleteRead) as caught:
        resp.read()
    assert caught.value.partial == payload(1000)[:500]
    conn.close()

    assert requests.get(f"{proxy.url}/blob/1000", timeout=10).content == payload(1000)


def test_truncate_chunked_upstream_declares_full_length(proxy: ReverseProxy) -> None:
    proxy.add_rule(Rule(None, r"^/chunked/", 1, truncate_body()))
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("GET", "/chunked/3000")
    resp = conn.getresponse()
    assert resp.getheader("Content-Length") == "3000"
    with pytest.raises(http.client.IncompleteRead) as caught:
        resp.read()
    assert caught.value.partial == payload(3000)[:1500]
    conn.close()


def test_corrupt_body_keeps_length_and_headers(proxy: ReverseProxy) -> None:
    proxy.add_rule(Rule("GET", r"^/blob/", 1, corrupt_body()))
    resp = requests.get(f"{proxy.url}/blob/4096", timeout=10)
    good = payload(4096)
    assert resp.status_code == 200
    assert resp.headers["Content-Length"] == "4096"
    assert resp.headers["Docker-Content-Digest"] == digest(good)
    assert len(resp.content) == len(good)
    assert digest(resp.content) != resp.headers["Docker-Content-Digest"]
    assert [i for i, (a, b) in enumerate(zip(resp.content, good, strict=True)) if a != b] == [2048]
    assert requests.get(f"{proxy.url}/blob/4096", timeout=10).content == good
    assert proxy.records[0].fault == "corrupt_body"


def test_delay_slows_then_forwards(proxy: ReverseProxy, upstream: Upstream) -> None:
    proxy.add_rule(Rule("GET", None, 2, delay(0.6)))
    started = time.monotonic()
    assert requests.get(f"{proxy.url}/blob/5", timeout=10).content == payload(5)
    assert time.monotonic() - started >= 0.6

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{proxy.url}/blob/6", timeout=0.2)
    # A slow network, not a lost request: it still reaches the upstream.
    deadline = time.monotonic() + 5
    while len(proxy.records) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [s.path for s in upstream.seen] == ["/blob/5", "/blob/6"]
    assert [r.fault for r in proxy.records] == ["delay:0.6", "delay:0.6"]


def test_local_routes_and_faults_on_them(upstream: Upstream) -> None:
    def token(request: LocalRequest) -> LocalResponse:
        assert request.headers["Authorization"] == "Basic dTpw"
        scope = ",".join(request.query["scope"])
        return LocalResponse(200, f'{{"token":"{scope}"}}'.encode(), {"X-Local": "yes"})

    rules = [Rule(None, r"^/token", 1, status(503, retry_after="1"))]
    with ReverseProxy(upstream.address, local_routes={"/token": token}, rules=rules) as proxy:
        url = f"{proxy.url}/token?scope=a&scope=b"
        assert requests.get(url, auth=("u", "p"), timeout=10).status_code == 503
        resp = requests.get(url, auth=("u", "p"), timeout=10)
        assert resp.json() == {"token": "a,b"}
        assert resp.headers["X-Local"] == "yes"
        records = proxy.records
    assert upstream.seen == []
    assert [(r.path, r.query, r.status, r.local) for r in records] == [
        ("/token", "scope=a&scope=b", 503, False),
        ("/token", "scope=a&scope=b", 200, True),
    ]


def test_upstream_truncation_is_passed_on_not_hung(proxy: ReverseProxy) -> None:
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{proxy.url}/short", timeout=5)


def test_failing_local_route_answers_500(upstream: Upstream) -> None:
    def broken(request: LocalRequest) -> LocalResponse:
        raise RuntimeError("stand-in bug")

    with ReverseProxy(upstream.address, local_routes={"/token": broken}) as proxy:
        resp = requests.get(f"{proxy.url}/token", timeout=10)
    assert resp.status_code == 500
    assert "stand-in bug" in resp.text


def test_upstream_set_late_and_unreachable() -> None:
    with ReverseProxy() as proxy:
        assert requests.get(f"{proxy.url}/v2/", timeout=10).status_code == 502
        proxy.upstream = f"127.0.0.1:{free_port()}"  # nothing listens there
        assert requests.get(f"{proxy.url}/v2/", timeout=10).status_code == 502
    assert proxy.count("GET", r"^/v2/$") == 2


def test_stop_ends_idle_keep_alive_connections(upstream: Upstream) -> None:
    before = set(threading.enumerate())
    proxy = ReverseProxy(upstream.address).start()
    url = proxy.url
    session = requests.Session()
    assert session.get(f"{url}/blob/3", timeout=10).status_code == 200
    proxy.stop()
    session.close()
    # The upstream's handler threads may take a moment to see the proxy hang up.
    deadline = time.monotonic() + 5
    while (leftover := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftover == set()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/blob/3", timeout=2)
