"""Registry auth against a REAL registry (Debian's docker-registry): htpasswd basic auth, and
the bearer-token flow. The token service is a STAND-IN (tests/support/tokenserver.py): it
issues JWTs the real registry verifies, served on the registry's own host:port through a
loopback proxy. Every captured output is scanned for the secrets used here."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import LabImages
from tests.support.cli import Run, archfleet
from tests.support.proxy import (
    LocalRequest,
    LocalResponse,
    ReverseProxy,
    Rule,
    delay,
    free_port,
)
from tests.support.tokenserver import TokenServer
from toolkit.lab.registry import LocalRegistry, start_registry, write_htpasswd
from toolkit.registry.auth import Credentials
from toolkit.registry.client import AuthError, RegistryClient, RegistryError, RetryPolicy

pytestmark = pytest.mark.integration

USER = "builder"
PASSWORD = "pw-Zq81-never-print-me"
SEEN: list[str] = []


def run(*args: str, env: dict[str, str] | None = None) -> Run:
    result = archfleet(*args, env=env)
    SEEN.extend([result.stdout, result.stderr])
    return result


def env_with(**values: str) -> dict[str, str]:
    # An empty DOCKER_CONFIG dir keeps the machine's own docker login out of the test.
    return {"REGISTRY_USER": "", "REGISTRY_PASSWORD": "", "CI_REGISTRY": "", **values}


def copy_in(lab_images: LabImages, address: str, repository: str) -> dict[str, str]:
    """Copy the real amd64/arm64 images into an auth-protected registry with skopeo."""
    digests = {}
    for arch, image in (("amd64", lab_images.amd64), ("arm64", lab_images.arm64)):
        subprocess.run(
            [
                "skopeo",
                "copy",
                "-q",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--dest-creds",
                f"{USER}:{PASSWORD}",
                f"docker://{lab_images.ref(image)}",
                f"docker://{address}/{repository}:{arch}",
            ],
            check=True,
            capture_output=True,
        )
        digests[arch] = image.digest
    return digests


@pytest.fixture(scope="module")
def basic_registry(
    tmp_path_factory: pytest.TempPathFactory, lab_images: LabImages
) -> Iterator[LocalRegistry]:
    workdir = tmp_path_factory.mktemp("basic")
    htpasswd = write_htpasswd(workdir / "htpasswd", {USER: PASSWORD})
    registry = start_registry(workdir, htpasswd=htpasswd)
    try:
        copy_in(lab_images, registry.address, "team/app")
        yield registry
    finally:
        registry.stop()


def merge_args(address: str, tag: str) -> list[str]:
    return [
        "merge-manifest",
        "--insecure",
        "--target",
        f"{address}/team/app:{tag}",
        "--source",
        "linux/amd64=:amd64",
        "--source",
        "linux/arm64=:arm64",
    ]


def test_basic_auth_from_registry_user(basic_registry: LocalRegistry, tmp_path: Path) -> None:
    result = run(
        *merge_args(basic_registry.address, "v1"),
        env=env_with(REGISTRY_USER=USER, REGISTRY_PASSWORD=PASSWORD, DOCKER_CONFIG=str(tmp_path)),
    )
    assert result.code == 0, result.stderr
    assert result.stdout.strip().startswith("sha256:")


def test_basic_auth_from_docker_config(basic_registry: LocalRegistry, tmp_path: Path) -> None:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {basic_registry.address: {"auth": auth}}})
    )
    result = run(
        *merge_args(basic_registry.address, "v2"), env=env_with(DOCKER_CONFIG=str(tmp_path))
    )
    assert result.code == 0, result.stderr


def test_basic_auth_from_gitlab_ci_variables(basic_registry: LocalRegistry, tmp_path: Path) -> None:
    result = run(
        *merge_args(basic_registry.address, "v3"),
        env=env_with(
            CI_REGISTRY=basic_registry.address,
            CI_REGISTRY_USER=USER,
            CI_REGISTRY_PASSWORD=PASSWORD,
            DOCKER_CONFIG=str(tmp_path),
        ),
    )
    assert result.code == 0, result.stderr
    # CI credentials are for CI_REGISTRY only: another registry name gets none.
    other = run(
        *merge_args(basic_registry.address, "v4"),
        env=env_with(
            CI_REGISTRY="registry.elsewhere.example",
            CI_REGISTRY_USER=USER,
            CI_REGISTRY_PASSWORD=PASSWORD,
            DOCKER_CONFIG=str(tmp_path),
        ),
    )
    assert other.code == 1 and "needs credentials" in other.stderr


def test_basic_auth_wrong_password_is_named_not_shown(
    basic_registry: LocalRegistry, tmp_path: Path
) -> None:
    result = run(
        *merge_args(basic_registry.address, "v5"),
        env=env_with(
            REGISTRY_USER=USER, REGISTRY_PASSWORD=PASSWORD + "x", DOCKER_CONFIG=str(tmp_path)
        ),
    )
    assert result.code == 1
    assert f"user '{USER}'" in result.stderr and "REGISTRY_USER" in result.stderr
    assert "rejected" in result.stderr and PASSWORD not in result.stderr


@dataclass
class TokenStack:
    tokens: TokenServer
    proxy: ReverseProxy
    registry: LocalRegistry


@pytest.fixture(scope="module")
def token_stack(
    tmp_path_factory: pytest.TempPathFactory, lab_images: LabImages
) -> Iterator[TokenStack]:
    workdir = tmp_path_factory.mktemp("token")
    tokens = TokenServer(workdir / "auth", users={USER: PASSWORD}, allow_anonymous=True, ttl=300)
    port = free_port()
    with ReverseProxy(f"127.0.0.1:{port}", local_routes={"/token": tokens.handle}) as proxy:
        registry = start_registry(
            workdir,
            port=port,
            extra_config={"auth": tokens.registry_auth_config(f"{proxy.url}/token")},
        )
        try:
            copy_in(lab_images, proxy.address, "team/app")
            yield TokenStack(tokens, proxy, registry)
        finally:
            registry.stop()


def test_bearer_token_flow(token_stack: TokenStack, tmp_path: Path) -> None:
    token_stack.tokens.reset_counts()
    result = run(
        *merge_args(token_stack.proxy.address, "t1"),
        "--json",
        env=env_with(REGISTRY_USER=USER, REGISTRY_PASSWORD=PASSWORD, DOCKER_CONFIG=str(tmp_path)),
    )
    assert result.code == 0, result.stderr
    assert token_stack.tokens.issued >= 1
    assert any("push" in scope for scope in token_stack.tokens.issued_by_scope)
    assert result.json()["indexWritten"] == ["t1"]


def test_token_expiring_during_the_run_is_renewed(token_stack: TokenStack) -> None:
    """An 8 s token is renewed at 6 s (a quarter of its life early); the proxy stretches this run
    past that, and the client renews before the registry would refuse: one 401 in all (the
    first challenge), two tokens."""
    token_stack.tokens.ttl = 8
    token_stack.tokens.reset_counts()
    token_stack.proxy.clear_records()
    token_stack.proxy.set_rules([Rule("GET", r"/blobs/", 1, delay(6.5))])
    try:
        client = RegistryClient(
            token_stack.proxy.address,
            insecure=True,
            credentials=Credentials(USER, PASSWORD, "test"),
        )
        for arch in ("amd64", "arm64"):
            manifest = client.get_manifest("team/app", arch)
            client.get_blob("team/app", json.loads(manifest.raw)["config"]["digest"])
    finally:
        token_stack.proxy.clear_rules()
        token_stack.tokens.ttl = 300
    assert token_stack.tokens.issued == 2
    assert [r.status for r in token_stack.proxy.records].count(401) == 1


def test_token_refused_by_registry_is_fetched_again(token_stack: TokenStack) -> None:
    """The client's clock says the token is fresh (frozen clock); the registry says it expired."""
    token_stack.tokens.ttl = 2
    token_stack.tokens.reset_counts()
    try:
        client = RegistryClient(
            token_stack.proxy.address,
            insecure=True,
            credentials=Credentials(USER, PASSWORD, "test"),
            clock=lambda: 0.0,
        )
        assert client.head_manifest("team/app", "amd64")
        time.sleep(3.2)
        assert client.head_manifest("team/app", "arm64")
    finally:
        token_stack.tokens.ttl = 300
    assert token_stack.tokens.issued == 2


