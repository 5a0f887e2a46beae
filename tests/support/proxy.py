"""A loopback HTTP/1.1 reverse proxy with scripted fault injection, for tests.

It sits between a client under test and a real upstream (e.g. ``docker-registry`` on
127.0.0.1), passes every end-to-end header through untouched (Host included, so the
registry builds ``Location`` URLs that point back at the proxy), and can serve some
paths itself (``local_routes``, e.g. ``/token`` from the token-server stand-in) so the
token realm lives on the same host:port as the registry.

Faults are a script of :class:`Rule` s. For each request the first rule that matches
(method, path regex) and still has count left is applied and its count is decremented.

    proxy = ReverseProxy("127.0.0.1:5000", rules=[
        Rule("PUT", r"/manifests/", 1, drop_after_forward()),
        Rule(None, r"/blobs/", 2, status(503, retry_after="1")),
    ])
    with proxy:
        requests.get(f"{proxy.url}/v2/")
    assert proxy.records[0].status == 401

Request bodies are read fully before anything else happens (so a fault never leaves a
half-read request on a keep-alive connection); response bodies are streamed unless a
fault needs the whole body.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from requests.structures import CaseInsensitiveDict

__all__ = [
    "Action",
    "CorruptBody",
    "Delay",
    "DropAfterForward",
    "DropBeforeResponse",
    "Gate",
    "LocalHandler",
    "LocalRequest",
    "LocalResponse",
    "Record",
    "ReverseProxy",
    "Rule",
    "Status",
    "StripHeader",
    "TruncateBody",
    "corrupt_body",
    "delay",
    "drop_after_forward",
    "drop_before_response",
    "free_port",
    "gate",
    "status",
    "strip_header",
    "truncate_body",
]

# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Not hop-by-hop, but the proxy consumes them itself (it re-frames bodies and has
# already answered any 100-continue).
_NOT_FORWARDED = _HOP_BY_HOP | {"content-length", "expect"}
_CHUNK = 64 * 1024


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for servers that need one up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --- fault actions -------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """Answer with this status without forwarding; ``body`` None means a small
    distribution-style JSON error body."""

    code: int
    retry_after: str | None = None
    body: bytes | None = None


@dataclass(frozen=True)
class DropBeforeResponse:
    """Read the request, forward nothing, close the client socket without a response."""


@dataclass(frozen=True)
class DropAfterForward:
    """Forward the request (it takes effect upstream), then close the client socket
    without answering: the ambiguous outcome a client must handle for a PUT."""


@dataclass(frozen=True)
class TruncateBody:
    """Send the real status and headers (with the full Content-Length), then only the
    first half of the body, then close."""


@dataclass(frozen=True)
class CorruptBody:
    """Flip the lowest bit of the body's middle byte; length and headers (including
    Docker-Content-Digest) stay as they were, so only a digest check notices."""


@dataclass(frozen=True)
class Delay:
    """Sleep before forwarding; the request is then handled normally (a slow network,
    so it still takes effect even if the client gave up meanwhile)."""

    seconds: float


@dataclass(frozen=True, eq=False)
class Gate:
    """Hold the request before forwarding until ``release`` is set (at most ``timeout``
    seconds), then handle it normally; ``arrived`` is set when it gets here. Forces an
    interleaving between clients: e.g. one merge's index PUT held while another merge runs."""

    arrived: threading.Event
    release: threading.Event
    timeout: float = 60.0


@dataclass(frozen=True)
class StripHeader:
    """Forward, then relay the answer without the response header ``name`` (e.g. a registry
    that sends no ``Docker-Content-Digest``, which the distribution spec only RECOMMENDs)."""

    name: str


Action = (
    Status
    | DropBeforeResponse
    | DropAfterForward
    | TruncateBody
    | CorruptBody
    | Delay
    | Gate
    | StripHeader
)


def status(code: int, retry_after: str | None = None, body: bytes | str | None = None) -> Status:
    return Status(code, retry_after, body.encode() if isinstance(body, str) else body)


def drop_before_response() -> DropBeforeResponse:
    return DropBeforeResponse()


def drop_after_forward() -> DropAfterForward:
    return DropAfterForward()


def truncate_body() -> TruncateBody:
    return TruncateBody()


def corrupt_body() -> CorruptBody:
    return CorruptBody()


