"""resources/archfleet/build.sh run as Jenkins' sh step runs it (`dash -xe`, durable-task), with
FAKE buildah and skopeo first on PATH: the registry cache's options and the private auth file.

The fakes follow the real programs where it matters here: `skopeo login --authfile F` adds the
registry's entry to F and keeps the others (containers/common pkg/auth Login ->
containers/image pkg/docker/config SetCredentials); `buildah build --authfile F` reads ONLY F
(containers/image pkg/docker/config getAuthFilePaths: a user-specified path drops the default
ones), so the fake records F's registries as what the build could log in to. `buildah push
--digestfile` writes a digest. `docker login` adds the entry to $DOCKER_CONFIG/config.json
(docker/cli cli/command/registry/login.go, config file store) and `docker buildx build` reads
that file (its session's auth provider), so the fake records its registries too. Everything
else succeeds and is recorded.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

BUILD_SH = Path(__file__).resolve().parents[2] / "jenkins" / "resources" / "archfleet" / "build.sh"
REGISTRY = "registry.example.com"
IMAGE = f"{REGISTRY}/team/app"

FAKE = r"""#!/usr/bin/env python3
import json, os, sys
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
record = {"tool": tool, "args": args}
if tool == "skopeo" and args[:1] == ["login"]:
    authfile = args[args.index("--authfile") + 1]
    password = sys.stdin.read().strip()
    data = json.load(open(authfile))
    data.setdefault("auths", {})[args[-1]] = {"auth": "login:" + args[args.index("--username") + 1]}
    json.dump(data, open(authfile, "w"))
    record["password_on_stdin"] = bool(password)
if tool == "buildah" and args[:1] == ["build"] and "--authfile" in args:
    record["authfile_registries"] = sorted(
        json.load(open(args[args.index("--authfile") + 1])).get("auths", {}))
config = os.path.join(os.environ.get("DOCKER_CONFIG", ""), "config.json")
if tool == "docker" and args[:1] == ["login"]:
    data = json.load(open(config)) if os.path.exists(config) else {}
    data.setdefault("auths", {})[args[-1]] = {"auth": "login:" + args[args.index("--username") + 1]}
    json.dump(data, open(config, "w"))
    record["password_on_stdin"] = bool(sys.stdin.read().strip())
if tool == "docker" and args[:2] == ["buildx", "build"]:
    record["config_registries"] = sorted(
        json.load(open(config)).get("auths", {}) if os.path.exists(config) else [])
if tool == "buildah" and args[:1] == ["push"]:
    open(args[args.index("--digestfile") + 1], "w").write("sha256:" + "ab" * 32 + "\n")
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(record) + "\n")
"""


def run_build(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[Any]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("buildah", "skopeo", "docker"):
        (bin_dir / tool).write_text(FAKE)
        (bin_dir / tool).chmod(0o755)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    out = tmp_path / "work"
    out.mkdir(exist_ok=True)
    log = tmp_path / "fake.log"
    done = subprocess.run(
        ["dash", "-xe", str(BUILD_SH)],
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(tmp_path / "run"),
            "TMPDIR": str(tmp_path),
            "FAKE_LOG": str(log),
            "AF_BUILDER": "buildah",
            "AF_PLATFORM": "linux/arm64",
            "AF_IMAGE": IMAGE,
            "AF_REGISTRY": REGISTRY,
            "AF_CONTEXT": ".",
            "AF_DOCKERFILE": "./Dockerfile",
            "AF_OUT": str(out),
            "AF_LOCAL_REF": "localhost/archfleet-build:x-arm64",
            "AF_INSECURE": "0",
            **env,
        },
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls


def build_call(calls: list[Any]) -> list[str]:
    (build,) = [c for c in calls if c["tool"] == "buildah" and c["args"][0] == "build"]
    return list(build["args"])


def test_a_build_that_pushes_nothing_reads_the_cache_without_a_login(tmp_path: Path) -> None:
    done, calls = run_build(
        tmp_path,
        AF_PUSH="0",
        AF_CACHE_FROM=f"{IMAGE}/buildcache/arm64 {IMAGE}/buildcache/unprotected-arm64",
    )
    assert done.returncode == 0, done.stderr
    args = build_call(calls)
    assert [args[i + 1] for i, a in enumerate(args) if a == "--cache-from"] == [
        f"{IMAGE}/buildcache/arm64",
        f"{IMAGE}/buildcache/unprotected-arm64",
    ]
    assert "--layers" in args and "--cache-to" not in args and "--authfile" not in args
    assert not [c for c in calls if c["tool"] == "skopeo"]
    assert "registry cache read only (push is off" in done.stdout


@pytest.mark.parametrize("seed", ["REGISTRY_AUTH_FILE", "runtime", "docker"])
def test_the_build_keeps_the_agents_own_logins_beside_the_push_login(
    tmp_path: Path, seed: str
) -> None:
    """With the cache on (the buildah default) a pushing build gets --authfile: the private
    file starts from the agent's own auth file, so a private base image elsewhere still pulls;
    the agent's file itself never receives the push login."""
    agent_auth = {"auths": {"bases.example.com": {"auth": base64.b64encode(b"u:p").decode()}}}
    env: dict[str, str] = {}
    if seed == "REGISTRY_AUTH_FILE":
        path = tmp_path / "agent-auth.json"
        env["REGISTRY_AUTH_FILE"] = str(path)
    elif seed == "runtime":
        path = tmp_path / "run" / "containers" / "auth.json"
    else:
        path = tmp_path / "home" / ".docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(agent_auth))
    done, calls = run_build(
        tmp_path,
        AF_PUSH="1",
        AF_CACHE_FROM=f"{IMAGE}/buildcache/arm64",
        AF_CACHE_TO=f"{IMAGE}/buildcache/arm64",
        REGISTRY_USER="ci",
        REGISTRY_PASSWORD="s3cret",
        **env,
    )
    assert done.returncode == 0, done.stderr
    (build,) = [c for c in calls if c["tool"] == "buildah" and c["args"][0] == "build"]
    assert build["authfile_registries"] == ["bases.example.com", REGISTRY]
    assert "--cache-to" in build["args"]
    (login,) = [c for c in calls if c["tool"] == "skopeo" and c["args"][0] == "login"]
    assert login["password_on_stdin"] and "s3cret" not in " ".join(login["args"])
    assert json.loads(path.read_text()) == agent_auth
    # The private copy is gone with the script.
    assert not list(tmp_path.glob("archfleet-auth.*"))


