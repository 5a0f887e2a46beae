"""Docker Hub targets, with Hub's own names and no network: `docker.io/...` references go to
the API host `registry-1.docker.io` (`library/` for one-part names), the token comes from
Hub's realm `https://auth.docker.io/token` with `service=registry.docker.io`, and the
credentials come from ~/.docker/config.json under Hub's key `https://index.docker.io/v1/`.

Behind those names: a REAL registry (Debian's docker-registry, serving TLS, with token auth
configured as Hub's challenge reads) and the token STAND-IN (tests/support/tokenserver.py)
served over HTTPS; tests/support/hub.py maps the names to their loopback ports inside this
process and refuses every other outside name."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import LabImages
from tests.support.hub import (
    HUB_API_HOST,
    HUB_AUTH_HOST,
    HUB_REALM,
    HUB_SERVICE,
    HttpsTokenServer,
    hub_certificate,
    resolve_to,
)
from tests.support.proxy import LocalRequest, LocalResponse
from tests.support.registry_http import head_digest
from tests.support.tokenserver import TokenServer
from toolkit.lab.registry import LocalRegistry, start_registry
from toolkit.registry.client import RegistryClient
from toolkit.registry.engine import MergeOptions, merge_manifest
from toolkit.registry.merge import SourceSpec
from toolkit.registry.reference import parse_reference

pytestmark = pytest.mark.integration

USER = "hubuser"
PASSWORD = "hub-pw-Lq27-never-print-me"


@dataclass
class FakeHub:
    seed: LocalRegistry  # plain HTTP, no auth, same storage: to put images in and read back
    hub: LocalRegistry  # TLS + Hub-style token auth
    tokens: TokenServer
    token_port: int
    cert: Path
    services: list[str]


@pytest.fixture(scope="module")
def fake_hub(tmp_path_factory: pytest.TempPathFactory, lab_images: LabImages) -> Iterator[FakeHub]:
    workdir = tmp_path_factory.mktemp("hub")
    storage = {"storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}}}
    cert, key = hub_certificate(workdir)
    tokens = TokenServer(workdir / "auth", users={USER: PASSWORD}, service=HUB_SERVICE)
    services: list[str] = []

    def handle(request: LocalRequest) -> LocalResponse:
        services.extend(request.query.get("service", []))
        return tokens.handle(request)

    seed = start_registry(workdir / "seed", extra_config=storage)
    hub = start_registry(
        workdir / "api",
        extra_config={
            **storage,
            "http": {"tls": {"certificate": str(cert), "key": str(key)}},
            "auth": tokens.registry_auth_config(HUB_REALM),
        },
    )
    try:
        for repository in ("library/app", "team/app"):
            for arch, image in (("amd64", lab_images.amd64), ("arm64", lab_images.arm64)):
                subprocess.run(
                    [
                        "skopeo",
                        "copy",
                        "-q",
                        "--src-tls-verify=false",
                        "--dest-tls-verify=false",
                        f"docker://{lab_images.ref(image)}",
                        f"docker://{seed.address}/{repository}:{arch}",
                    ],
                    check=True,
                    capture_output=True,
                )
        with HttpsTokenServer(handle, cert, key) as token_server:
            yield FakeHub(seed, hub, tokens, token_server.port, cert, services)
    finally:
        hub.stop()
        seed.stop()


@pytest.fixture
def hub_env(fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials only in config.json, under Hub's key, as `docker login` writes them."""
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": auth}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake_hub.cert))
    for name in ("REGISTRY_USER", "REGISTRY_PASSWORD", "CI_REGISTRY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("target", "sources", "repository"),
    [
        ("docker.io/app:multi", ("docker.io/app:amd64", "app:arm64"), "library/app"),
        (
            "team/app:multi",
            ("index.docker.io/team/app:amd64", "docker.io/team/app:arm64"),
            "team/app",
        ),
    ],
)
def test_merge_to_docker_hub(
    fake_hub: FakeHub,
    hub_env: None,
    target: str,
    sources: tuple[str, str],
    repository: str,
) -> None:
    fake_hub.tokens.reset_counts()
    fake_hub.services.clear()
    mapping = {
        (HUB_API_HOST, 443): ("127.0.0.1", fake_hub.hub.port),
        (HUB_AUTH_HOST, 443): ("127.0.0.1", fake_hub.token_port),
    }
    reference = parse_reference(target)
    specs = [
        SourceSpec.parse(f"linux/{arch}={text}", target=reference)
        for arch, text in zip(("amd64", "arm64"), sources, strict=True)
    ]
    mark = fake_hub.hub.mark()
    with resolve_to(mapping) as dialled:
        client = RegistryClient(reference.registry)
        result = merge_manifest(client, [reference], specs, MergeOptions(child_tags=False))
    # Only Hub's API and auth hosts were dialled, on 443; never "docker.io" itself.
    assert {host for host, _ in dialled} == {HUB_API_HOST, HUB_AUTH_HOST}
    assert {port for _, port in dialled} == {443}
    # Hub's token flow: its service name, the config.json account, the library/ repository.
    assert fake_hub.services and set(fake_hub.services) == {HUB_SERVICE}
    records = fake_hub.tokens.records
    assert records and {r.account for r in records} == {USER}
    assert any(f"repository:{repository}:pull,push" in r.scopes for r in records)
    seen = fake_hub.hub.requests_since(mark)
    paths = [r.path for r in seen if r.path.startswith("/v2/") and r.path != "/v2/"]
    assert f"/v2/{repository}/manifests/multi" in paths
    assert all(p.startswith(f"/v2/{repository}/") for p in paths)
    assert head_digest(fake_hub.seed.url, repository, "multi") == result.plan.digest
    # The README's 2N + 3 (N manifests, N configs, the target's GET, the PUT, its read-back), plus
    # the 401 challenges.
    challenges = [r.status for r in seen].count(401)
    assert result.registry_requests == 2 * 2 + 3 + challenges
