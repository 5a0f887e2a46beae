"""An OCI distribution API client: auth, bounded retries, and digest checks on everything read.

Three layers, as in regclient: references (reference.py), this HTTP transport, and the
manifest types (manifest.py). Every request is counted so a merge can report its cost.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, SSLError

from . import digest as digests
from .auth import Challenge, Credentials, parse_challenge, resolve_credentials
from .manifest import MANIFEST_ACCEPT, media_type_of
from .parallel import DEFAULT_WORKERS
from .reference import ReferenceError, api_host, validate_tag

# 408, 429 and the 5xx a retry can cure (not 501 Not Implemented, 505 Version Not Supported).
RETRYABLE_STATUS = frozenset({408, 429} | set(range(500, 600)) - {501, 505})
# Renew a bearer token this long before it expires (at most a quarter of its lifetime), so it
# cannot lapse in flight.
TOKEN_MARGIN_SECONDS = 5.0
# Every body is streamed and reading stops at its limit (a hostile or broken server cannot make
# us buffer more): manifests as distribution's own 4 MiB manifest limit, image configs, token
# answers, and every other answer (errors, 401s, PUT/POST replies).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_TOKEN_BYTES = 1024 * 1024
MAX_ANSWER_BYTES = 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


Response = urllib3.BaseHTTPResponse


class RegistryError(Exception):
    """Anything the registry refused or we could not complete; the message names the URL."""


class NotFoundError(RegistryError):
    pass


class AuthError(RegistryError):
    pass


class DigestMismatchError(RegistryError):
    pass


class TransportError(RegistryError):
    """Connection failures or retryable statuses that outlasted the retry budget."""


class TooLargeError(RegistryError):
    """An answer longer than the limit for its kind; the message names the limit."""


class InvalidDigestError(RegistryError):
    """A digest (from a manifest, a reference or a registry header) we refuse to use."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 8.0
    # A Retry-After longer than this is cut short: a CI job should fail, not hang for an hour.
    max_retry_after: float = 30.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            seconds = _parse_retry_after(retry_after)
            if seconds is not None:
                return min(max(seconds, 0.0), self.max_retry_after)
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        # Full jitter spreads retries of parallel CI jobs hitting the same registry.
        return float(backoff / 2 + random.uniform(0, backoff / 2))  # noqa: S311


