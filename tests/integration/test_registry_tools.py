"""check-bases and inspect-manifest against a REAL registry (Debian's docker-registry on
loopback) holding REAL images built by buildah: an amd64-only base, a multi-arch base (an
index written with archfleet's own client) and a buildx-style index with attestation manifests.
Every command runs as its own process, as a CI job runs it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import Run, archfleet
from tests.support.registry_http import get_manifest, push_buildx_style_index
from toolkit.lab.images import BuiltImage, build_image
from toolkit.lab.registry import LocalRegistry
from toolkit.registry.client import RegistryClient
from toolkit.registry.manifest import OCI_INDEX, canonical_json

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Bases:
    registry: LocalRegistry
    amd64: BuiltImage  # bases/amd64only:1, a single image (no index)
    arm64: BuiltImage
    multi_digest: str  # bases/multi:1, an index of amd64 + arm64
    attested_digest: str  # bases/attested:1, buildx-style, with attestation manifests
    attestations: list[str]


@pytest.fixture(scope="module")
def bases(lab_registry: LocalRegistry) -> Bases:
    reg = lab_registry.address
    amd64 = build_image("linux/amd64", f"{reg}/bases/amd64only:1")
    arm64 = build_image("linux/arm64", f"{reg}/bases/arm64only:1")
    client = RegistryClient(reg, insecure=True)
    # The multi-arch base lives in its own repository: its children go there first.
    entries = []
    for image, repo in ((amd64, "bases/amd64only"), (arm64, "bases/arm64only")):
        fetched = client.get_manifest(repo, image.digest)
        parsed = json.loads(fetched.raw)
        for blob in [parsed["config"], *parsed["layers"]]:
            client.mount_blob("bases/multi", blob["digest"], repo)
        client.put_manifest("bases/multi", image.digest, fetched.raw, fetched.media_type)
        entries.append(
            {
                "mediaType": fetched.media_type,
                "digest": image.digest,
                "size": len(fetched.raw),
                "platform": {"architecture": image.platform.split("/")[1], "os": "linux"},
            }
        )
    index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    multi_digest = client.put_manifest("bases/multi", "1", index, OCI_INDEX)
    # A buildx-style index in the same repository (its children are there already).
    attested_digest, attestations = push_buildx_style_index(
        lab_registry.url,
        "bases/multi",
        "attested",
        [(amd64.digest, "linux/amd64"), (arm64.digest, "linux/arm64")],
    )
    return Bases(lab_registry, amd64, arm64, multi_digest, attested_digest, attestations)


DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG REG
ARG BASE=multi:1
FROM --platform=$BUILDPLATFORM ${REG}/bases/amd64only:1 AS build
RUN echo build on the build machine
FROM scratch AS empty
FROM ${REG}/bases/${BASE} AS final
COPY --from=build /bin/busybox /usr/local/bin/tool
"""


def check(tmp_path: Path, reg: str, *extra: str, text: str = DOCKERFILE) -> Run:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(text)
    return archfleet(
        "check-bases",
        "--insecure",
        "--file",
        str(dockerfile),
        "--platforms",
        "linux/amd64,linux/arm64",
        "--build-arg",
        f"REG={reg}",
        *extra,
    )


def test_buildplatform_stage_and_multi_arch_base_pass_in_three_requests(
    bases: Bases, tmp_path: Path
) -> None:
    reg = bases.registry
    mark = reg.mark()
    run = check(tmp_path, reg.address, "--build-platform", "linux/amd64", "--json")
    assert run.code == 0, run.stderr
    result = run.json()
    found = {
        (b["image"], p["platform"]): (p["status"], p["why"])
        for b in result["bases"]
        for p in b["platforms"]
    }
    assert found == {
        (f"{reg.address}/bases/amd64only:1", "linux/amd64"): ("ok", "build"),
        (f"{reg.address}/bases/multi:1", "linux/amd64"): ("ok", "target"),
        (f"{reg.address}/bases/multi:1", "linux/arm64"): ("ok", "target"),
    }
    multi = next(b for b in result["bases"] if b["image"].endswith("multi:1"))
    assert multi["digest"] == bases.multi_digest and multi["offers"] == [
        "linux/amd64",
        "linux/arm64",
    ]
    # One manifest GET per base, plus the single image's config: nothing else.
    calls = [(r.method, r.path.split("/v2/")[1]) for r in reg.requests_since(mark)]
    assert sorted(calls) == sorted(
        [
            ("GET", "bases/amd64only/manifests/1"),
            ("GET", f"bases/amd64only/blobs/{_config_digest(reg, bases.amd64)}"),
            ("GET", "bases/multi/manifests/1"),
        ]
    ), calls
    assert result["registryRequests"] == 3
    assert result["local"] == [] and result["skippedStages"] == ["empty"]