def test_anonymous_pull_only_cannot_push(token_stack: TokenStack, tmp_path: Path) -> None:
    result = run(
        *merge_args(token_stack.proxy.address, "t2"), env=env_with(DOCKER_CONFIG=str(tmp_path))
    )
    assert result.code == 1
    assert "refused after authenticating as anonymous" in result.stderr
    assert "repository:team/app:pull,push" in result.stderr and "Traceback" not in result.stderr


def test_token_realm_on_another_plain_http_port_is_refused(
    tmp_path: Path, lab_images: LabImages
) -> None:
    tokens = TokenServer(tmp_path / "auth", users={USER: PASSWORD})
    with ReverseProxy(None, local_routes={"/token": tokens.handle}) as token_proxy:
        registry = start_registry(
            tmp_path, extra_config={"auth": tokens.registry_auth_config(f"{token_proxy.url}/token")}
        )
        try:
            client = RegistryClient(
                registry.address,
                insecure=True,
                credentials=Credentials(USER, PASSWORD, "test"),
                retry=RetryPolicy(attempts=1),
            )
            with pytest.raises(AuthError) as info:
                client.head_manifest("team/app", "amd64")
        finally:
            registry.stop()
    assert "refusing token realm" in str(info.value)
    assert PASSWORD not in str(info.value)
    # Credentials were never sent to it.
    assert token_proxy.records == [] and tokens.issued == 0