def delay(seconds: float) -> Delay:
    return Delay(seconds)


def gate(timeout: float = 60.0) -> Gate:
    return Gate(threading.Event(), threading.Event(), timeout)


def strip_header(name: str) -> StripHeader:
    return StripHeader(name)


def _fault_name(action: Action | None) -> str | None:
    match action:
        case None:
            return None
        case Status(code=code):
            return f"status:{code}"
        case Delay(seconds=seconds):
            return f"delay:{seconds:g}"
        case DropBeforeResponse():
            return "drop_before_response"
        case DropAfterForward():
            return "drop_after_forward"
        case TruncateBody():
            return "truncate_body"
        case CorruptBody():
            return "corrupt_body"
        case Gate():
            return "gate"
        case StripHeader(name=name):
            return f"strip_header:{name}"
    raise TypeError(f"not a fault action: {action!r} (call the factory, e.g. truncate_body())")


@dataclass
class Rule:
    """Apply ``action`` to the first ``count`` requests whose method equals ``method``
    (None: any) and whose path (without the query) matches the regex ``path`` with
    ``re.search`` (None: any)."""

    method: str | None
    path: str | None
    count: int
    action: Action
    hits: int = 0

    def __post_init__(self) -> None:
        _fault_name(self.action)  # fail at construction, not mid-request
        self._pattern = re.compile(self.path) if self.path is not None else None

    @property
    def remaining(self) -> int:
        return max(self.count - self.hits, 0)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return self._pattern is None or self._pattern.search(path) is not None


RuleLike = Rule | tuple[str | None, str | None, int, Action]


def _as_rule(rule: RuleLike) -> Rule:
    return rule if isinstance(rule, Rule) else Rule(*rule)


# --- local routes --------------------------------------------------------------------


@dataclass(frozen=True)
class LocalRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]  # case-insensitive when built by the proxy
    body: bytes


@dataclass(frozen=True)
class LocalResponse:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


LocalHandler = Callable[[LocalRequest], LocalResponse]


