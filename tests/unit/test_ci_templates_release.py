"""Release correctness of the merge job's script: floating semver tags (`1.4`, `1`) move only
forward, judged by the version the index they hold was released as (the
org.opencontainers.image.version annotation each release writes).

`archfleet` here is a SHIM on PATH that answers `inspect-manifest --raw` the way the real
command does (toolkit/registry/inspection.py: the manifest's exact bytes on stdout; a missing
tag is `error: REF: manifest not found`, exit 1) from a table of tags, and records the
`merge-manifest` arguments instead of writing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_ci_templates import sh

IMAGE = "registry.example.com/team/app"
SHIM = """#!/bin/sh
if [ "$1" = inspect-manifest ]; then
  ref=$4
  file="$TAGS/${ref##*:}"
  if [ -f "$file" ]; then cat "$file"; exit 0; fi
  echo "error: $ref: manifest not found" >&2
  exit 1
fi
if [ "$1" = merge-manifest ]; then
  printf '%s\\n' "$@" > "$RECORD"
  echo sha256:1111111111111111111111111111111111111111111111111111111111111111
  exit 0
fi
echo "archfleet 0.1.0"
"""


def index(version: str | None) -> str:
    body: dict[str, object] = {"schemaVersion": 2, "manifests": []}
    if version:
        body["annotations"] = {"org.opencontainers.image.version": version}
    return json.dumps(body)


@pytest.fixture
def registry(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    bin_dir, tags = tmp_path / "bin", tmp_path / "tags"
    bin_dir.mkdir()
    tags.mkdir()
    (bin_dir / "archfleet").write_text(SHIM)
    (bin_dir / "archfleet").chmod(0o755)
    env = {
        "TAGS": str(tags),
        "RECORD": str(tmp_path / "merge-args"),
        "TMPDIR": str(tmp_path),
        "CI_JOB_ID": "77",
        "ARCHFLEET_IMAGE": IMAGE,
        "ARCHFLEET_PLATFORMS": "linux/amd64",
        "ARCHFLEET_DIGEST_AMD64": "sha256:" + "a" * 64,
        "ARCHFLEET_MERGE_MODE": "release",
        "ARCHFLEET_IMAGE_TAGS": "",
        "ARCHFLEET_OPTIONS": "tag_semver=true tag_latest=false",
        "CI_COMMIT_REF_PROTECTED": "true",
        "ARCHFLEET_DOTENV": str(tmp_path / "release.env"),
        "PATH_PREFIX": str(bin_dir),
    }
    return tags, env


def merge(env: dict[str, str], tag: str) -> tuple[list[str], str]:
    done = sh(
        ["sh"],
        "archfleet_merge",
        {**env, "CI_COMMIT_TAG": tag},
        path_prefix=Path(env["PATH_PREFIX"]),
    )
    assert done.returncode == 0, done.stderr
    args = Path(env["RECORD"]).read_text().splitlines()
    targets = [args[i + 1].rsplit(":", 1)[1] for i, a in enumerate(args) if a == "--target"]
    return targets, done.stderr


def test_first_release_writes_every_float_and_its_version(
    registry: tuple[Path, dict[str, str]],
) -> None:
    _, env = registry
    targets, _ = merge(env, "v1.4.2")
    assert targets == ["1.4.2", "1.4", "1"]
    args = Path(env["RECORD"]).read_text().splitlines()
    assert args[args.index("--annotation") + 1] == "org.opencontainers.image.version=1.4.2"


def test_a_backport_leaves_newer_floats_alone(registry: tuple[Path, dict[str, str]]) -> None:
    tags, env = registry
    (tags / "1").write_text(index("1.4.2"))
    (tags / "1.3").write_text(index("1.3.8"))
    targets, log = merge(env, "v1.3.9")
    # 1.3 moves forward (1.3.8 -> 1.3.9); 1 stays on 1.4.2.
    assert targets == ["1.3.9", "1.3"]
    assert f"{IMAGE}:1 holds 1.4.2, newer than 1.3.9: left as it is" in log


def test_floats_move_forward_and_unannotated_ones_are_taken(
    registry: tuple[Path, dict[str, str]],
) -> None:
    tags, env = registry
    (tags / "2").write_text(index("2.0.1"))
    (tags / "2.1").write_text(index(None))  # written before versions were recorded
    targets, _ = merge(env, "v2.1.0")
    assert targets == ["2.1.0", "2.1", "2"]
    # Equal is not newer: re-running the same release moves its floats again (no-op).
    (tags / "2").write_text(index("2.1.0"))
    assert merge(env, "v2.1.0")[0] == ["2.1.0", "2.1", "2"]
    # 10 > 9 by number, not by text.
    (tags / "2").write_text(index("2.10.0"))
    assert merge(env, "v2.9.0")[0] == ["2.9.0", "2.9"]
