"""A STAND-IN for a registry token service, for tests only.

It is not a real authorization server (no ACLs, refresh tokens or OAuth2 POST flow); it
implements just enough of the Docker token authentication spec
(https://distribution.github.io/distribution/spec/auth/token/) for distribution 2.8's
``auth: token`` access controller to accept what it issues: an ES256 JWT whose header
carries ``x5c`` (the self-signed signing cert, which is also the registry's
``rootcertbundle``) or, alternatively, ``kid`` in libtrust fingerprint format; claims
iss/sub/aud/exp/nbf/iat/jti/access, with ``aud`` a single string as 2.8 requires.
Both header forms were checked against Debian's docker-registry 2.8.2 (see
tests/integration/test_tokenserver.py). ``x5c`` is the default: the registry verifies it
as a chain to its bundle, whereas ``kid`` only works while the signing cert itself is in
the bundle (true here, not for a cert issued by an intermediate).

It has no listener of its own: :meth:`TokenServer.handle` is a ``local_routes`` handler
for :class:`tests.support.proxy.ReverseProxy`, so the realm shares the registry's
host:port::

    tokens = TokenServer(tmp_path / "auth", users={"alice": "s3cret"})
    proxy = ReverseProxy(local_routes={"/token": tokens.handle}).start()
    config["auth"] = tokens.registry_auth_config(f"{proxy.url}/token")
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.support.certs import self_signed_ca, write_pem
from tests.support.proxy import LocalRequest, LocalResponse

__all__ = ["REGISTRY_LEEWAY", "IssueRecord", "TokenServer", "libtrust_key_id", "unverified_claims"]

# distribution's token.go accepts a token up to this long after its "exp" (clock skew).
REGISTRY_LEEWAY = 60

HeaderMode = Literal["x5c", "kid"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """libtrust's fingerprint: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits,
    base32 without padding, in 12 colon-separated groups of 4."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, signature not checked: for assertions on what was granted."""
    claims: dict[str, Any] = json.loads(_b64url_decode(token.split(".")[1]))
    return claims


@dataclass(frozen=True)
class IssueRecord:
    """One token request. Never holds a password."""

    account: str | None  # None: anonymous, or credentials that were refused
    scopes: tuple[str, ...]
    granted: tuple[str, ...]  # "type:name:actions" actually put in the token
    status: int


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"errors": [{"code": code, "message": message}]}