def test_amd64_only_base_fails_naming_base_and_platform(bases: Bases, tmp_path: Path) -> None:
    run = check(tmp_path, bases.registry.address, "--build-arg", "BASE=amd64only:1")
    assert run.code == 1
    base = f"{bases.registry.address}/bases/amd64only:1"
    assert f"error: base {base} (final (line 7)) does not offer linux/arm64" in run.stderr
    assert "(offers: linux/amd64)" in run.stderr
    # The table shows every base x platform, with the failing one marked.
    assert any("linux/arm64" in line and "MISSING" in line for line in run.stderr.splitlines())
    assert run.stdout == ""


def test_native_builds_need_the_buildplatform_base_on_every_arch(
    bases: Bases, tmp_path: Path
) -> None:
    run = check(tmp_path, bases.registry.address, "--build-platform", "native", "--json")
    assert run.code == 1
    result = run.json()
    assert result["ok"] is False
    assert result["problems"] == [
        f"base {bases.registry.address}/bases/amd64only:1 (build (line 4)) does not offer "
        "linux/arm64 (offers: linux/amd64)"
    ]


def test_stages_scratch_and_unreached_stages_cost_nothing(bases: Bases, tmp_path: Path) -> None:
    text = (
        "ARG REG\n"
        "FROM ${REG}/bases/does-not-exist:1 AS unused\n"
        "FROM ${REG}/bases/arm64only:1 AS base\n"
        "FROM base AS app\n"
        "FROM scratch\n"
        "COPY --from=app /bin/busybox /busybox\n"
    )
    reg = bases.registry
    mark = reg.mark()
    run = check(tmp_path, reg.address, "--json", text=text)
    assert run.code == 1, run.stderr
    result = run.json()
    assert [b["image"] for b in result["bases"]] == [f"{reg.address}/bases/arm64only:1"]
    assert [(p["platform"], p["status"]) for p in result["bases"][0]["platforms"]] == [
        ("linux/amd64", "missing"),
        ("linux/arm64", "ok"),
    ]
    assert result["local"] == [
        {"stage": "app", "kind": "stage", "base": "base"},
        {"stage": "stage-3", "kind": "scratch", "base": "scratch"},
    ]
    assert result["skippedStages"] == ["unused"]
    assert not any("does-not-exist" in r.path for r in reg.requests_since(mark))


def test_missing_base_and_broken_dockerfile_are_named(bases: Bases, tmp_path: Path) -> None:
    reg = bases.registry
    run = check(tmp_path, reg.address, "--build-arg", "BASE=nope:1")
    assert run.code == 1
    assert f"error: base {reg.address}/bases/nope:1: " in run.stderr
    assert "not found" in run.stderr
    mark = reg.mark()
    broken = check(tmp_path, reg.address, text="ARG REG\nFROM ${REG}/x AS\n")
    assert broken.code == 1
    assert f"error: {tmp_path / 'Dockerfile'}:2: FROM requires either one or three" in (
        broken.stderr
    )
    unset = check(tmp_path, reg.address, text="ARG REG\nARG TAG\nFROM ${REG}/bases/multi:$TAG\n")
    assert unset.code == 1
    assert "Dockerfile:3:" in unset.stderr and "ARG TAG (line 2) has no default" in unset.stderr
    # --build-arg REG reaches a FROM only through an ARG REG before the first FROM.
    undeclared = check(tmp_path, reg.address, text="FROM ${REG}/bases/multi:1\n")
    assert undeclared.code == 1
    assert "--build-arg REG was given, but no ARG REG" in undeclared.stderr
    assert reg.requests_since(mark) == []


