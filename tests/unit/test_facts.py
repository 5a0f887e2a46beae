"""Facts: the one-round-trip script (run here with the real sh) and its parser."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from toolkit.fleet.facts import FACTS_SCRIPT, FactsError, facts_script, parse_facts

CONFIG = """concurrent = 1
[[runners]]
  name = "build-arm64-1"
  url = "https://gitlab.example.com"
  id = 42
  token = "glrt-SECRET-abc"
  executor = "shell"
[[runners]]
  name = "other"
  id = 7
  token = "glrt-other"
"""


def test_script_runs_with_sh_and_never_prints_a_token(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    script = FACTS_SCRIPT.replace("/etc/gitlab-runner/config.toml", str(config))
    output = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert "glrt-" not in output
    facts = parse_facts(output, host="local")
    assert (
        facts.machine
        == subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
    )
    runner = facts.runner_named("build-arm64-1")
    assert runner is not None and runner.id == "42"
    assert runner.token_hash == hashlib.sha256(b"glrt-SECRET-abc").hexdigest()[:16]
    assert facts.runner_config_mode == "644"
    assert facts.disk_free_kb > 0 and facts.user


SAMPLE = """machine=aarch64
os_id=ubuntu
os_version=24.04
binfmt=qemu-x86_64
docker=27.3.1
buildx=v0.17.1
umoci=0.4.7
skopeo=1.9.3
gitlab_runner=17.5.0
java=17.0.12
disk_free_kb=1234
user=ci
groups=ci,docker
facts=done
"""


def test_parse_sample() -> None:
    facts = parse_facts(SAMPLE, host="h")
    assert (facts.arch, str(facts.platform)) == ("arm64", "linux/arm64")
    assert facts.can_emulate and facts.emulators == ("qemu-x86_64",)
    assert (facts.docker, facts.buildx, facts.buildah) == ("27.3.1", "v0.17.1", None)
    assert (facts.umoci, facts.skopeo) == ("0.4.7", "1.9.3")
    assert facts.gitlab_runner == "17.5.0" and facts.java == "17.0.12"
    assert facts.groups == ("ci", "docker") and facts.runners == ()


def test_incomplete_or_unknown_is_an_error() -> None:
    with pytest.raises(FactsError, match="did not complete"):
        parse_facts("machine=x86_64\n", host="h")
    with pytest.raises(FactsError, match="h: unknown machine architecture 'sparc64'"):
        parse_facts("machine=sparc64\nfacts=done\n", host="h")


def _fake_java(tmp_path: Path, *, release: str | None) -> tuple[dict[str, str], Path]:
    """A `java` on PATH (a symlink into a runtime's bin/, like Debian's alternatives) that
    records every start; the runtime's `release` file as given."""
    home = tmp_path / "jvm" / "java-17"
    (home / "bin").mkdir(parents=True)
    started = tmp_path / "java-started"
    java = home / "bin" / "java"
    java.write_text(
        f"#!/bin/sh\ntouch {started}\necho 'openjdk version \"17.0.99\" 2026-01-01' >&2\n"
    )
    java.chmod(0o755)
    if release is not None:
        (home / "release").write_text(release)
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "java").symlink_to(java)
    return {"PATH": f"{on_path}:/usr/bin:/bin"}, started


def _java_fact(env: dict[str, str]) -> str | None:
    output = subprocess.run(
        ["sh", "-c", FACTS_SCRIPT], capture_output=True, text=True, check=True, env=env
    ).stdout
    return parse_facts(output, host="local").java


def test_java_version_comes_from_the_runtime_release_file_without_starting_a_jvm(
    tmp_path: Path,
) -> None:
    release = 'IMPLEMENTOR="Debian"\nJAVA_VERSION="17.0.19"\nJAVA_VERSION_DATE="2026-04-21"\n'
    env, started = _fake_java(tmp_path, release=release)
    assert _java_fact(env) == "17.0.19"
    assert not started.exists()


@pytest.mark.parametrize("release", [None, 'IMPLEMENTOR="x"\n'])
def test_without_a_release_file_java_itself_says_its_version(
    tmp_path: Path, release: str | None
) -> None:
    env, started = _fake_java(tmp_path, release=release)
    assert _java_fact(env) == "17.0.99"
    assert started.exists()


def test_only_merge_tool_hosts_are_asked_about_python() -> None:
    """Starting python3 costs every facts run a process (about a second under QEMU): hosts
    without the merge-tool role get the facts command without that probe."""
    lean = facts_script(python=False)
    assert "python3 -c" not in lean and "apt_get=yes" not in lean
    assert "python3 -c" in facts_script(python=True) == FACTS_SCRIPT
    assert lean.rstrip().endswith('echo "facts=done"')
    found = parse_facts(
        subprocess.run(["sh", "-c", lean], capture_output=True, text=True, check=True).stdout,
        host="local",
    )
    assert (found.python3, found.python3_venv, found.apt_get) == (None, False, False)
