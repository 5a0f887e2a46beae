"""Parallel reads (issue 13 item 8) against a REAL registry (Debian's docker-registry): the
sources' requests really are in flight together, the error named is the first failing source in
input order whatever order the answers came in, and a client shared by the pool's threads fetches
one bearer token per scope, not one per thread. A loopback proxy (tests/support/proxy.py, a test
stand-in for a slow network) holds or delays chosen requests; tokens come from the token-server
stand-in (tests/support/tokenserver.py), which the real registry verifies."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LabImages
from tests.support.proxy import ReverseProxy, Rule, delay, free_port, gate
from tests.support.registry_http import head_digest
from tests.support.tokenserver import TokenServer
from toolkit.lab.registry import start_registry
from toolkit.registry.auth import Credentials
from toolkit.registry.client import NotFoundError, RegistryClient
from toolkit.registry.engine import MergeOptions, merge_manifest
from toolkit.registry.merge import SourceSpec
from toolkit.registry.reference import parse_reference

pytestmark = pytest.mark.integration

USER, PASSWORD = "ci-bot", "lab-only-password"
MISSING = ["sha256:" + c * 64 for c in "01"]


def test_source_reads_are_in_flight_together(lab_images: LabImages, unique_tag: str) -> None:
    """The first source's manifest GET is held at the proxy; the other three are answered
    meanwhile. One after another, they would wait behind it (and the wait below would end in
    its timeout, not in a timed assertion)."""
    digests = [lab_images.amd64.digest, lab_images.arm64.digest, lab_images.arm_v7.digest]
    with ReverseProxy(lab_images.registry.address) as proxy:
        held = gate()
        proxy.set_rules([Rule("GET", rf"/manifests/{digests[0]}$", 1, held)])
        client = RegistryClient(proxy.address, insecure=True, use_env_credentials=False)
        target = parse_reference(f"{proxy.address}/src:{unique_tag}")
        specs = [SourceSpec.parse(f"@{d}", target=target) for d in digests]
        outcome: list[object] = []
        thread = threading.Thread(
            target=lambda: outcome.append(
                merge_manifest(client, [target], specs, MergeOptions(dry_run=True))
            ),
            daemon=True,
        )
        thread.start()
        assert held.arrived.wait(30)
        others = {f"/v2/src/manifests/{d}" for d in digests[1:3]}
        deadline = time.monotonic() + 30
        while not others <= {r.path for r in proxy.records} and time.monotonic() < deadline:
            time.sleep(0.01)
        answered_while_held = others <= {r.path for r in proxy.records}
        held.release.set()
        thread.join(30)
    assert answered_while_held
    assert outcome and not thread.is_alive()


def test_the_first_failing_source_in_input_order_is_named(
    lab_images: LabImages, unique_tag: str
) -> None:
    """Two missing sources; the first one's 404 is delayed so the second's arrives first."""
    with ReverseProxy(lab_images.registry.address) as proxy:
        proxy.set_rules([Rule("GET", rf"/manifests/{MISSING[0]}$", 1, delay(0.5))])
        client = RegistryClient(proxy.address, insecure=True, use_env_credentials=False)
        target = parse_reference(f"{proxy.address}/src:{unique_tag}")
        specs = [
            SourceSpec.parse(f"linux/amd64=@{MISSING[0]}", target=target),
            SourceSpec.parse(f"linux/arm64=@{MISSING[1]}", target=target),
        ]
        with pytest.raises(NotFoundError) as info:
            merge_manifest(client, [target], specs)
        order = [r.path.rsplit("/", 1)[-1] for r in proxy.records]
    assert order == [MISSING[1], MISSING[0]]  # the answers came in the other order
    assert str(info.value).startswith(
        f"source 'linux/amd64=@{MISSING[0]}' (expected linux/amd64): "
    )
    assert head_digest(lab_images.registry.url, "src", unique_tag) is None


@pytest.fixture
def token_registry(
    tmp_path: Path, lab_images: LabImages
) -> Iterator[tuple[ReverseProxy, TokenServer]]:
    tokens = TokenServer(tmp_path / "auth", users={USER: PASSWORD}, ttl=300)
    port = free_port()
    with ReverseProxy(f"127.0.0.1:{port}", local_routes={"/token": tokens.handle}) as proxy:
        registry = start_registry(
            tmp_path / "reg",
            port=port,
            extra_config={"auth": tokens.registry_auth_config(f"{proxy.url}/token")},
        )
        try:
            for image, tag in (
                (lab_images.amd64, "amd64"),
                (lab_images.arm64, "arm64"),
                (lab_images.arm_v7, "arm-v7"),
            ):
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
                        f"docker://{proxy.address}/team/app:{tag}",
                    ],
                    check=True,
                    capture_output=True,
                )
            yield proxy, tokens
        finally:
            registry.stop()


def test_threads_sharing_a_client_fetch_one_token_per_scope(
    token_registry: tuple[ReverseProxy, TokenServer],
) -> None:
    """Three sources read by three threads that all meet the registry's 401: one pull token for
    all of them, one push token for the writes."""
    proxy, tokens = token_registry
    tokens.reset_counts()
    proxy.clear_records()
    client = RegistryClient(
        proxy.address, insecure=True, credentials=Credentials(USER, PASSWORD, "test")
    )
    target = parse_reference(f"{proxy.address}/team/app:multi")
    specs = [SourceSpec.parse(f":{tag}", target=target) for tag in ("amd64", "arm64", "arm-v7")]
    result = merge_manifest(client, [target], specs, MergeOptions(workers=4))
    assert result.index_written == ["multi"]
    assert dict(tokens.issued_by_scope) == {
        "repository:team/app:pull": 1,
        "repository:team/app:pull,push": 1,
    }
    challenges = [r for r in proxy.records if r.status == 401]
    # Only the first round can meet a 401 (every thread before any token existed).
    assert 1 <= len(challenges) <= 3
    assert all("/manifests/" in r.path and r.method == "GET" for r in challenges)