class TokenServer:
    """Issues registry bearer tokens; see the module docstring.

    ``ttl`` may be changed at any time to make later tokens short-lived. With
    ``match_registry_leeway`` (the default) the ``exp`` claim is moved back by
    :data:`REGISTRY_LEEWAY`, so the registry really refuses a token ``ttl`` seconds
    after issue, matching the ``expires_in`` a client is told.
    """

    def __init__(
        self,
        directory: Path,
        *,
        users: Mapping[str, str] | None = None,
        allow_anonymous: bool = False,
        service: str = "archfleet-registry",
        issuer: str = "archfleet-token-stand-in",
        ttl: int = 300,
        header_mode: HeaderMode = "x5c",
        match_registry_leeway: bool = True,
        realm: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._users = dict(users or {})
        self.allow_anonymous = allow_anonymous
        self.service = service
        self.issuer = issuer
        self.ttl = ttl
        self.header_mode: HeaderMode = header_mode
        self.match_registry_leeway = match_registry_leeway
        self.realm = realm
        self._lock = threading.Lock()
        self._issued_by_scope: Counter[str] = Counter()
        self._records: list[IssueRecord] = []
        self._key, self._cert = self._load_or_create_key()

    def __repr__(self) -> str:  # the default would show nothing secret, but be explicit
        return (
            f"TokenServer(service={self.service!r}, issuer={self.issuer!r}, "
            f"users={sorted(self._users)!r}, allow_anonymous={self.allow_anonymous})"
        )

    # key material

    @property
    def key_path(self) -> Path:
        return self.directory / "token-signing.key"

    @property
    def cert_path(self) -> Path:
        return self.directory / "token-signing.crt"

    def _load_or_create_key(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        if self.key_path.exists() and self.cert_path.exists():
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{self.key_path}: expected an EC private key")
            return key, x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        self.directory.mkdir(parents=True, exist_ok=True)
        # A root the registry verifies x5c chains against: it must be a CA.
        key, cert = self_signed_ca(self.issuer)
        write_pem(key, cert, self.key_path, self.cert_path)
        return key, cert

    @property
    def key_id(self) -> str:
        return libtrust_key_id(self._key.public_key())

    def registry_auth_config(self, realm: str | None = None) -> dict[str, Any]:
        """The ``auth:`` section of a distribution config (realm: where clients get
        tokens, e.g. the proxy's ``/token``)."""
        realm = realm or self.realm
        if not realm:
            raise ValueError("registry_auth_config needs the realm URL of the token endpoint")
        self.realm = realm
        return {
            "token": {
                "realm": realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.cert_path),
            }
        }

    # counters

    @property
    def issued(self) -> int:
        with self._lock:
            return sum(1 for r in self._records if r.status == 200)

    @property
    def refused(self) -> int:
        with self._lock:
            return sum(1 for r in self._records if r.status != 200)

    @property
    def issued_by_scope(self) -> Counter[str]:
        """Tokens issued per requested scope string ("" for a token with no scope)."""
        with self._lock:
            return Counter(self._issued_by_scope)

    @property
    def records(self) -> list[IssueRecord]:
        with self._lock:
            return list(self._records)

    def reset_counts(self) -> None:
        with self._lock:
            self._issued_by_scope.clear()
            self._records.clear()

    # issuing

    def _authenticate(self, authorization_header: str | None) -> tuple[str | None, str | None]:
        """(account, refusal): account None with refusal None means anonymous."""
        if not authorization_header:
            return None, None if self.allow_anonymous else "authentication required"
        scheme, _, value = authorization_header.partition(" ")
        if scheme.lower() != "basic":
            return None, "only Basic credentials are accepted"
        try:
            user, sep, password = (
                base64.b64decode(value.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return None, "malformed Basic credentials"
        expected = self._users.get(user)
        if not sep or expected is None or not hmac.compare_digest(expected, password):
            return None, "invalid username or password"
        return user, None

    def issue(
        self, query: Mapping[str, str | Sequence[str]], authorization_header: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Answer a GET on the token endpoint: (HTTP status, JSON body)."""
        scopes = tuple(
            scope
            for value in _values(query, "scope")
            for scope in value.split()  # OAuth2 style: several scopes in one parameter
        )
        account, refusal = self._authenticate(authorization_header)
        if refusal is not None:
            return self._refuse(scopes, 401, "UNAUTHORIZED", refusal)
        service = _values(query, "service")
        if service and service[-1] != self.service:
            return self._refuse(scopes, 400, "INVALID_REQUEST", f"unknown service {service[-1]!r}")
        access: list[dict[str, Any]] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if not kind or not name:
                return self._refuse(scopes, 400, "INVALID_REQUEST", f"malformed scope {scope!r}")
            wanted = [a for a in actions.split(",") if a]
            if account is None:  # anonymous: read-only, repositories only
                wanted = ["pull"] if kind == "repository" and "pull" in wanted else []
            if wanted:
                access.append({"type": kind, "name": name, "actions": wanted})
        now = int(time.time())
        ttl = self.ttl
        leeway = REGISTRY_LEEWAY if self.match_registry_leeway else 0
        claims = {
            "iss": self.issuer,
            "sub": account or "",
            "aud": self.service,  # distribution 2.8 unmarshals aud as one string
            "exp": now + ttl - leeway,
            "nbf": now,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = self._sign(claims)
        granted = tuple(f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in access)
        with self._lock:
            self._records.append(IssueRecord(account, scopes, granted, 200))
            self._issued_by_scope.update(scopes or ("",))
        issued_at = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 200, {
            "token": token,
            "access_token": token,
            "expires_in": ttl,
            "issued_at": issued_at,
        }

    def _refuse(
        self, scopes: tuple[str, ...], status: int, code: str, message: str
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self._records.append(IssueRecord(None, scopes, (), status))
        return _error(status, code, message)

    def _sign(self, claims: Mapping[str, Any]) -> str:
        header: dict[str, Any] = {"typ": "JWT", "alg": "ES256"}
        if self.header_mode == "x5c":
            der = self._cert.public_bytes(serialization.Encoding.DER)
            header["x5c"] = [base64.b64encode(der).decode()]  # standard base64, not url
        else:
            header["kid"] = self.key_id
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        der_signature = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        # JWS wants raw r||s (32 bytes each for P-256), not the DER that cryptography gives.
        r, s = decode_dss_signature(der_signature)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def handle(self, request: LocalRequest) -> LocalResponse:
        """``local_routes`` handler for the proxy: GET /token?service=..&scope=.."""
        if request.method not in ("GET", "HEAD"):
            # Docker's client falls back from the OAuth2 POST flow to GET on a 404.
            status, body = _error(404, "NOT_FOUND", "only GET is supported by this stand-in")
        else:
            status, body = self.issue(request.query, request.headers.get("Authorization"))
        headers = {"Content-Type": "application/json"}
        if status == 401:
            headers["WWW-Authenticate"] = f'Basic realm="{self.realm or self.service}"'
        return LocalResponse(status, json.dumps(body).encode(), headers)


def _values(query: Mapping[str, str | Sequence[str]], key: str) -> list[str]:
    value = query.get(key)
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