def test_mount_location_on_another_port_gets_no_credentials(tmp_path: Path) -> None:
    """A REAL registry (basic auth) configured with `http.host` naming another loopback port
    (distribution's config: "used when creating generated URLs"), so its mount 202 `Location`
    points there. A recorder on that port (a proxy local route, a test stand-in for whatever
    server a Location may name) sees the cancel DELETE without Authorization; the same
    DELETE to the registry's own address still carries it (and the registry accepts it)."""
    seen: list[tuple[str, str | None]] = []

    def record(request: LocalRequest) -> LocalResponse:
        seen.append((request.method, request.headers.get("Authorization")))
        return LocalResponse(204)

    htpasswd = write_htpasswd(tmp_path / "htpasswd", {USER: PASSWORD})
    missing = "sha256:" + hashlib.sha256(b"not in any repository").hexdigest()
    with ReverseProxy(None, local_routes={"/": record}) as elsewhere:
        registry = start_registry(
            tmp_path / "reg",
            htpasswd=htpasswd,
            extra_config={"http": {"host": elsewhere.url}},
        )
        try:
            client = RegistryClient(
                registry.address,
                insecure=True,
                credentials=Credentials(USER, PASSWORD, "test"),
                retry=RetryPolicy(attempts=1),
            )
            mark = registry.mark()
            with pytest.raises(RegistryError, match="could not mount"):
                client.mount_blob("team/app", missing, "team/empty")
            requests_made = registry.requests_since(mark)
        finally:
            registry.stop()
    assert [method for method, _ in seen] == ["DELETE"]
    assert seen[0][1] is None  # no credentials to a host the registry merely named
    assert [r.status for r in requests_made if r.method == "POST"][-1] == 202
    SEEN.append(str(seen))


def test_mount_location_on_the_registry_itself_keeps_credentials(
    basic_registry: LocalRegistry,
) -> None:
    """Same registry, no `http.host`: the Location is its own; the authenticated cancel
    DELETE is accepted (204), so no upload is left open."""
    client = RegistryClient(
        basic_registry.address,
        insecure=True,
        credentials=Credentials(USER, PASSWORD, "test"),
        retry=RetryPolicy(attempts=1),
    )
    missing = "sha256:" + hashlib.sha256(b"also not there").hexdigest()
    mark = basic_registry.mark()
    with pytest.raises(RegistryError, match="could not mount"):
        client.mount_blob("team/app", missing, "team/empty")
    deletes = [r for r in basic_registry.requests_since(mark) if r.method == "DELETE"]
    assert [r.status for r in deletes] == [204]


def test_no_secret_in_any_output() -> None:
    """Runs last in this module (pytest keeps file order): scans everything captured above."""
    assert SEEN, "the tests above captured nothing"
    for text in SEEN:
        assert PASSWORD not in text
        assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in text
        assert "eyJ" not in text  # no JWT (base64 of '{"') in output