def test_without_an_agent_login_the_file_holds_the_push_login_only(tmp_path: Path) -> None:
    done, calls = run_build(
        tmp_path,
        AF_PUSH="1",
        AF_CACHE_FROM=f"{IMAGE}/buildcache/arm64",
        AF_CACHE_TO=f"{IMAGE}/buildcache/arm64",
        REGISTRY_USER="ci",
        REGISTRY_PASSWORD="s3cret",
    )
    assert done.returncode == 0, done.stderr
    (build,) = [c for c in calls if c["tool"] == "buildah" and c["args"][0] == "build"]
    assert build["authfile_registries"] == [REGISTRY]
    copy = [c for c in calls if c["tool"] == "skopeo" and c["args"][0] == "copy"]
    assert copy and copy[0]["args"][-1] == f"docker://{IMAGE}@sha256:{'ab' * 32}"


def test_a_credential_helper_is_never_seeded(tmp_path: Path) -> None:
    """An agent auth file naming credHelpers is not copied: `skopeo login` would store the push
    login in that helper, where it outlives the build."""
    path = tmp_path / "agent-auth.json"
    path.write_text(
        json.dumps({"auths": {"bases.example.com": {}}, "credHelpers": {REGISTRY: "x"}})
    )
    done, calls = run_build(
        tmp_path,
        AF_PUSH="1",
        AF_CACHE_FROM=f"{IMAGE}/buildcache/arm64",
        AF_CACHE_TO=f"{IMAGE}/buildcache/arm64",
        REGISTRY_USER="ci",
        REGISTRY_PASSWORD="s3cret",
        REGISTRY_AUTH_FILE=str(path),
    )
    assert done.returncode == 0, done.stderr
    (build,) = [c for c in calls if c["tool"] == "buildah" and c["args"][0] == "build"]
    assert build["authfile_registries"] == [REGISTRY]


@pytest.mark.parametrize("helper", [False, True])
def test_buildx_keeps_the_agents_docker_logins_in_its_private_config(
    tmp_path: Path, helper: bool
) -> None:
    origin = tmp_path / "home" / ".docker"
    origin.mkdir(parents=True)
    agent_config: dict[str, Any] = {"auths": {"bases.example.com": {"auth": "dTpw"}}}
    if helper:
        agent_config["credsStore"] = "desktop"
    (origin / "config.json").write_text(json.dumps(agent_config))
    done, calls = run_build(
        tmp_path,
        AF_BUILDER="buildx",
        AF_PUSH="1",
        REGISTRY_USER="ci",
        REGISTRY_PASSWORD="s3cret",
    )
    assert done.returncode == 0, done.stderr
    (build,) = [c for c in calls if c["tool"] == "docker" and c["args"][:2] == ["buildx", "build"]]
    expected = [REGISTRY] if helper else ["bases.example.com", REGISTRY]
    assert build["config_registries"] == expected
    assert ("uses a credential store: not copied" in done.stdout) is helper
    assert json.loads((origin / "config.json").read_text()) == agent_config