def test_lean_entry_runs_check_bases(bases: Bases, tmp_path: Path) -> None:
    (tmp_path / "Containerfile").write_text("ARG REG\nFROM $REG/bases/multi:1\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolkit.registry",
            "check-bases",
            "--insecure",
            "--platforms",
            "linux/arm64",
            "--build-arg",
            f"REG={bases.registry.address}",
        ],
        cwd=tmp_path,  # no --file: ./Dockerfile, else ./Containerfile
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ok: 1 base(s) offer every platform needed" in done.stderr


def test_inspect_index_with_attestations(bases: Bases) -> None:
    reg = bases.registry
    ref = f"{reg.address}/bases/multi:attested"
    shown = archfleet("inspect-manifest", ref, "--insecure")
    assert shown.code == 0, shown.stderr
    assert shown.stdout.strip() == bases.attested_digest
    lines = shown.stderr.splitlines()
    assert f"Name:      {ref}" in lines and f"Digest:    {bases.attested_digest}" in lines
    attestation_rows = [line for line in lines if line.strip().startswith("attestation")]
    assert len(attestation_rows) == 2
    assert f"(for {bases.amd64.digest})" in attestation_rows[0]

    as_json = archfleet("inspect-manifest", ref, "--insecure", "--json")
    data = as_json.json()
    assert data["mediaType"] == OCI_INDEX and data["digest"] == bases.attested_digest
    assert [(m["platform"], m["attestation"]) for m in data["manifests"]] == [
        ("linux/amd64", False),
        ("linux/arm64", False),
        ("unknown/unknown", True),
        ("unknown/unknown", True),
    ]
    assert [m["digest"] for m in data["manifests"][2:]] == bases.attestations
    assert data["manifests"][3]["subject"] == bases.arm64.digest

    # The articles' one-line CI check: the platforms, one a line (attestations left out).
    platforms = archfleet("inspect-manifest", ref, "--insecure", "--format", "{{platform}}")
    assert platforms.code == 0, platforms.stderr
    assert platforms.stdout == "linux/amd64\nlinux/arm64\n"

    raw = subprocess.run(
        [sys.executable, "-m", "toolkit", "inspect-manifest", ref, "--insecure", "--raw"],
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout
    assert raw == get_manifest(reg.url, "bases/multi", "attested")[0]
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == bases.attested_digest


def test_inspect_single_image_and_refusals(bases: Bases) -> None:
    reg = bases.registry
    ref = f"{reg.address}/bases/amd64only:1"
    run = archfleet(
        "inspect-manifest", ref, "--insecure", "--format", "{{platform}} {{digest}} {{size}}"
    )
    assert run.code == 0, run.stderr
    raw = get_manifest(reg.url, "bases/amd64only", "1")[0]
    assert run.stdout == f"linux/amd64 {bases.amd64.digest} {len(raw)}\n"
    data = archfleet("inspect-manifest", ref, "--insecure", "--json").json()
    assert data["platform"] == "linux/amd64" and data["layers"] >= 1 and "manifests" not in data

    unknown = archfleet("inspect-manifest", ref, "--insecure", "--format", "{{arch}}")
    assert unknown.code == 1 and "unknown field(s) arch" in unknown.stderr
    both = archfleet("inspect-manifest", ref, "--insecure", "--json", "--raw")
    assert both.code == 1 and "--json and --raw exclude each other" in both.stderr
    missing = archfleet("inspect-manifest", f"{reg.address}/bases/amd64only:nope", "--insecure")
    assert missing.code == 1 and "manifest not found" in missing.stderr


def _config_digest(reg: LocalRegistry, image: BuiltImage) -> str:
    raw, _ = get_manifest(reg.url, image.ref.split("/", 1)[1].split(":")[0], image.digest)
    digest: str = json.loads(raw)["config"]["digest"]
    return digest


@pytest.mark.parametrize("command", ["check-bases", "inspect-manifest"])
def test_lean_entry_has_the_tasks_flags(command: str) -> None:
    from tests.integration.test_cli import _long_flags, output

    via_invoke = output(sys.executable, "-m", "toolkit", command, "--help")
    lean = output(sys.executable, "-m", "toolkit.registry", command, "--help")
    # Invoke also offers a positional argument as a flag (--ref); argparse keeps it positional.
    expected = _long_flags(via_invoke.split("Options:", 1)[1]) - {"--ref"}
    assert {"--insecure", "--json"} <= expected
    assert _long_flags(lean) - {"--help"} == expected
