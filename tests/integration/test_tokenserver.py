"""The token-server stand-in against Debian's real ``docker-registry`` (distribution 2.8).

The registry runs with ``auth: token`` behind the fault-injecting proxy, which serves
``/token`` itself, so realm and registry share one host:port. skopeo (a real client)
pushes and pulls through it. The first tests check ``TokenServer.issue`` on its own.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography import x509

from tests.support.proxy import LocalRequest, ReverseProxy, Rule, drop_after_forward, free_port
from tests.support.tokenserver import TokenServer, libtrust_key_id, unverified_claims

USERS = {"alice": "s3cret-pw"}
needs_lab = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("docker-registry", "skopeo", "umoci")),
    reason="needs docker-registry, skopeo and umoci",
)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- issue() on its own --------------------------------------------------------------


def test_issue_grants_all_requested_actions_to_users(tmp_path: Path) -> None:
    tokens = TokenServer(tmp_path, users=USERS, ttl=120)
    query = {
        "service": [tokens.service],
        "scope": ["repository:team/app:pull,push", "repository:base:pull"],
    }
    code, body = tokens.issue(query, basic("alice", "s3cret-pw"))
    assert code == 200
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 120
    assert body["issued_at"].endswith("Z")
    claims = unverified_claims(body["token"])
    assert claims["sub"] == "alice"
    assert claims["aud"] == tokens.service
    assert claims["iss"] == tokens.issuer
    assert claims["nbf"] == claims["iat"]
    # exp is moved back by the registry's 60 s leeway so the token dies after ttl.
    assert claims["exp"] == claims["iat"] + 120 - 60
    assert claims["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
        {"type": "repository", "name": "base", "actions": ["pull"]},
    ]
    header = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[0] + "=="))
    assert header["alg"] == "ES256" and len(header["x5c"]) == 1

    tokens.issue({"scope": "repository:base:pull"}, basic("alice", "s3cret-pw"))
    assert tokens.issued == 2
    assert tokens.issued_by_scope == {
        "repository:team/app:pull,push": 1,
        "repository:base:pull": 2,
    }


def test_issue_anonymous_gets_pull_only_when_allowed(tmp_path: Path) -> None:
    closed = TokenServer(tmp_path / "closed", users=USERS)
    code, body = closed.issue({"scope": "repository:app:pull"}, None)
    assert code == 401
    assert body["errors"][0]["code"] == "UNAUTHORIZED"

    open_ = TokenServer(tmp_path / "open", users=USERS, allow_anonymous=True)
    code, body = open_.issue({"scope": "repository:app:pull,push registry:catalog:*"}, None)
    assert code == 200
    claims = unverified_claims(body["token"])
    assert claims["sub"] == ""
    assert claims["access"] == [{"type": "repository", "name": "app", "actions": ["pull"]}]
    assert open_.records[0].granted == ("repository:app:pull",)


def test_issue_refuses_bad_requests_and_never_keeps_passwords(tmp_path: Path) -> None:
    tokens = TokenServer(tmp_path, users=USERS, allow_anonymous=True)
    wrong = basic("alice", "not-the-password")
    assert tokens.issue({"scope": "repository:app:pull"}, wrong)[0] == 401
    assert tokens.issue({}, basic("mallory", "x"))[0] == 401
    assert tokens.issue({}, "Bearer abc")[0] == 401
    assert tokens.issue({}, "Basic !!!")[0] == 401
    assert tokens.issue({"service": "elsewhere"}, None)[0] == 400
    assert tokens.issue({"scope": "repository:pull"}, None)[0] == 400
    assert (tokens.issued, tokens.refused) == (0, 6)
    assert "not-the-password" not in repr(tokens.records) + repr(tokens)
    assert "s3cret-pw" not in repr(tokens)

    post = LocalRequest("POST", "/token", {}, {}, b"grant_type=password")
    assert tokens.handle(post).status == 404  # Docker then falls back to GET
    refused = tokens.handle(LocalRequest("GET", "/token", {}, {"Authorization": wrong}, b""))
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_key_material_is_reused_and_kid_is_libtrust_format(tmp_path: Path) -> None:
    first = TokenServer(tmp_path, header_mode="kid")
    second = TokenServer(tmp_path)
    assert first.key_id == second.key_id
    assert len(first.key_id.split(":")) == 12
    assert all(len(group) == 4 for group in first.key_id.split(":"))
    assert (tmp_path / "token-signing.key").stat().st_mode & 0o077 == 0
    config = first.registry_auth_config("http://127.0.0.1:1/token")["token"]
    assert config["rootcertbundle"] == str(first.cert_path)
    assert first.issue({}, None)[0] == 401  # anonymous is not allowed by default
    cert = x509.load_pem_x509_certificate(first.cert_path.read_bytes())
    assert libtrust_key_id(cert.public_key()) == first.key_id  # type: ignore[arg-type]


# --- against the real registry -------------------------------------------------------


@dataclass
class Stack:
    tokens: TokenServer
    proxy: ReverseProxy
    registry_port: int
    log: Path

    def ref(self, name: str) -> str:
        return f"docker://{self.proxy.address}/{name}"

    def token(self, scope: str, auth: tuple[str, str] | None = ("alice", "s3cret-pw")) -> str:
        params = {"service": self.tokens.service, "scope": scope}
        resp = requests.get(f"{self.proxy.url}/token", params=params, auth=auth, timeout=10)
        resp.raise_for_status()
        token: str = resp.json()["token"]
        return token


@contextmanager
def registry_stack(directory: Path, **token_options: Any) -> Iterator[Stack]:
    tokens = TokenServer(directory / "auth", users=USERS, **token_options)
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {
            "filesystem": {"rootdirectory": str(directory / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "test-only-secret"},
    }
    log = directory / "registry.log"
    with ReverseProxy(f"127.0.0.1:{port}", local_routes={"/token": tokens.handle}) as proxy:
        config["auth"] = tokens.registry_auth_config(f"{proxy.url}/token")
        (directory / "registry.yml").write_text(yaml.safe_dump(config))
        with log.open("wb") as log_file:
            registry = subprocess.Popen(
                ["docker-registry", "serve", str(directory / "registry.yml")],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_ready(registry, port, log)
            yield Stack(tokens, proxy, port, log)
        finally:
            registry.terminate()
            try:
                registry.wait(timeout=10)
            except subprocess.TimeoutExpired:
                registry.kill()
                registry.wait()


def _wait_ready(registry: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if registry.poll() is not None:
            pytest.fail(f"docker-registry exited early:\n{log.read_text()}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 401:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    pytest.fail(f"docker-registry did not answer on {port}:\n{log.read_text()}")


@pytest.fixture
def oci_layout(tmp_path: Path) -> str:
    """A one-layer OCI image made with umoci; returns the skopeo ``oci:`` reference."""
    layout = tmp_path / "oci"
    (tmp_path / "hello.txt").write_text("hello from archfleet\n")
    for args in (
        ["init", "--layout", str(layout)],
        ["new", "--image", f"{layout}:app"],
        ["insert", "--image", f"{layout}:app", str(tmp_path / "hello.txt"), "/hello.txt"],
    ):
        subprocess.run(["umoci", *args], check=True, capture_output=True, timeout=60)
    return f"oci:{layout}:app"


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120
    )


def push(stack: Stack, source: str, name: str, *creds: str) -> subprocess.CompletedProcess[str]:
    digest_file = stack.log.parent / "pushed.digest"
    return skopeo(
        "copy", "--dest-tls-verify=false", *creds, "--digestfile", str(digest_file),
        source, stack.ref(name),
    )  # fmt: skip


def inspect(stack: Stack, name: str, *creds: str) -> subprocess.CompletedProcess[str]:
    return skopeo("inspect", "--tls-verify=false", *creds, stack.ref(name))


@needs_lab
@pytest.mark.integration
@pytest.mark.parametrize("header_mode", ["x5c", "kid"])
def test_skopeo_push_and_pull_with_tokens(
    tmp_path: Path, oci_layout: str, header_mode: str
) -> None:
    with registry_stack(tmp_path, header_mode=header_mode) as stack:
        pushed = push(stack, oci_layout, "team/app:v1", "--dest-creds", "alice:s3cret-pw")
        assert pushed.returncode == 0, pushed.stderr
        digest = (tmp_path / "pushed.digest").read_text().strip()

        pulled = inspect(stack, "team/app:v1", "--creds", "alice:s3cret-pw")
        assert pulled.returncode == 0, pulled.stderr
        assert json.loads(pulled.stdout)["Digest"] == digest

        scopes = stack.tokens.issued_by_scope
        assert any(s.startswith("repository:team/app:") and "push" in s for s in scopes)
        assert any(s == "repository:team/app:pull" for s in scopes)
        assert all(r.account == "alice" for r in stack.tokens.records)
        records = stack.proxy.records
        assert any(r.local and r.path == "/token" and r.status == 200 for r in records)
        assert any(r.method == "PUT" and "/manifests/" in r.path and r.status == 201
                   for r in records)  # fmt: skip
        log = stack.log.read_text()
        assert "auth.user.name=alice" in log
        assert "s3cret-pw" not in log


@needs_lab
@pytest.mark.integration
def test_bad_or_missing_credentials_are_refused(tmp_path: Path, oci_layout: str) -> None:
    with registry_stack(tmp_path) as stack:
        assert push(stack, oci_layout, "app:v1", "--dest-creds", "alice:s3cret-pw").returncode == 0
        stack.tokens.reset_counts()

        wrong = inspect(stack, "app:v1", "--creds", "alice:wrong-pw")
        assert wrong.returncode != 0
        assert "401" in wrong.stderr or "unauthorized" in wrong.stderr.lower()
        anonymous = inspect(stack, "app:v1", "--no-creds")
        assert anonymous.returncode != 0
        denied_push = push(stack, oci_layout, "app:v2", "--dest-creds", "alice:wrong-pw")
        assert denied_push.returncode != 0

        assert stack.tokens.issued == 0
        assert stack.tokens.refused >= 3
        assert "wrong-pw" not in repr(stack.tokens.records)
        # Nothing but /v2/ challenges and refused token requests reached the registry.
        assert not any("/manifests/" in r.path and r.status == 200 for r in stack.proxy.records)


@needs_lab
@pytest.mark.integration
def test_anonymous_may_pull_but_not_push(tmp_path: Path, oci_layout: str) -> None:
    with registry_stack(tmp_path, allow_anonymous=True) as stack:
        assert push(stack, oci_layout, "pub:v1", "--dest-creds", "alice:s3cret-pw").returncode == 0
        pulled = inspect(stack, "pub:v1", "--no-creds")
        assert pulled.returncode == 0, pulled.stderr
        refused = push(stack, oci_layout, "pub:v2", "--dest-no-creds")
        assert refused.returncode != 0
        anonymous = [r for r in stack.tokens.records if r.account is None]
        assert anonymous and all(g.endswith(":pull") for r in anonymous for g in r.granted)


@needs_lab
@pytest.mark.integration
def test_tokens_expire_after_ttl_and_foreign_signers_are_refused(
    tmp_path: Path, oci_layout: str
) -> None:
    with registry_stack(tmp_path) as stack:
        assert push(stack, oci_layout, "app:v1", "--dest-creds", "alice:s3cret-pw").returncode == 0
        manifest_url = f"{stack.proxy.url}/v2/app/manifests/v1"
        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}

        def get_with(token: str) -> int:
            headers = {"Authorization": f"Bearer {token}", **accept}
            return requests.get(manifest_url, headers=headers, timeout=10).status_code

        stack.tokens.ttl = 2
        short_lived = stack.token("repository:app:pull")
        assert get_with(short_lived) == 200
        time.sleep(3.2)
        assert get_with(short_lived) == 401
        stack.tokens.ttl = 300
        assert get_with(stack.token("repository:app:pull")) == 200

        # A token for another repository does not open this one.
        assert get_with(stack.token("repository:other:pull")) == 401

        # Same issuer and service, different key: the signature is what counts.
        impostor = TokenServer(
            tmp_path / "impostor", users=USERS, issuer=stack.tokens.issuer,
            service=stack.tokens.service,
        )  # fmt: skip
        code, body = impostor.issue({"scope": "repository:app:pull"}, basic("alice", "s3cret-pw"))
        assert code == 200
        assert get_with(body["token"]) == 401


@needs_lab
@pytest.mark.integration
def test_manifest_put_dropped_after_forward_still_lands(tmp_path: Path, oci_layout: str) -> None:
    with registry_stack(tmp_path) as stack:
        stack.proxy.add_rule(Rule("PUT", r"/manifests/", 1, drop_after_forward()))
        result = push(stack, oci_layout, "app:v1", "--dest-creds", "alice:s3cret-pw")
        (put,) = [r for r in stack.proxy.records if r.fault == "drop_after_forward"]
        assert (put.status, put.upstream_status) == (None, 201)
        # Whatever skopeo made of the lost answer, the registry has the manifest.
        pulled = inspect(stack, "app:v1", "--creds", "alice:s3cret-pw")
        assert pulled.returncode == 0, (result.stderr, pulled.stderr)