# --- records -------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One request as the proxy saw it. ``status`` is what the client was sent (None
    when the connection was dropped before a status line); ``upstream_status`` is what
    the upstream or local route answered (None when it was never asked)."""

    method: str
    path: str
    query: str
    status: int | None
    fault: str | None
    upstream_status: int | None
    local: bool
    connection: int  # serial number of the client connection (keep-alive evidence)


# --- the proxy -----------------------------------------------------------------------


@dataclass
class _Reply:
    """A response to relay: from the upstream (streamed) or a local route (bytes)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]  # end-to-end headers, Content-Length excluded
    length: int | None  # declared Content-Length, None when unknown (chunked)
    upstream: http.client.HTTPResponse | None = None
    body: bytes | None = None
    # Kept to close after relaying: closing it earlier would close the response too.
    conn: http.client.HTTPConnection | None = None
    local: bool = False

    def read_all(self) -> bytes:
        if self.body is None:
            assert self.upstream is not None
            self.body = self.upstream.read()
        return self.body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: 16 clients connecting at once would see
    # SYNs dropped and retried a second later. A real registry (Go's net.Listen) gets the
    # kernel's somaxconn; the kernel caps this value at that.
    request_queue_size = 4096
    proxy: ReverseProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real registry
    # A request line without a version (e.g. the bytes of a TLS ClientHello) is answered
    # with an HTTP status line, as Go's net/http server does, not HTTP/0.9's bare body: a Go
    # client (docker) then sees "server gave HTTP response to HTTPS client" and falls back
    # to plain HTTP for an insecure registry, as it does with the real registry.
    default_request_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections end on their own
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.conn_id = self.server.proxy._register(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests assert on records; headers may carry credentials."""

    def _dispatch(self) -> None:
        self.server.proxy._handle(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch


class ReverseProxy:
    """Loopback reverse proxy; see the module docstring."""

    def __init__(
        self,
        upstream: str | None = None,
        *,
        local_routes: Mapping[str, LocalHandler] | None = None,
        rules: Iterable[RuleLike] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        upstream_timeout: float = 120.0,
    ) -> None:
        # upstream may be set after start(): the registry's config needs our URL first.
        self.upstream = upstream
        self.local_routes: dict[str, LocalHandler] = dict(local_routes or {})
        self.upstream_timeout = upstream_timeout
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._rules: list[Rule] = [_as_rule(r) for r in rules]
        self._records: list[Record] = []
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._conn_serial = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> ReverseProxy:
        if self._server is not None:
            return self
        server = _Server((self._host, self._port), _Handler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"proxy-{self.address}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        assert self._thread is not None
        self._thread.join()
        # Idle keep-alive connections would otherwise keep their threads blocked.
        with self._lock:
            conns = list(self._conns.items())
        for sock, _ in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in conns:
            thread.join(timeout=10)

    def __enter__(self) -> ReverseProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("proxy not started")
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        """``host:port``, as an image reference or skopeo wants it."""
        return f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    # fault script

    def add_rule(self, rule: RuleLike) -> Rule:
        added = _as_rule(rule)
        with self._lock:
            self._rules.append(added)
        return added

    def set_rules(self, rules: Iterable[RuleLike]) -> list[Rule]:
        new = [_as_rule(r) for r in rules]
        with self._lock:
            self._rules = new
        return new

    def clear_rules(self) -> None:
        self.set_rules(())

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    # records

    @property
    def records(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def clear_records(self) -> None:
        with self._lock:
            self._records.clear()

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many recorded requests match (same matching as a Rule)."""
        probe = Rule(method, path, 0, status(0))
        return sum(probe.matches(r.method, r.path) for r in self.records)

    # internals

    def _register(self, sock: socket.socket) -> int:
        with self._lock:
            self._conns[sock] = threading.current_thread()
            return next(self._conn_serial)

    def _unregister(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.pop(sock, None)

    def _take_rule(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.remaining and rule.matches(method, path):
                    rule.hits += 1
                    return rule
        return None

    def _route(self, path: str) -> LocalHandler | None:
        for prefix in sorted(self.local_routes, key=len, reverse=True):
            if path.startswith(prefix):
                return self.local_routes[prefix]
        return None

    def _handle(self, h: _Handler) -> None:
        target = urlsplit(h.path)
        path, query = target.path or "/", target.query
        method = h.command
        fault: str | None = None
        reply: _Reply | None = None
        recorded = False

        def commit(sent: int | None) -> None:
            # Recorded before the last byte goes out, so a client that has its answer
            # can assert on the record without racing this thread.
            nonlocal recorded
            recorded = True
            record = Record(
                method,
                path,
                query,
                sent,
                fault,
                reply.status if reply else None,
                reply.local if reply else False,
                h.conn_id,
            )
            with self._lock:
                self._records.append(record)

        try:
            body, framed = _read_request_body(h)
            rule = self._take_rule(method, path)
            action = rule.action if rule else None
            fault = _fault_name(action)
            if isinstance(action, Delay):
                time.sleep(action.seconds)
                action = None
            if isinstance(action, Gate):
                action.arrived.set()
                action.release.wait(action.timeout)
                action = None
            if isinstance(action, Status):
                commit(action.code)
                _send_status(h, action)
                return
            if isinstance(action, DropBeforeResponse):
                commit(None)
                _drop(h)
                return
            reply = self._obtain(h, method, path, query, body, framed)
            if isinstance(action, DropAfterForward):
                reply.read_all()  # let the upstream finish what the request started
                commit(None)
                _drop(h)
                return
            commit(reply.status)
            _relay(h, method, reply, action)
        except (OSError, ValueError, http.client.HTTPException):
            # The client went away, sent a malformed body, or the upstream broke
            # mid-body: there is nothing sane left to say on this connection.
            _drop(h)
        finally:
            if reply is not None and reply.conn is not None:
                reply.conn.close()
            if not recorded:
                commit(None)

    def _obtain(
        self,
        h: _Handler,
        method: str,
        path: str,
        query: str,
        body: bytes,
        framed: bool,
    ) -> _Reply:
        handler = self._route(path)
        if handler is not None:
            received = CaseInsensitiveDict(h.headers.items())
            request = LocalRequest(method, path, parse_qs(query), received, body)
            try:
                local = handler(request)
            except Exception as exc:  # a broken stand-in should fail its test, not hang it
                local = LocalResponse(500, f"local route failed: {exc!r}".encode())
            headers = [(k, v) for k, v in local.headers.items() if k.lower() not in _NOT_FORWARDED]
            reason = h.responses.get(local.status, ("",))[0]
            return _Reply(
                local.status, reason, headers, len(local.body), body=local.body, local=True
            )
        if not self.upstream:
            return _bad_gateway(b"no upstream configured")
        host, _, port = self.upstream.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=self.upstream_timeout)
        try:
            # Host is passed through so the registry's absolute Location URLs name us.
            conn.putrequest(method, h.path, skip_host=True, skip_accept_encoding=True)
            for name, value in h.headers.items():
                if name.lower() not in _NOT_FORWARDED:
                    conn.putheader(name, value)
            if framed or body:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
        except OSError as exc:
            conn.close()
            return _bad_gateway(f"upstream {self.upstream}: {exc}".encode())
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _NOT_FORWARDED]
        declared = resp.getheader("Content-Length")
        length = int(declared) if declared is not None and declared.isdigit() else None
        return _Reply(resp.status, resp.reason, headers, length, upstream=resp, conn=conn)


def _bad_gateway(body: bytes) -> _Reply:
    return _Reply(502, "Bad Gateway", [("Content-Type", "text/plain")], len(body), body=body)


def _read_request_body(h: _Handler) -> tuple[bytes, bool]:
    """The whole request body, de-chunked, and whether the client framed one at all."""
    if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
        parts: list[bytes] = []
        while True:
            size = int(h.rfile.readline().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers are dropped
                return b"".join(parts), True
            parts.append(h.rfile.read(size))
            h.rfile.readline()
    declared = h.headers.get("Content-Length")
    if declared is None:
        return b"", False
    length = int(declared)
    return (h.rfile.read(length) if length else b""), True


def _drop(h: _Handler) -> None:
    """Close the client connection without sending (any more of) a response."""
    h.close_connection = True
    with contextlib.suppress(OSError):
        h.connection.shutdown(socket.SHUT_RDWR)


def _send_status(h: _Handler, action: Status) -> None:
    body = action.body
    if body is None:
        error = {"code": "UNAVAILABLE", "message": f"injected fault: status {action.code}"}
        body = json.dumps({"errors": [error]}).encode()
    h.send_response_only(action.code)
    ctype = "application/json" if body[:1] in (b"{", b"[") else "text/plain; charset=utf-8"
    h.send_header("Content-Type", ctype)
    if action.retry_after is not None:
        h.send_header("Retry-After", action.retry_after)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def _has_body(method: str, code: int) -> bool:
    return method != "HEAD" and code >= 200 and code not in (204, 304)


def _relay(h: _Handler, method: str, reply: _Reply, action: Action | None) -> None:
    h.send_response_only(reply.status, reply.reason)
    stripped = action.name.lower() if isinstance(action, StripHeader) else None
    for name, value in reply.headers:
        if name.lower() != stripped:
            h.send_header(name, value)
    if not _has_body(method, reply.status):
        if reply.length is not None:  # HEAD announces the length of what GET would send
            h.send_header("Content-Length", str(reply.length))
        h.end_headers()
        if isinstance(action, TruncateBody):
            _drop(h)
        return
    if isinstance(action, TruncateBody | CorruptBody):
        body = reply.read_all()
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if isinstance(action, TruncateBody):
            h.wfile.write(body[: len(body) // 2])
            _drop(h)
            return
        if body:
            flipped = bytearray(body)
            flipped[len(body) // 2] ^= 0x01
            body = bytes(flipped)
        h.wfile.write(body)
        return
    if reply.body is not None or reply.length is not None:
        length = len(reply.body) if reply.body is not None else reply.length
        h.send_header("Content-Length", str(length))
        h.end_headers()
        if reply.body is not None:
            h.wfile.write(reply.body)
            return
        assert reply.upstream is not None and length is not None
        sent = 0
        while chunk := reply.upstream.read(_CHUNK):
            h.wfile.write(chunk)
            sent += len(chunk)
        if sent < length:  # the upstream cut its body short: pass that on, don't hang
            _drop(h)
        return
    # Unknown length (upstream chunked): re-chunk so keep-alive survives.
    assert reply.upstream is not None
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    while chunk := reply.upstream.read1(_CHUNK):
        h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    h.wfile.write(b"0\r\n\r\n")