def _parse_retry_after(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils  # only for the rare HTTP-date form; keeps start-up lean

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


@dataclass(frozen=True)
class FetchedManifest:
    raw: bytes
    media_type: str
    digest: str


@dataclass
class _Token:
    value: str
    renew_at: float
    scopes: frozenset[str]


@dataclass
class RequestStats:
    """Requests sent, counted under a lock: a merge's requests go out from several threads."""

    registry: int = 0
    token: int = 0
    retries: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def count(self, kind: str) -> None:
        with self._lock:
            setattr(self, kind, getattr(self, kind) + 1)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: what "same server" means."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1  # a malformed port never equals the registry's
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def _checked_digest(digest: str, where: str) -> str:
    """A digest validated before it goes into a URL path (digest.py's rules)."""
    try:
        return digests.validate(digest, where=where)
    except digests.DigestError as exc:
        raise InvalidDigestError(str(exc)) from None


def _checked_reference(reference: str, where: str) -> str:
    """What follows /manifests/: a valid digest or a valid tag, nothing else."""
    if ":" in reference:
        return _checked_digest(reference, where)
    try:
        return validate_tag(reference)
    except ReferenceError as exc:
        raise RegistryError(f"{where}: {exc}") from None


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


class RegistryClient:
    """Talks to one registry. Safe to share between threads (the merge reads and writes with a
    small pool): urllib3's PoolManager is thread-safe, and the auth state (basic or bearer,
    the token cache) and the counters change under locks, so N threads that meet the same
    401 fetch one token, not N."""

    def __init__(
        self,
        registry: str,
        *,
        insecure: bool = False,
        credentials: Credentials | None = None,
        use_env_credentials: bool = True,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        connections: int = DEFAULT_WORKERS,
    ) -> None:
        self.registry = registry
        # --insecure means plain HTTP; otherwise HTTPS with certificates verified. Docker Hub's
        # name (docker.io) is not its API host (registry-1.docker.io): see reference.api_host.
        self.base_url = f"{'http' if insecure else 'https'}://{api_host(registry)}"
        self.credentials = credentials
        if credentials is None and use_env_credentials:
            self.credentials = resolve_credentials(registry)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        # urllib3, not requests: it is what requests wraps, and it starts faster — the merge
        # is a short CI process whose start-up is a good share of its run time.
        self.http = urllib3.PoolManager(
            cert_reqs=ssl.CERT_REQUIRED,
            ca_certs=os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("SSL_CERT_FILE")
            or None,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            # One kept-alive connection per request in flight (the merge's pool size);
            # urllib3's default of 1 would open and drop a connection per parallel request.
            maxsize=max(1, connections),
        )
        self._sleep = sleep
        self._clock = clock
        self._use_basic = False
        self._bearer_challenge: Challenge | None = None
        self._tokens: list[_Token] = []
        # Held while the auth state is read or changed, token fetches included.
        self._auth_lock = threading.RLock()
        self.stats = RequestStats()

    # ----------------------------------------------------------------- transport

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes | BinaryIO | None = None,
        stream: bool = False,
        already_done: Callable[[], bool] | None = None,
        kind: str = "registry",
        limit: int = MAX_ANSWER_BYTES,
        what: str = "answer",
    ) -> Response | None:
        """One logical request, retried on connection errors, 408, 429 and 5xx.

        A request with a body is never re-sent blindly: the first try may have taken effect
        before the connection dropped, so `already_done` is asked first. Returns None when it
        says the effect is already there.

        Bodies are streamed and read here, at most `limit` bytes (TooLargeError names the
        limit and `what` it is for); a body cut off mid-way is retried like a dropped line.
        With `stream`, a 2xx body is left for the caller to stream (a layer).
        """
        last_problem = ""
        for attempt in range(1, self.retry.attempts + 1):
            if attempt > 1 and body is not None:
                if already_done is None:
                    raise TransportError(
                        f"{method} {url}: {last_problem}; not re-sending a request body whose "
                        "effect cannot be checked"
                    )
                if already_done():
                    return None
            retry_after: str | None = None
            try:
                self.stats.count("token" if kind == "token" else "registry")
                response = self.http.request(
                    method,
                    url,
                    headers=headers,
                    body=body,
                    preload_content=False,
                    # Blob reads may redirect to storage; urllib3 drops Authorization when a
                    # redirect leaves the scheme/host/port (Retry.remove_headers_on_redirect).
                    # Our own retries are below, so none in there.
                    redirect=method in ("GET", "HEAD"),
                    retries=urllib3.Retry(
                        total=None, connect=0, read=0, status=0, other=0, redirect=5
                    ),
                )
                if response.status in RETRYABLE_STATUS:
                    # Kept for the final error: after the last retry the registry's own
                    # explanation is the most useful part of it.
                    last_problem = f"HTTP {response.status}" + _detail(
                        _read_at_most(response, MAX_ANSWER_BYTES)
                    )
                    retry_after = response.headers.get("Retry-After")
                elif stream and 200 <= response.status < 300:
                    return response
                else:
                    data = _read_at_most(response, limit)
                    if data is None:
                        raise TooLargeError(
                            f"{method} {url}: {what} larger than {_size(limit)}, the limit for "
                            f"a {what}; stopped reading there"
                        )
                    return _with_body(response, data, method, url)
            except HTTPError as exc:
                reason = exc.reason if isinstance(exc, MaxRetryError) else exc
                if isinstance(reason, SSLError):
                    raise TransportError(
                        f"{method} {url}: TLS verification failed ({_short(reason)}); "
                        "use --insecure only for a plain-HTTP registry you trust"
                    ) from None
                last_problem = f"connection failed ({_short(reason or exc)})"
            if attempt < self.retry.attempts:
                self.stats.count("retries")
                self._sleep(self.retry.delay(attempt, retry_after))
        raise TransportError(f"{method} {url}: {last_problem} after {self.retry.attempts} attempts")

    def _same_origin(self, url: str) -> bool:
        """Whether `url` is on the registry's own scheme, host and port."""
        return _origin(url) == _origin(self.base_url)

    def _request(
        self,
        method: str,
        repository: str,
        path: str,
        *,
        scopes: Iterable[str],
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        stream: bool = False,
        already_done: Callable[[], bool] | None = None,
        limit: int = MAX_ANSWER_BYTES,
        what: str = "answer",
    ) -> Response | None:
        url = f"{self.base_url}/v2/{repository}/{path}"
        wanted = frozenset(scopes)
        sent_auth: str | None = None
        for _ in range(3):
            request_headers = dict(headers or {})
            sent_auth = self._auth_header(wanted)
            if sent_auth:
                request_headers["Authorization"] = sent_auth
            response = self._send(
                method,
                url,
                headers=request_headers,
                body=body,
                stream=stream,
                already_done=already_done,
                limit=limit,
                what=what,
            )
            if response is None or response.status != 401:
                return response
            challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            response.release_conn()
            self._answer_challenge(challenge, wanted, sent_auth, url)
        who = f"user {self.credentials.username!r}" if self.credentials else "anonymous"
        raise AuthError(
            f"{method} {url}: refused after authenticating as {who}; these credentials lack "
            f"the rights {' '.join(sorted(wanted))}"
        )

    # ----------------------------------------------------------------- auth

    def _auth_header(self, scopes: frozenset[str]) -> str | None:
        with self._auth_lock:
            if self._use_basic and self.credentials:
                return self.credentials.basic_header()
            if self._bearer_challenge is None:
                return None
            token = self._token_for(scopes)
            if token is None:
                # Expired or never fetched for these scopes: fetch now rather than eat a 401.
                token = self._fetch_token(self._bearer_challenge, scopes)
            return f"Bearer {token.value}"

    def _token_for(self, scopes: frozenset[str]) -> _Token | None:
        now = self._clock()
        for token in self._tokens:
            if scopes <= token.scopes and token.renew_at > now:
                return token
        return None

    def _answer_challenge(
        self, challenge: Challenge | None, scopes: frozenset[str], sent_auth: str | None, url: str
    ) -> None:
        with self._auth_lock:
            self._answer_challenge_locked(challenge, scopes, sent_auth, url)

    def _answer_challenge_locked(
        self, challenge: Challenge | None, scopes: frozenset[str], sent_auth: str | None, url: str
    ) -> None:
        if challenge is None:
            raise AuthError(f"{url}: 401 without a WWW-Authenticate challenge")
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise AuthError(
                    f"{url}: the registry needs credentials; set REGISTRY_USER/REGISTRY_PASSWORD "
                    "or log in (~/.docker/config.json)"
                )
            if sent_auth and sent_auth.startswith("Basic"):
                raise AuthError(
                    f"{url}: credentials for user {self.credentials.username!r} "
                    f"(from {self.credentials.source}) were rejected"
                )
            self._use_basic = True
            return
        if challenge.scheme != "bearer":
            raise AuthError(f"{url}: unsupported auth scheme {challenge.scheme!r}")
        if sent_auth and sent_auth.startswith("Bearer") and self._bearer_challenge == challenge:
            # A token we sent was refused: it expired early or lacks a scope. Drop it and retry
            # once with a fresh one; a second refusal is final.
            refused = sent_auth.removeprefix("Bearer ")
            self._tokens = [t for t in self._tokens if t.value != refused]
        self._bearer_challenge = challenge
        extra = challenge.params.get("scope", "")
        wanted = scopes | frozenset(s for s in extra.split(" ") if s)
        # Another thread that met the same challenge may have fetched the token meanwhile.
        if self._token_for(wanted) is None:
            self._fetch_token(challenge, wanted)

    def _check_realm(self, realm: str) -> None:
        parts = urlsplit(realm)
        if parts.scheme == "https":
            return
        registry = urlsplit(self.base_url)
        if (
            parts.scheme == "http"
            and parts.netloc == registry.netloc
            and _is_loopback(parts.hostname or "")
        ):
            return
        raise AuthError(
            f"refusing token realm {realm!r}: a token realm is only followed over https, or to "
            f"the registry's own loopback address ({registry.netloc})"
        )

    def _fetch_token(self, challenge: Challenge, scopes: frozenset[str]) -> _Token:
        realm = challenge.params.get("realm", "")
        if not realm:
            raise AuthError(f"{self.registry}: bearer challenge without a realm")
        self._check_realm(realm)
        query: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        query += [("scope", s) for s in sorted(scopes)]
        headers = {"Accept": "application/json"}
        if self.credentials:
            headers["Authorization"] = self.credentials.basic_header()
        url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
        response = self._send(
            "GET", url, headers=headers, kind="token", limit=MAX_TOKEN_BYTES, what="token answer"
        )
        assert response is not None  # a GET has no body, so it is never "already done"
        if response.status in (401, 403):
            who = f"user {self.credentials.username!r}" if self.credentials else "anonymous access"
            raise AuthError(f"token service {realm} refused {who} (HTTP {response.status})")
        if response.status != 200:
            raise AuthError(f"token service {realm}: HTTP {response.status}")
        try:
            data = json.loads(response.data)
            value = data.get("token") or data.get("access_token")
            expires_in = float(data.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            value = None
        if not value or not isinstance(value, str):
            raise AuthError(f"token service {realm}: response has no token")
        # The spec's minimum lifetime is 60 s; take the server's word, measured on our clock.
        margin = min(TOKEN_MARGIN_SECONDS, expires_in / 4)
        token = _Token(str(value), self._clock() + expires_in - margin, scopes)
        self._tokens = [t for t in self._tokens if not t.scopes <= scopes] + [token]
        return token

    # ----------------------------------------------------------------- API

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest a tag or digest resolves to, or None if it does not exist.

        A `Docker-Content-Digest` header is validated like any digest we use: a malformed one
        is an error, not a value to compare or put in a URL. A registry that answers a HEAD
        without it (the header is a SHOULD in the distribution spec) costs a GET instead: a
        digest we do not know would make every identical re-run write again.
        """
        where = f"HEAD manifest {self.registry}/{repository}:{reference}"
        response = self._request(
            "HEAD",
            repository,
            f"manifests/{_checked_reference(reference, where)}",
            scopes=[pull_scope(repository)],
            headers={"Accept": MANIFEST_ACCEPT},
        )
        assert response is not None
        if response.status == 404:
            return None
        _raise_for(response, where)
        echoed = response.headers.get("Docker-Content-Digest")
        if echoed:
            return _checked_digest(echoed, f"{where}: Docker-Content-Digest")
        if ":" in reference:
            return reference  # it exists, and a digest reference is its own digest
        fetched = self.get_tag(repository, reference)
        return fetched.digest if fetched else None

    def get_tag(self, repository: str, tag: str) -> FetchedManifest | None:
        """What a tag holds now, whatever its media type (an artifact, a schema 1 manifest), or
        None if the tag does not exist: the merge reads its targets this way before it writes,
        to put them back byte for byte if the merge fails."""
        where = f"{self.registry}/{repository}:{tag}"
        response = self._request(
            "GET",
            repository,
            f"manifests/{_checked_reference(tag, where)}",
            scopes=[pull_scope(repository)],
            headers={"Accept": MANIFEST_ACCEPT},
            limit=MAX_MANIFEST_BYTES,
            what="manifest",
        )
        assert response is not None
        if response.status == 404:
            return None
        _raise_for(response, f"GET manifest {where}")
        raw = response.data
        digest = _verify(raw, response.headers.get("Docker-Content-Digest"), where)
        header_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            media_type = media_type_of(raw, header_type)
        except ValueError:
            media_type = header_type or "application/octet-stream"
        return FetchedManifest(raw, media_type, digest)

    def delete_tag(self, repository: str, tag: str) -> tuple[bool, str]:
        """Remove a tag, never the manifest: `DELETE /v2/<name>/manifests/<tag>`.

        OCI distribution-spec v1.1 ("Deleting tags", end-9): 202 when the tag is gone; a
        registry without tag deletion answers 400 or 405. distribution v3 implements it as an
        Untag (registry/handlers/manifests.go DeleteManifest, `imh.Tag != ""`); distribution
        2.8 refuses it (DIGEST_INVALID, or UNSUPPORTED since commit 95f1eea). A DELETE by
        *digest* is never sent: distribution deletes the manifest from the repository and
        then untags every tag that points at it (tagService.Lookup + Untag), and a merge's
        children are images other tags share. Returns (removed, what the registry said).
        """
        where = f"DELETE tag {self.registry}/{repository}:{tag}"
        if ":" in tag:
            raise RegistryError(f"{where}: refusing to delete by digest")
        response = self._request(
            "DELETE",
            repository,
            f"manifests/{_checked_reference(tag, where)}",
            scopes=[push_scope(repository)],
        )
        assert response is not None  # no body: never "already done"
        if 200 <= response.status < 300:
            return True, f"HTTP {response.status}"
        return False, f"HTTP {response.status}" + _detail(response.data)

    def _fetch(
        self,
        repository: str,
        path: str,
        where: str,
        noun: str,
        *,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        limit: int = MAX_ANSWER_BYTES,
    ) -> Response:
        """A GET that must succeed: a 404 or a refusal becomes an error naming `where`."""
        response = self._request(
            "GET",
            repository,
            path,
            scopes=[pull_scope(repository)],
            headers=headers,
            stream=stream,
            limit=limit,
            what=noun,
        )
        assert response is not None  # a GET has no body, so it is never "already done"
        if response.status == 404:
            response.release_conn()
            raise NotFoundError(f"{where}: {noun} not found")
        _raise_for(response, f"GET {noun} {where}")
        return response

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """A manifest by tag or digest, read at most MAX_MANIFEST_BYTES and digest-checked."""
        where = f"{self.registry}/{repository}{'@' if ':' in reference else ':'}{reference}"
        response = self._fetch(
            repository,
            f"manifests/{_checked_reference(reference, where)}",
            where,
            "manifest",
            headers={"Accept": MANIFEST_ACCEPT},
            limit=MAX_MANIFEST_BYTES,
        )
        raw = response.data
        expected = reference if ":" in reference else response.headers.get("Docker-Content-Digest")
        digest = _verify(raw, expected, where)
        return FetchedManifest(
            raw, media_type_of(raw, response.headers.get("Content-Type")), digest
        )

    def get_blob(self, repository: str, digest: str, *, max_bytes: int = MAX_CONFIG_BYTES) -> bytes:
        """A small blob (a config), read at most `max_bytes`: a cut-off body is retried."""
        where = f"{self.registry}/{repository}@{digest}"
        path = f"blobs/{_checked_digest(digest, where)}"
        raw = self._fetch(repository, path, where, "blob", limit=max_bytes).data
        _verify(raw, digest, where)
        return raw

    def download_blob(
        self, repository: str, digest: str, destination: Path, *, max_bytes: int | None = None
    ) -> None:
        """Stream a (layer) blob to a file, hashing as it goes; the file is removed on mismatch.

        With `max_bytes` (a descriptor's size), reading stops one byte past it: a server cannot
        make us store more than the manifest said. The body is read after `_send` returns, so a
        connection cut mid-body is retried here.
        """
        where = f"{self.registry}/{repository}@{digest}"
        _checked_digest(digest, where)
        for attempt in range(1, self.retry.attempts + 1):
            try:
                self._download_once(repository, digest, destination, where, max_bytes)
                return
            except HTTPError as exc:
                destination.unlink(missing_ok=True)
                if attempt == self.retry.attempts:
                    raise TransportError(
                        f"GET blob {where}: body cut off ({_short(exc)}) after {attempt} attempts"
                    ) from None
                self.stats.count("retries")
                self._sleep(self.retry.delay(attempt, None))

    def _download_once(
        self, repository: str, digest: str, destination: Path, where: str, max_bytes: int | None
    ) -> None:
        hasher = digests.hasher(digest, where=where)
        response = self._fetch(repository, f"blobs/{digest}", where, "blob", stream=True)
        written = 0
        try:
            with destination.open("wb") as out:
                for chunk in response.stream(1 << 20):
                    written += len(chunk)
                    if max_bytes is not None and written > max_bytes:
                        destination.unlink(missing_ok=True)
                        raise TooLargeError(
                            f"GET blob {where}: longer than {_size(max_bytes)}, the size its "
                            "descriptor gives; stopped reading there"
                        )
                    hasher.update(chunk)
                    out.write(chunk)
        finally:
            response.release_conn()
        if f"{digest.partition(':')[0]}:{hasher.hexdigest()}" != digest:
            destination.unlink(missing_ok=True)
            raise DigestMismatchError(f"{where}: content does not match its digest")

    def blob_exists(self, repository: str, digest: str) -> bool:
        where = f"HEAD blob {self.registry}/{repository}@{digest}"
        response = self._request(
            "HEAD",
            repository,
            f"blobs/{_checked_digest(digest, where)}",
            scopes=[pull_scope(repository)],
        )
        assert response is not None
        if response.status == 404:
            return False
        _raise_for(response, where)
        return True

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> None:
        """Cross-repository mount: the registry links the blob; no bytes pass through us."""
        _checked_digest(digest, f"mount into {self.registry}/{repository}")
        query = urlencode({"mount": digest, "from": from_repository})
        response = self._request(
            "POST",
            repository,
            f"blobs/uploads/?{query}",
            scopes=[push_scope(repository), pull_scope(from_repository)],
            body=b"",
            headers={"Content-Length": "0"},
            already_done=lambda: self.blob_exists(repository, digest),
        )
        if response is None or response.status == 201:
            return
        if response.status == 202:
            # The registry opened an upload instead of mounting: close it, leave nothing behind.
            self._cancel_upload(repository, response.headers.get("Location", ""))
            # A mount also falls back to an upload when the source repository lacks the blob:
            # that is a broken source, not a policy, and the message must say which.
            if not self.blob_exists(from_repository, digest):
                raise NotFoundError(
                    f"{self.registry}: could not mount {digest} from {from_repository} into "
                    f"{repository}: the blob is missing from the source repository (its "
                    "manifest lists it); push the source image again"
                )
            raise RegistryError(
                f"{self.registry}: could not mount {digest} from {from_repository} into "
                f"{repository} (the registry does not allow cross-repository mounts here, or "
                f"these credentials cannot read {from_repository})"
            )
        _raise_for(response, f"mount {digest} from {from_repository} into {repository}")

    def _cancel_upload(self, repository: str, location: str) -> None:
        """DELETE an upload the registry opened, at the `Location` it named.

        That URL is the server's word: relative URLs resolve against the registry (RFC 9110
        section 10.2.2), and credentials go with it only when it is on the registry's own
        scheme, host and port, as urllib3 does for redirects. A cancel that fails is left to
        the registry's upload purging; the mount error that follows is what matters.
        """
        if not location:
            return
        cancel = urljoin(f"{self.base_url}/v2/{repository}/blobs/uploads/", location)
        if urlsplit(cancel).scheme not in ("http", "https"):
            return
        headers = self._auth_only(repository) if self._same_origin(cancel) else {}
        try:
            response = self._send("DELETE", cancel, headers=headers)
        except RegistryError:
            return
        if response is not None:
            response.release_conn()

    def upload_blob(self, repository: str, digest: str, size: int, source: Path) -> None:
        """Push a blob from a file: POST an upload, then PUT its bytes to the `Location` the
        registry names, `?digest=` given so the registry checks them too (distribution-spec,
        "Pushing a blob monolithically", POST then PUT). Streamed from the file, never held
        whole. Credentials go to the `Location` only on the registry's own scheme/host/port.
        """
        where = f"upload {digest} to {self.registry}/{repository}"
        _checked_digest(digest, where)
        response = self._request(
            "POST",
            repository,
            "blobs/uploads/",
            scopes=[push_scope(repository)],
            body=b"",
            headers={"Content-Length": "0"},
            already_done=lambda: self.blob_exists(repository, digest),
        )
        if response is None:
            return
        _raise_for(response, where)
        location = response.headers.get("Location", "")
        if response.status != 202 or not location:
            raise RegistryError(f"{where}: HTTP {response.status} without an upload location")
        url = urljoin(f"{self.base_url}/v2/{repository}/blobs/uploads/", location)
        if urlsplit(url).scheme not in ("http", "https"):
            raise RegistryError(f"{where}: upload location {location!r} is not an http(s) URL")
        url += ("&" if urlsplit(url).query else "?") + urlencode({"digest": digest})
        headers = self._auth_only(repository) if self._same_origin(url) else {}
        headers.update({"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        with source.open("rb") as body:

            def already_done() -> bool:
                # Asked before every re-send: if the blob is not there, the body goes again
                # from its first byte.
                if self.blob_exists(repository, digest):
                    return True
                body.seek(0)
                return False

            put = self._send("PUT", url, headers=headers, body=body, already_done=already_done)
        if put is None:
            return
        _raise_for(put, where)

    def _auth_only(self, repository: str) -> dict[str, str]:
        header = self._auth_header(frozenset([push_scope(repository)]))
        return {"Authorization": header} if header else {}

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or digest; returns its digest (checked against the reply)."""
        where = f"PUT manifest {self.registry}/{repository}:{reference}"
        path = f"manifests/{_checked_reference(reference, where)}"
        algorithm = reference.partition(":")[0] if ":" in reference else "sha256"
        digest = digests.compute(raw, algorithm)
        if ":" in reference and digest != reference:
            raise DigestMismatchError(f"{where}: the manifest's digest is {digest}")
        response = self._request(
            "PUT",
            repository,
            path,
            scopes=[push_scope(repository)],
            headers={"Content-Type": media_type},
            body=raw,
            already_done=lambda: self.head_manifest(repository, reference) == digest,
        )
        if response is None:
            return digest
        _raise_for(response, where)
        echoed = response.headers.get("Docker-Content-Digest")
        if echoed and echoed != digest:
            raise DigestMismatchError(
                f"{self.registry}/{repository}:{reference}: registry stored {echoed}, "
                f"we sent {digest}"
            )
        return digest


def _size(limit: int) -> str:
    """`4 MiB (4194304 bytes)`: a limit as people and logs both read it."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= factor and limit % factor == 0:
            return f"{limit // factor} {unit} ({limit} bytes)"
    return f"{limit} bytes"


def _read_at_most(response: Response, limit: int) -> bytes | None:
    """The whole body if it is at most `limit` bytes; None (connection dropped) if longer.

    A declared Content-Length over the limit is refused before reading; otherwise the
    (decoded) body is read in chunks and reading stops one byte past the limit.
    """
    declared = response.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        response.close()
        return None
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = response.read(min(1 << 16, limit + 1 - total))
        if not chunk:
            response.release_conn()
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
    response.close()  # the rest stays unread: this connection cannot be reused
    return None


def _with_body(response: Response, data: bytes, method: str, url: str) -> Response:
    """A finished response carrying the body already read (and decoded), for `.data`/`.json()`."""
    return urllib3.HTTPResponse(
        body=io.BytesIO(data),
        headers=response.headers,
        status=response.status,
        reason=response.reason,
        preload_content=True,
        decode_content=False,
        enforce_content_length=False,
        request_method=method,
        request_url=url,
    )


def _detail(body: bytes | None) -> str:
    """` (CODE: message; …)` from a distribution error body, or nothing."""
    if not body:
        return ""
    try:
        errors = json.loads(body).get("errors") or []
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError, TypeError):
        return ""
    return f" ({_short(Exception(text))})" if text else ""


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 160 else text[:157] + "..."


def _raise_for(response: Response, what: str) -> None:
    status = response.status
    if 200 <= status < 300:
        return
    # Streamed answers (a layer GET) only get here with a non-2xx status, which _send read.
    message = f"{what}: HTTP {status}" + _detail(response.data)
    if status in (401, 403):
        raise AuthError(message)
    if status == 404:
        raise NotFoundError(message)
    raise RegistryError(message)


def _verify(raw: bytes, expected: str | None, where: str) -> str:
    """Digest of `raw`, checked against what was asked for (or what the registry claimed).

    Fails closed: an expected digest with an algorithm digest.py cannot verify is an error
    (it used to fall back to sha256 and check nothing). Without an expectation (a tag read
    from a registry that sent no Docker-Content-Digest) the digest is computed as sha256.
    """
    if not expected:
        return digests.compute(raw)
    _checked_digest(expected, where)
    actual = digests.compute(raw, expected.partition(":")[0])
    if actual != expected:
        raise DigestMismatchError(
            f"{where}: content does not match its digest (expected {expected}, got {actual})"
        )
    return actual
