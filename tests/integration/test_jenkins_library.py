"""The Jenkins shared library (jenkins/) run by a pipeline harness on Groovy 2.4.21, the Groovy
Jenkins embeds (tests/groovy/PipelineHarness.groovy, JenkinsPipelineUnit style).

The harness binds the pipeline steps, records every call (sequence, parallel branch, node label,
agent, container), and runs `sh` FOR REAL. Docker Pipeline's `docker` variable is a STAND-IN
written from the plugin's source (tests/groovy/DockerStandIn.groovy). Three kinds of runs:
- fake tools: agents whose PATH starts with tests/groovy/shims, FAKE buildah/skopeo/docker/
  archfleet/uname that log their arguments (the fake docker also fakes the engine calls
  docker.image().inside makes; its images are directories); the library's own scripts run for
  real. One JVM runs all of these scenarios.
- executed for real: a declarative Jenkinsfile calls multiArchBuild with buildah against a
  loopback registry with basic auth; amd64 and arm64 are built (arm64 RUN under QEMU, so
  allowEmulation), pushed by digest, merged and verified by archfleet; skopeo checks the tag.
- docker.image().inside for real, on a dockerd of the test's own (Debian's docker.io 20.10),
  with a tool image pulled from the loopback registry with its login; the builders are fake
  and the archfleet in that image is a stand-in script (see that test's docstring).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from toolkit import __version__
from toolkit.lab.docker_engine import DOCKER_CLIENT, DockerEngine, docker_engine
from toolkit.lab.images import busybox_rootfs, ensure_binfmt
from toolkit.lab.registry import LocalRegistry, start_registry, write_htpasswd
from toolkit.lab.skopeo import resolved_digest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "jenkins"
GROOVY_DIR = REPO / "tests" / "groovy"
SHIMS = GROOVY_DIR / "shims"
JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")
USER = "ci-bot"
SECRET = "Zq7-jenkins-S3CRET-pw"
SECRET_HASH = hashlib.sha256(SECRET.encode()).hexdigest()
IMAGE = "registry.example.com/team/app"
TOOL_REPOSITORY = "registry.example.com/platform/archfleet"
TOOL_IMAGE = f"{TOOL_REPOSITORY}:{__version__}"
PRIVATE_TOOL_IMAGE = f"registry.example.com/private/archfleet:{__version__}"
PULL_USER = "puller"
PULL_SECRET = "Pq9-image-PULL-secret"
MERGE_MARK = "merge-manifest"
COMMIT = "3f9c2a7be41d05c6e8a9b0c1d2e3f405a6b7c8d9"  # what the harness' checkout returns
SHORT_SHA = COMMIT[:8]
INDEX_ACCEPT = (
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json"
)


def run_pipelines(scenarios: list[dict[str, Any]], workdir: Path, timeout: float) -> dict[str, Any]:
    """Run every scenario in ONE groovy process; returns each scenario's report by name."""
    if shutil.which("groovy") is None or not JAVA_HOME.is_dir():
        pytest.fail("groovy 2.4 and OpenJDK 17 are needed: apt-get install groovy openjdk-17-jre")
    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for scenario in scenarios:
        scenario.setdefault("library", str(LIBRARY))
        scenario["workdir"] = str(workdir / scenario["name"])
        scenario["report"] = str(workdir / f"{scenario['name']}.report.json")
        path = workdir / f"{scenario['name']}.scenario.json"
        path.write_text(json.dumps(scenario))
        paths.append(str(path))
    classpath = os.pathsep.join(str(p) for p in (GROOVY_DIR / "stubs", GROOVY_DIR, LIBRARY / "src"))
    done = subprocess.run(
        ["groovy", "-cp", classpath, str(GROOVY_DIR / "run.groovy"), *paths],
        env={**os.environ, "JAVA_HOME": str(JAVA_HOME)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"harness failed:\n{done.stdout}\n{done.stderr}"
    return {s["name"]: json.loads(Path(s["report"]).read_text(encoding="utf-8")) for s in scenarios}


# ------------------------------------------------------------------ report helpers


def calls(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [c for c in report["calls"] if c["name"] == name]


def merge_calls(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in calls(report, "sh") if MERGE_MARK in c["args"]["script"]]


def returned(report: dict[str, Any]) -> Any:
    results = report["stepResults"]
    assert len(results) == 1, results
    return results[0]["returned"]


def explain(report: dict[str, Any]) -> str:
    return f"{report['result']}: {report['error']}\n{report.get('trace') or ''}\n{report['log']}"


@dataclass(frozen=True)
class ToolCall:
    """One line of the fake tools' log (tests/groovy/shims/fake-tool)."""

    tool: str
    node: str
    platform: str
    user: str
    password_hash: str
    container: str  # the image it ran in, "-" on the agent itself
    args: str


def tool_calls(log: Path) -> list[ToolCall]:
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        tool, node, platform, user, password, container, args = line.split("\t", 6)
        rows.append(
            ToolCall(
                tool,
                node,
                platform,
                user.removeprefix("user="),
                password.removeprefix("pw="),
                container.removeprefix("ctr="),
                args,
            )
        )
    return rows


def fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------ fake-tool scenarios


def fake_agent(
    name: str, labels: list[str], uname: str, shim_log: Path | str, shims: Path = SHIMS
) -> dict[str, Any]:
    return {
        "name": name,
        "labels": labels,
        "env": {"PATH+SHIMS": str(shims), "FAKE_UNAME": uname, "SHIM_LOG": str(shim_log)},
    }


def with_agent_env(agent: dict[str, Any], **env: str) -> dict[str, Any]:
    return {**agent, "env": {**agent["env"], **env}}


def shims_without(root: Path, *tools: str) -> Path:
    """A copy of the shims directory (symlinks) that lacks `tools`: an agent without them."""
    folder = root / ("shims-without-" + "-".join(tools))
    if not folder.exists():
        folder.mkdir(parents=True)
        for shim in SHIMS.iterdir():
            if shim.name not in tools:
                (folder / shim.name).symlink_to(shim)
    return folder


def fake_image(
    root: Path,
    reference: str,
    *,
    version: str | None = __version__,
    pull_login: tuple[str, str] | None = None,
    entrypoint: str | None = None,
) -> str:
    """An image for the FAKE docker engine (tests/groovy/shims/fake-tool): bin/archfleet is the
    fake archfleet of `version` (none when None); pull_login makes pulls need that login."""
    image = root / "images" / re.sub(r"[/:@]", "_", reference)
    (image / "bin").mkdir(parents=True, exist_ok=True)
    if version is not None:
        tool = image / "bin" / "archfleet"
        fake_tool = SHIMS / "fake-tool"
        tool.write_text(
            f'#!/bin/sh\nFAKE_ARCHFLEET_VERSION={version} exec {fake_tool} archfleet "$@"\n'
        )
        tool.chmod(0o755)
    if pull_login is not None:
        (image / "auth").write_text(base64.b64encode(":".join(pull_login).encode()).decode())
    if entrypoint is not None:
        (image / "entrypoint").write_text(entrypoint + "\n")
    return reference


def scenario(name: str, root: Path, **overrides: Any) -> dict[str, Any]:
    """A multiArchBuild run on an amd64 and an arm64 agent with fake tools (and a fake docker
    engine whose images are under root/images)."""
    source = root / "source"
    if not source.exists():
        source.mkdir(parents=True)
        (source / "Dockerfile").write_text("FROM scratch\n")
    shim_log = root / f"{name}.tools.log"
    base: dict[str, Any] = {
        "name": name,
        "source": str(source),
        "env": {
            "BRANCH_NAME": "main",
            "SHIM_LOG": str(shim_log),
            "FAKE_ARCHFLEET_VERSION": __version__,
            "FAKE_DOCKER_IMAGES": str(root / "images"),
            "FAKE_DOCKER_STATE": str(root / "engines" / name),
        },
        "agents": [
            fake_agent("amd-1", ["linux", "amd64"], "x86_64", shim_log),
            fake_agent("arm-1", ["linux", "arm64"], "aarch64", shim_log),
        ],
        "credentials": {"registry": {"username": USER, "password": SECRET}},
        "step": {"name": "multiArchBuild", "args": {"image": IMAGE, "builder": "buildah"}},
    }
    base.update(overrides)
    return base


AMD64_ONLY_BASE = "registry.example.com/base/amd64-only:1.0"


def amd64_only_source(root: Path) -> Path:
    """A source tree whose Dockerfile's base offers amd64 only (as the FAKE check-bases is told
    with FAKE_BASES_MISSING=linux/arm64)."""
    source = root / "source-amd64-only"
    source.mkdir(parents=True, exist_ok=True)
    (source / "Dockerfile").write_text(f"FROM {AMD64_ONLY_BASE}\nRUN true\n")
    return source


def with_args(**args: Any) -> dict[str, Any]:
    return {"name": "multiArchBuild", "args": {"image": IMAGE, "builder": "buildah", **args}}


BAD_CONFIGS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "bad-unknown-arch": (
        {"image": IMAGE, "platforms": ["linux/amd64", "linux/sparc64"]},
        ["unknown platform 'linux/sparc64'", "linux/arm64", "linux/riscv64"],
    ),
    "bad-empty-platforms": ({"image": IMAGE, "platforms": []}, ["platforms is empty"]),
    "bad-missing-image": ({"platforms": ["linux/amd64"]}, ["image is required"]),
    "bad-image-without-registry": ({"image": "team/app"}, ["must start with its registry host"]),
    "bad-unknown-argument": ({"image": IMAGE, "plattforms": ["linux/amd64"]}, ["plattforms"]),
    "bad-tag": ({"image": IMAGE, "tags": ["-nope"]}, ["tag '-nope' is not a valid tag"]),
    "bad-builder": ({"image": IMAGE, "builder": "kaniko"}, ["builder must be 'buildah' or"]),
    "bad-same-label": (
        {"image": IMAGE, "agentLabel": "linux"},
        ["same label 'linux'", "allowEmulation"],
    ),
    "bad-tool-image": (
        {"image": IMAGE, "archfleetImage": "Registry.example.com/Platform/ArchFleet"},
        ["archfleetImage 'Registry.example.com/Platform/ArchFleet' is not an image reference"],
    ),
    "bad-image-args-without-image": (
        {"image": IMAGE, "archfleetImageArgs": "--network host"},
        ["archfleetImageArgs only applies with archfleetImage"],
    ),
}


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("jenkins-fake")

    def shim(name: str) -> str:
        return str(root / f"{name}.tools.log")

    scenarios = [
        scenario(
            "happy",
            root,
            step=with_args(
                credentialsId="registry",
                tags=["1.4.0", "latest"],
                buildArgs={"VERSION": "1.4.0", "NOTE": "two words"},
            ),
        ),
        scenario(
            "buildx-pattern-tag-build",
            root,
            env={"TAG_NAME": "v2.0.0", "SHIM_LOG": shim("buildx-pattern-tag-build")},
            step={
                "name": "multiArchBuild",
                "args": {
                    "image": IMAGE,
                    "builder": "buildx",
                    "platforms": "linux/amd64, linux/arm64/v8",
                    "agentLabel": "linux && {arch}",
                    "credentialsId": "registry",
                    # How the merge agent runs archfleet: a command line, split by the shell.
                    "archfleet": f"{SHIMS / 'fake-tool'} archfleet",
                },
            },
        ),
        scenario(
            "guard-refuses-emulated-agent",
            root,
            agents=[
                fake_agent("amd-1", ["amd64"], "x86_64", root / "guard.tools.log"),
                fake_agent("fake-arm", ["arm64"], "x86_64", root / "guard.tools.log"),
            ],
            env={"BRANCH_NAME": "main", "SHIM_LOG": str(root / "guard.tools.log")},
        ),
        scenario(
            "emulation-allowed",
            root,
            agents=[fake_agent("x86-only", ["amd64", "arm64"], "x86_64", root / "emu.tools.log")],
            env={"BRANCH_NAME": "main", "SHIM_LOG": str(root / "emu.tools.log")},
            step=with_args(allowEmulation=True),
        ),
        scenario(
            "arm64-build-fails",
            root,
            env={
                "BRANCH_NAME": "main",
                "SHIM_LOG": shim("arm64-build-fails"),
                "FAKE_FAIL_BUILD": "linux/arm64",
            },
            step=with_args(credentialsId="registry", failFast=False),
        ),
        scenario(
            "merge-fails",
            root,
            env={"BRANCH_NAME": "main", "SHIM_LOG": shim("merge-fails"), "FAKE_FAIL_MERGE": "1"},
            # Also the run without the base image check: the preflight is the version check alone.
            step=with_args(checkBases=False),
        ),
        scenario(
            "base-lacks-arm64",
            root,
            source=str(amd64_only_source(root)),
            env={
                "BRANCH_NAME": "main",
                "SHIM_LOG": shim("base-lacks-arm64"),
                "FAKE_BASES_MISSING": "linux/arm64",
            },
            step=with_args(credentialsId="registry"),
        ),
        scenario(
            "feature-branch-no-push",
            root,
            env={"BRANCH_NAME": "feature/x", "SHIM_LOG": shim("feature-branch-no-push")},
            step=with_args(credentialsId="registry"),
        ),
        # ---- never hang, no release races
        scenario(
            "no-arm64-agent",
            root,
            agents=[fake_agent("amd-1", ["linux", "amd64"], "x86_64", root / "no-arm.tools.log")],
            env={"BRANCH_NAME": "main", "SHIM_LOG": str(root / "no-arm.tools.log")},
            step=with_args(agentTimeout=5),
        ),
        scenario(
            "fallback-label",
            root,
            agents=[
                fake_agent("amd-1", ["linux", "amd64"], "x86_64", shim("fallback-label")),
                fake_agent("qemu-1", ["qemu"], "x86_64", shim("fallback-label")),
            ],
            step=with_args(allowEmulation="qemu"),
        ),
        scenario(
            "agent-lost",
            root,
            agents=[
                fake_agent("amd-1", ["linux", "amd64"], "x86_64", shim("agent-lost")),
                # Lost after its first sh (the native guard): the branch starts again on arm-2.
                {
                    **fake_agent("arm-1", ["linux", "arm64"], "aarch64", shim("agent-lost")),
                    "loseAfter": 1,
                },
                fake_agent("arm-2", ["linux", "arm64"], "aarch64", shim("agent-lost")),
            ],
        ),
        scenario(
            "no-lockable-resources",
            root,
            plugins=["pipeline-milestone-step"],
        ),
        scenario(
            "buildx-remote-builder",
            root,
            agents=[
                fake_agent("amd-1", ["linux", "amd64"], "x86_64", shim("buildx-remote-builder")),
                # An arm64 agent whose buildx builder is an amd64 machine (DOCKER_HOST elsewhere).
                with_agent_env(
                    fake_agent(
                        "arm-1", ["linux", "arm64"], "aarch64", shim("buildx-remote-builder")
                    ),
                    FAKE_BUILDX_PLATFORMS="linux/amd64, linux/arm64, linux/riscv64",
                ),
            ],
            step={"name": "multiArchBuild", "args": {"image": IMAGE, "builder": "buildx"}},
        ),
        # Two builds of one job: #2 merges first, then #1 (older) reaches the milestone.
        scenario(
            "release-build-2",
            root,
            job="release",
            env={"BRANCH_NAME": "main", "BUILD_NUMBER": "2", "SHIM_LOG": shim("release-build-2")},
        ),
        scenario(
            "release-build-1",
            root,
            job="release",
            env={"BRANCH_NAME": "main", "BUILD_NUMBER": "1", "SHIM_LOG": shim("release-build-1")},
        ),
        scenario(
            "unknown-credentials",
            root,
            step=with_args(credentialsId="nope"),
        ),
        scenario(
            "declarative-example",
            root,
            step=None,
            jenkinsfile=str(LIBRARY / "Jenkinsfile.example"),
            credentials={"registry-push": {"username": USER, "password": SECRET}},
        ),
        # The plain Pipeline job publish-jenkins-library creates: no branch, pushes explicitly.
        scenario(
            "declarative-example-plain-job",
            root,
            step=None,
            jenkinsfile=str(LIBRARY / "Jenkinsfile.example"),
            env={"SHIM_LOG": shim("declarative-example-plain-job")},
            credentials={"registry-push": {"username": USER, "password": SECRET}},
        ),
        scenario(
            "scripted-example",
            root,
            step=None,
            jenkinsfile=str(LIBRARY / "Jenkinsfile.scripted.example"),
            env={"BRANCH_NAME": "main", "BUILD_NUMBER": "7", "SHIM_LOG": shim("scripted-example")},
            credentials={"registry-push": {"username": USER, "password": SECRET}},
        ),
        scenario(
            "harness-selftest",
            root,
            step=None,
            jenkinsfile=str(GROOVY_DIR / "selftest" / "Jenkinsfile"),
            credentials={"token": {"secret": "abcdef"}},
        ),
        # ---- the archfleet the merge uses: in the tool image, or on the merge agent
        scenario(
            "image",
            root,
            step=with_args(
                credentialsId="registry",
                imageTags=["1.4.0"],
                tagLatest=False,
                archfleetImage=fake_image(root, TOOL_IMAGE),
                archfleetImageArgs="--network host",
            ),
        ),
        scenario(
            "image-private",
            root,
            credentials={
                "registry": {"username": USER, "password": SECRET},
                "image-pull": {"username": PULL_USER, "password": PULL_SECRET},
            },
            step=with_args(
                credentialsId="registry",
                archfleetImage=fake_image(
                    root, PRIVATE_TOOL_IMAGE, pull_login=(PULL_USER, PULL_SECRET)
                ),
                archfleetImageCredentialsId="image-pull",
            ),
        ),
        scenario(
            "image-private-without-login",
            root,
            step=with_args(archfleetImage=PRIVATE_TOOL_IMAGE),
        ),
        scenario(
            "image-wrong-version",
            root,
            step=with_args(
                archfleetImage=fake_image(root, f"{TOOL_REPOSITORY}:0.0.9", version="0.0.9")
            ),
        ),
        scenario(
            "image-without-archfleet",
            root,
            step=with_args(
                archfleetImage=fake_image(root, "registry.example.com/base:1", version=None)
            ),
        ),
        scenario(
            "image-with-entrypoint",
            root,
            step=with_args(
                archfleetImage=fake_image(root, "registry.example.com/tools:2", entrypoint="tini")
            ),
        ),
        scenario(
            "image-no-push",
            root,
            env={"BRANCH_NAME": "feature/x"},
            step=with_args(archfleetImage=TOOL_IMAGE),
        ),
        scenario(
            "agent-wrong-version",
            root,
            agents=[
                with_agent_env(
                    fake_agent("amd-1", ["linux", "amd64"], "x86_64", shim("agent-wrong-version")),
                    FAKE_ARCHFLEET_VERSION="0.0.9",
                ),
                fake_agent("arm-1", ["linux", "arm64"], "aarch64", shim("agent-wrong-version")),
            ],
        ),
        scenario(
            "agent-without-archfleet",
            root,
            agents=[
                # No PATH+SHIMS: this agent's PATH is only the shims without archfleet and the
                # system's directories (this machine has a real archfleet elsewhere on PATH).
                {
                    "name": "amd-1",
                    "labels": ["linux", "amd64"],
                    "env": {
                        "PATH": f"{shims_without(root, 'archfleet')}:/usr/bin:/bin",
                        "FAKE_UNAME": "x86_64",
                        "SHIM_LOG": shim("agent-without-archfleet"),
                    },
                },
                fake_agent("arm-1", ["linux", "arm64"], "aarch64", shim("agent-without-archfleet")),
            ],
        ),
        scenario(
            "agent-archfleet-fails",
            root,
            step=with_args(archfleet="false"),
        ),
    ]
    for name, (args, _) in BAD_CONFIGS.items():
        scenarios.append(scenario(name, root, step={"name": "multiArchBuild", "args": args}))
    for s in scenarios:
        if s.get("step") is None:
            del s["step"]
        s["env"].setdefault("SHIM_LOG", shim(s["name"]))
        if s["env"].get("BRANCH_NAME") == "main":
            # A multibranch job whose primary branch is main (branch-api sets this).
            s["env"].setdefault("BRANCH_IS_PRIMARY", "true")
        s["env"].setdefault("FAKE_ARCHFLEET_VERSION", __version__)
        s["env"].setdefault("FAKE_DOCKER_IMAGES", str(root / "images"))
        s["env"].setdefault("FAKE_DOCKER_STATE", str(root / "engines" / s["name"]))
    return root, run_pipelines(scenarios, root / "runs", timeout=240)


def test_one_native_branch_per_platform_then_one_merge(
    fake: tuple[Path, dict[str, Any]],
) -> None:
    root, reports = fake
    report = reports["happy"]
    assert report["result"] == "SUCCESS", explain(report)
    (parallel,) = calls(report, "parallel")
    assert parallel["args"] == {"branches": ["linux/amd64", "linux/arm64"], "failFast": True}
    expected = {"linux/amd64": ("amd64", "amd-1"), "linux/arm64": ("arm64", "arm-1")}
    for platform, (label, agent) in expected.items():
        nodes = [c for c in calls(report, "node") if c["branch"] == platform]
        assert [(n["args"]["label"], n["agent"]) for n in nodes] == [(label, agent)]
        # Every script of the branch ran inside that node.
        scripts = [c for c in calls(report, "sh") if c["branch"] == platform]
        assert scripts and {(c["label"], c["agent"]) for c in scripts} == {(label, agent)}
    # The merge: after every branch has ended, exactly once, for both tags.
    branches = calls(report, "branch")
    (merge,) = merge_calls(report)
    assert merge["branch"] is None and merge["label"] == "amd64"
    assert merge["seq"] > max(b["end"] for b in branches) and merge["seq"] > parallel["end"]
    tools = tool_calls(root / "happy.tools.log")
    merges = [t for t in tools if t.tool == "archfleet" and t.args.startswith(MERGE_MARK)]
    assert len(merges) == 1
    digests = {p: fake_digest(p) for p in expected}
    assert merges[0].args == (
        "merge-manifest "
        "--annotation org.opencontainers.image.source=https://git.example.com/team/app.git "
        f"--annotation org.opencontainers.image.revision={COMMIT} "
        "--annotation org.opencontainers.image.created=2025-12-03T03:30:45Z "
        f"--target {IMAGE}:1.4.0 --target {IMAGE}:latest "
        f"--source linux/amd64=@{digests['linux/amd64']} "
        f"--source linux/arm64=@{digests['linux/arm64']}"
    )
    verifies = [t.args for t in tools if t.tool == "archfleet" and "verify-manifest" in t.args]
    assert verifies == [
        f"verify-manifest --target {IMAGE}:{tag} --platforms linux/amd64,linux/arm64 "
        "--check-binaries"
        for tag in ("1.4.0", "latest")
    ]
    # Each platform was built on its own agent and pushed by digest: no tag in the push.
    for platform, (_, agent) in expected.items():
        builds = [t for t in tools if t.tool == "buildah" and t.args.startswith("build ")]
        assert [t.node for t in builds if t.platform == platform] == [agent]
        build_args = next(t.args for t in builds if t.platform == platform)
        # Names only on the command line (`ps` shows it to every user); the values reached
        # the builder through its environment.
        assert "--build-arg NOTE --build-arg VERSION " in build_args and "1.4.0" not in build_args
        received = {
            t.args for t in tools if t.platform == platform and t.args.startswith("build-arg-env")
        }
        assert received == {"build-arg-env VERSION=1.4.0", "build-arg-env NOTE=two words"}
        (copy,) = [
            t
            for t in tools
            if t.tool == "skopeo" and t.args.startswith("copy") and t.platform == platform
        ]
        assert copy.node == agent and copy.args.endswith(f"docker://{IMAGE}@{digests[platform]}")
    result = returned(report)
    # `tags` is the old name of imageTags: accepted, with a warning.
    assert "WARNING: the argument 'tags' is deprecated, use 'imageTags'" in report["log"]
    assert result["pushed"] is True and result["digests"] == digests
    assert result["index"] == fake_digest(f"index {merges[0].args}")
    assert result["tags"] == [f"{IMAGE}:1.4.0", f"{IMAGE}:latest"]


def test_secrets_reach_scripts_only_as_environment(fake: tuple[Path, dict[str, Any]]) -> None:
    root, reports = fake
    report = reports["happy"]
    assert report["result"] == "SUCCESS", explain(report)
    bindings = [b for c in calls(report, "withCredentials") for b in c["args"]["bindings"]]
    assert len(bindings) == 4  # two builds, one merge, the check-bases login (preflight)
    assert all(
        b
        == {
            "credentialsId": "registry",
            "usernameVariable": "REGISTRY_USER",
            "passwordVariable": "REGISTRY_PASSWORD",
            "type": "UsernamePasswordMultiBinding",
        }
        for b in bindings
    )
    # Never literally in a script, the log, or on any command line of any tool.
    for name, each in reports.items():
        for call in calls(each, "sh"):
            assert SECRET not in call["args"]["script"], name
        assert SECRET not in each["log"], name
        assert SECRET not in json.dumps(each["calls"]), name
    for log in root.glob("*.tools.log"):
        assert SECRET not in log.read_text(), log
    # ... yet it arrived: on stdin of the logins, and in the merger's environment.
    tools = tool_calls(root / "happy.tools.log")
    logins = [t for t in tools if t.args.startswith("login")]
    assert len(logins) == 2
    assert all(
        t.args.endswith(f"stdin={SECRET_HASH}") and f"--username {USER}" in t.args for t in logins
    )
    merger = [
        t
        for t in tools
        if t.tool == "archfleet" and t.args != "--version" and "build-arg-env" not in t.args
    ]
    assert merger and all(t.user == USER and t.password_hash == SECRET_HASH for t in merger)
    # The version checks run without them.
    checks = [t for t in tools if t.tool == "archfleet" and t.args == "--version"]
    assert len(checks) == 2 and all(t.user == "-" and t.password_hash == "-" for t in checks)


def test_buildx_label_pattern_and_tag_build(fake: tuple[Path, dict[str, Any]]) -> None:
    root, reports = fake
    report = reports["buildx-pattern-tag-build"]
    assert report["result"] == "SUCCESS", explain(report)
    labels = {c["branch"]: c["args"]["label"] for c in calls(report, "node") if c["branch"]}
    assert labels == {"linux/amd64": "linux && amd64", "linux/arm64": "linux && arm64"}
    tools = tool_calls(root / "buildx-pattern-tag-build.tools.log")
    builds = [t for t in tools if t.tool == "docker" and t.args.startswith("buildx build")]
    assert {(t.platform, t.node) for t in builds} == {
        ("linux/amd64", "amd-1"),
        ("linux/arm64", "arm-1"),
    }
    for t in builds:
        assert f"--platform {t.platform} " in t.args
        assert f"type=image,name={IMAGE},push-by-digest=true,name-canonical=true,push=true" in (
            t.args
        )
    logins = [t for t in tools if t.tool == "docker" and t.args.startswith("login")]
    assert len(logins) == 2 and all(t.args.endswith(f"stdin={SECRET_HASH}") for t in logins)
    outside = [c["args"]["env"] for c in calls(report, "withEnv") if c["branch"] is None]
    # The merge's and the preflight check-bases' environment name the same command.
    for mark in ("AF_TARGETS=", "AF_DOCKERFILE="):
        (tool_env,) = [env for env in outside if any(e.startswith(mark) for e in env)]
        assert [e for e in tool_env if e.startswith("AF_ARCHFLEET=")] == [
            f"AF_ARCHFLEET={SHIMS / 'fake-tool'} archfleet"
        ]
    assert len([t for t in tools if t.tool == "archfleet" and MERGE_MARK in t.args]) == 1
    result = returned(report)
    # A tag build pushes by default; the GitLab component's tags: short SHA, the tag's slug,
    # the semver floats (no latest: a tag is not the primary branch).
    assert result["tags"] == [
        f"{IMAGE}:{tag}" for tag in (SHORT_SHA, "v2-0-0", "2.0.0", "2.0", "2")
    ]
    assert result["digests"] == {p: fake_digest(p) for p in ("linux/amd64", "linux/arm64")}


def test_native_guard_refuses_a_mislabelled_agent(fake: tuple[Path, dict[str, Any]]) -> None:
    root, reports = fake
    report = reports["guard-refuses-emulated-agent"]
    assert report["result"] == "FAILURE"
    assert report["errorClass"] == "hudson.AbortException"
    message = report["error"]
    for fragment in (
        "linux/arm64 must build natively",
        "aarch64 or arm64",
        "'fake-arm'",
        "reports 'x86_64', which runs linux/amd64",
        "allowEmulation: true",
    ):
        assert fragment in message, message
    assert not merge_calls(report)
    tools = tool_calls(root / "guard.tools.log")
    assert not [t for t in tools if t.platform == "linux/arm64"]
    # The preflight only.
    assert [t.args.split()[0] for t in tools if t.tool == "archfleet"] == [
        "--version",
        "check-bases",
    ]


def test_emulation_allowed_builds_with_a_warning(fake: tuple[Path, dict[str, Any]]) -> None:
    _, reports = fake
    report = reports["emulation-allowed"]
    assert report["result"] == "SUCCESS", explain(report)
    warnings = [
        c["args"]["message"] for c in calls(report, "echo") if "WARNING" in c["args"]["message"]
    ]
    assert len(warnings) == 1 and "linux/arm64" in warnings[0] and "emulation" in warnings[0]
    assert len(merge_calls(report)) == 1


@pytest.mark.parametrize("name", ["arm64-build-fails", "merge-fails"])
def test_a_failure_moves_no_tag(fake: tuple[Path, dict[str, Any]], name: str) -> None:
    root, reports = fake
    report = reports[name]
    assert report["result"] == "FAILURE"
    assert "script returned exit code 1" in report["error"]
    assert report["stepResults"] == []
    tools = tool_calls(root / f"{name}.tools.log")
    if name == "arm64-build-fails":
        # Without failFast the amd64 branch finishes (its digest push writes no tag), but no
        # merge runs: no tag anywhere moves.
        assert not merge_calls(report)
        assert [t.args.split()[0] for t in tools if t.tool == "archfleet"] == [
            "--version",
            "check-bases",
        ]
        (failed,) = [b for b in calls(report, "branch") if b["status"] == "FAILURE"]
        assert failed["args"]["name"] == "linux/arm64"
        assert "fake buildah: build of linux/arm64 failed" in report["log"]
    else:
        # The merger refused: verify never ran, and the step returned nothing.
        assert [t.args.split()[0] for t in tools if t.tool == "archfleet"] == [
            "--version",
            "--version",
            "merge-manifest",
        ]


def test_push_only_on_main_or_tags(fake: tuple[Path, dict[str, Any]]) -> None:
    root, reports = fake
    report = reports["feature-branch-no-push"]
    assert report["result"] == "SUCCESS", explain(report)
    assert returned(report) == {"pushed": False, "digests": {}, "index": None, "tags": []}
    tools = tool_calls(root / "feature-branch-no-push.tools.log")
    assert [t.args.split()[0] for t in tools if t.tool == "buildah"].count("build") == 2
    assert not [t for t in tools if t.tool in ("skopeo", "archfleet")]
    assert not [t for t in tools if t.args.startswith("push")]


def test_unknown_credentials_fail_before_any_push(fake: tuple[Path, dict[str, Any]]) -> None:
    root, reports = fake
    report = reports["unknown-credentials"]
    assert report["result"] == "FAILURE"
    assert "Could not find credentials entry with ID 'nope'" in report["error"]
    tools = tool_calls(root / "unknown-credentials.tools.log")
    assert not [t for t in tools if t.tool != "uname" and t.args != "--version"]


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_is_a_clear_error(fake: tuple[Path, dict[str, Any]], name: str) -> None:
    _, reports = fake
    report = reports[name]
    assert report["result"] == "FAILURE"
    assert report["errorClass"] == "hudson.AbortException", explain(report)
    assert report["error"].startswith("multiArchBuild: ")
    for fragment in BAD_CONFIGS[name][1]:
        assert fragment in report["error"], report["error"]
    # Refused before any agent was taken or any command ran.
    assert not calls(report, "node") and not calls(report, "sh")


def test_the_publishers_plain_job_pushes_with_push_true(fake: tuple[Path, dict[str, Any]]) -> None:
    _, reports = fake
    report = reports["declarative-example-plain-job"]
    assert report["result"] == "SUCCESS", explain(report)
    (step,) = calls(report, "multiArchBuild")
    assert step["args"]["args"]["push"] is True
    result = returned(report)
    # No branch: no slug and no latest; the commit's short SHA is the tag.
    assert result["pushed"] is True and result["tags"] == [f"{IMAGE}:{SHORT_SHA}"]
    assert len(merge_calls(report)) == 1


@pytest.mark.parametrize("name", ["declarative-example", "scripted-example"])
def test_examples_run_under_the_harness(fake: tuple[Path, dict[str, Any]], name: str) -> None:
    _, reports = fake
    report = reports[name]
    assert report["result"] == "SUCCESS", explain(report)
    result = returned(report)
    assert result["pushed"] is True and result["index"].startswith("sha256:")
    assert set(result["digests"]) == {"linux/amd64", "linux/arm64"}
    assert len(merge_calls(report)) == 1
    inside = {c["args"]["label"]: c["container"] for c in calls(report, "sh") if c["container"]}
    if name == "declarative-example":
        assert report["params"]["IMAGE"] == IMAGE
        assert result["tags"] == [f"{IMAGE}:{t}" for t in (SHORT_SHA, "main", "latest")]
        # Its default: the merge in the tool image of this library's version.
        assert report["params"]["ARCHFLEET_IMAGE"] == TOOL_IMAGE
        assert inside == {
            "archfleet --version": TOOL_IMAGE,
            "archfleet check-bases": TOOL_IMAGE,
            "archfleet merge-manifest": TOOL_IMAGE,
        }
    else:
        assert result["tags"] == [f"{IMAGE}:build-7", f"{IMAGE}:latest"]
        # The archfleet on the merge agent.
        assert inside == {} and not calls(report, "withDockerContainer")


# ------------------------------------------------------------------ the harness' assertions


LIBRARY_RUNS = [
    "happy",
    "buildx-pattern-tag-build",
    "arm64-build-fails",
    "feature-branch-no-push",
    "image",
    "image-private",
    "declarative-example",
    "scripted-example",
    "declarative-example-plain-job",
    "fallback-label",
    "agent-lost",
    "no-lockable-resources",
    "release-build-2",
    "no-arm64-agent",
]


@pytest.mark.parametrize("name", LIBRARY_RUNS)
def test_every_node_is_inside_a_timeout(fake: tuple[Path, dict[str, Any]], name: str) -> None:
    _, reports = fake
    nodes = calls(reports[name], "node")
    assert nodes
    for node in nodes:
        assert "timeout" in node["blocks"], node
        (timeout,) = [c for c in calls(reports[name], "timeout") if c["seq"] == node["seq"] - 1]
        assert timeout["args"] == {
            "time": 60 if name != "no-arm64-agent" else 5,
            "unit": "MINUTES",
            "activity": False,
        }


def test_a_platform_without_an_agent_fails_naming_its_label(
    fake: tuple[Path, dict[str, Any]],
) -> None:
    _, reports = fake
    report = reports["no-arm64-agent"]
    assert report["result"] == "FAILURE" and report["errorClass"] == "hudson.AbortException"
    assert (
        "no agent with label 'arm64' came online for linux/arm64 within 5 minutes"
        in (report["error"])
    )
    assert "allowEmulation: '<label>'" in report["error"]
    (waiting,) = [c for c in calls(report, "node") if c.get("status") == "WAITING"]
    assert waiting["args"]["label"] == "arm64" and waiting["branch"] == "linux/arm64"
    # Jenkins' queue message quotes the label in typographic quotes.
    assert "There are no nodes with the label \u2018arm64\u2019" in report["log"]
    assert "Cancelling nested steps due to timeout" in report["log"]
    assert not merge_calls(report)


def test_a_fallback_label_builds_under_emulation(fake: tuple[Path, dict[str, Any]]) -> None:
    root, reports = fake
    report = reports["fallback-label"]
    assert report["result"] == "SUCCESS", explain(report)
    arm = [c for c in calls(report, "node") if c["branch"] == "linux/arm64"]
    assert [(c["args"]["label"], c["agent"], c.get("status")) for c in arm] == [
        ("arm64", None, "WAITING"),
        ("qemu", "qemu-1", "SUCCESS"),
    ]
    assert (
        "no native agent for linux/arm64 (label 'arm64'); building it under emulation"
        in (report["log"])
    )
    tools = tool_calls(root / "fallback-label.tools.log")
    builds = [t for t in tools if t.tool == "buildah" and t.args.startswith("build ")]
    assert {(t.platform, t.node) for t in builds} == {
        ("linux/amd64", "amd-1"),
        ("linux/arm64", "qemu-1"),
    }


def test_a_lost_agent_is_retried_on_another(fake: tuple[Path, dict[str, Any]]) -> None:
    root, reports = fake
    report = reports["agent-lost"]
    assert report["result"] == "SUCCESS", explain(report)
    (retry,) = [c for c in calls(report, "retry") if c["branch"] == "linux/arm64"]
    assert retry["args"] == {"count": 2, "conditions": ["agent", "nonresumable"]}
    assert retry["retried"] == 1
    arm = [c["agent"] for c in calls(report, "node") if c["branch"] == "linux/arm64"]
    assert arm == ["arm-1", "arm-2"]
    assert "Agent arm-1 was lost" in report["log"]
    tools = tool_calls(root / "agent-lost.tools.log")
    assert [
        t.node
        for t in tools
        if t.tool == "buildah" and t.args.startswith("build ") and t.platform == "linux/arm64"
    ] == ["arm-2"]


def test_a_build_that_fails_is_not_retried(fake: tuple[Path, dict[str, Any]]) -> None:
    _, reports = fake
    report = reports["arm64-build-fails"]
    assert all("retried" not in c for c in calls(report, "retry"))
    assert len([c for c in calls(report, "node") if c["branch"] == "linux/arm64"]) == 1


def test_milestone_before_the_merge_and_a_lock_per_image(
    fake: tuple[Path, dict[str, Any]],
) -> None:
    _, reports = fake
    report = reports["happy"]
    (milestone,) = calls(report, "milestone")
    assert milestone["branch"] is None and milestone["args"]["label"] == f"archfleet merge {IMAGE}"
    (parallel,) = calls(report, "parallel")
    merge_node = next(c for c in calls(report, "node") if "merge multi-arch index" in c["stages"])
    assert parallel["end"] < milestone["seq"] < merge_node["seq"]
    (lock,) = calls(report, "lock")
    assert lock["args"] == {"resource": f"archfleet {IMAGE}"}
    (merge,) = merge_calls(report)
    assert "lock" in merge["blocks"] and lock["seq"] < merge["seq"] < lock["end"]


def test_an_older_build_never_moves_a_tag_after_a_newer_one(
    fake: tuple[Path, dict[str, Any]],
) -> None:
    root, reports = fake
    newer, older = reports["release-build-2"], reports["release-build-1"]
    assert newer["result"] == "SUCCESS", explain(newer)
    assert len(merge_calls(newer)) == 1
    # Build #1 built, but the milestone cancelled it before its merge (NOT_BUILT).
    assert older["result"] == "NOT_BUILT" or "NOT_BUILT" in (older["error"] or "")
    assert "Canceled since build #2 already got here" in older["log"]
    assert not merge_calls(older)
    tools = tool_calls(root / "release-build-1.tools.log")
    assert not [t for t in tools if t.tool == "archfleet" and MERGE_MARK in t.args]


def test_without_lockable_resources_the_merge_runs_unlocked(
    fake: tuple[Path, dict[str, Any]],
) -> None:
    _, reports = fake
    report = reports["no-lockable-resources"]
    assert report["result"] == "SUCCESS", explain(report)
    assert not calls(report, "lock") and len(merge_calls(report)) == 1
    assert (
        "the Lockable Resources plugin is not installed: merging without the lock"
        in (report["log"])
    )


def test_no_credentials_are_bound_when_nothing_is_pushed(
    fake: tuple[Path, dict[str, Any]],
) -> None:
    _, reports = fake
    report = reports["feature-branch-no-push"]
    assert returned(report)["pushed"] is False
    assert not calls(report, "withCredentials")
    # ... while a pushing run with the same credentialsId binds them for builds and merge, and
    # for the preflight's check-bases login (a private docker config for the image's registry).
    assert len(calls(reports["happy"], "withCredentials")) == 4


@pytest.mark.parametrize("name", ["happy", "image", "feature-branch-no-push", "agent-lost"])
def test_no_file_is_written_inside_the_workspace(
    fake: tuple[Path, dict[str, Any]], name: str
) -> None:
    root, reports = fake
    report = reports[name]
    source = sorted(str(p.relative_to(root / "source")) for p in (root / "source").rglob("*"))
    workspaces = {c["workspace"] for c in calls(report, "node") if c.get("workspace")}
    assert workspaces
    for workspace in workspaces:
        ws = Path(workspace)
        # Only what checkout brought (or nothing, on the merge agent's own workspace).
        assert sorted(str(p.relative_to(ws)) for p in ws.rglob("*")) in (source, []), ws
        # The work files lived in <ws>@tmp and are gone.
        tmp = Path(f"{ws}@tmp")
        assert not tmp.exists() or list(tmp.rglob("*")) == [], list(tmp.rglob("*"))
    for write in calls(report, "writeFile"):
        assert not Path(write["args"]["file"]).is_relative_to(write["args"]["workspace"]), write
        assert Path(write["args"]["file"]).is_absolute() and "@tmp/" in write["args"]["file"]


def test_the_buildx_guard_checks_the_builder_not_only_the_agent(
    fake: tuple[Path, dict[str, Any]],
) -> None:
    root, reports = fake
    report = reports["buildx-remote-builder"]
    assert report["result"] == "FAILURE"
    assert (
        "linux/arm64 must build natively, but buildx builder 'fake-builder' runs on linux/amd64"
        in (report["error"])
    )
    tools = tool_calls(root / "buildx-remote-builder.tools.log")
    assert not [
        t for t in tools if t.args.startswith("buildx build") and t.platform == "linux/arm64"
    ]
    # The guard ran first in the branch: before checkout.
    arm = [c for c in report["calls"] if c["branch"] == "linux/arm64"]
    assert not [c for c in arm if c["name"] == "checkout"]
    inspect = [c for c in arm if c["name"] == "sh" and "buildx inspect" in c["args"]["script"]]
    assert len(inspect) == 1


def test_the_harness_itself(fake: tuple[Path, dict[str, Any]]) -> None:
    _, reports = fake
    report = reports["harness-selftest"]
    messages = [c["args"]["message"] for c in calls(report, "echo")]
    assert messages == [
        "exists=true",
        "path=/nonexistent",
        "status=0",
        "token-length=6",
        "unstashed=hello",
        "after-delete=false",
    ]
    agents = [(c["args"]["label"], c["agent"]) for c in calls(report, "node")]
    assert agents[:2] == [("linux && !arm64", "amd-1"), ("arm64 || riscv64", "arm-1")]
    # failFast: the failing branch fails the parallel step and interrupts its sibling at once.
    assert report["result"] == "FAILURE" and report["error"] == "script returned exit code 3"
    statuses = {c["args"]["name"]: c["status"] for c in calls(report, "branch")}
    assert statuses == {"fails": "FAILURE", "slow": "FAILURE"}
    assert "interrupted (failFast" in report["log"]


# ------------------------------------------------------------------ the tool: preflight, image


def stage_calls(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Every call made inside the stage `name`."""
    return [c for c in report["calls"] if name in c["stages"]]


def first_build_seq(report: dict[str, Any]) -> int:
    """The sequence number at which the first build agent was asked for (or never)."""
    return min((c["seq"] for c in calls(report, "node") if c["branch"]), default=10**9)


def workspace_of(report: dict[str, Any], agent: str) -> Path:
    (path,) = {c["workspace"] for c in calls(report, "node") if c["agent"] == agent}
    return Path(path)


def test_preflight_checks_the_tool_where_the_merge_runs_before_any_build(
    fake: tuple[Path, dict[str, Any]],
) -> None:
    root, reports = fake
    report = reports["happy"]
    assert report["result"] == "SUCCESS", explain(report)
    preflight = stage_calls(report, "archfleet preflight")
    # On the merge label, outside any build branch, and done before any build agent is taken.
    (node,) = [c for c in preflight if c["name"] == "node"]
    assert node["args"]["label"] == "amd64" and node["branch"] is None
    labels = [c["args"]["label"] for c in preflight if c["name"] == "sh"]
    assert labels == [
        "prepare preflight work directory",
        "registry login for the tool image",
        "archfleet --version",
        "archfleet check-bases",
        "remove preflight work directory and registry login",
    ]
    assert all(c["container"] is None for c in preflight if c["name"] == "sh")
    assert max(c.get("end", c["seq"]) for c in preflight) < first_build_seq(report)
    assert (
        f"multiArchBuild: archfleet {__version__} on agent 'amd-1' (label 'amd64')"
        in (report["log"])
    )
    # The merge checks again, where it runs (another agent of that label may differ).
    merge_stage = stage_calls(report, "merge multi-arch index")
    labels = [c["args"]["label"] for c in merge_stage if c["name"] == "sh"]
    assert labels == [
        "prepare merge work directory",
        "archfleet --version",
        "archfleet merge-manifest",
        "remove merge work directory and registry login",
    ]
    tools = tool_calls(root / "happy.tools.log")
    assert [t.args for t in tools if t.tool == "archfleet"][:1] == ["--version"]


def test_check_bases_runs_in_the_preflight_before_any_build(
    fake: tuple[Path, dict[str, Any]],
) -> None:
    """Issue 16 item 2 (FAKE archfleet check-bases, tests/groovy/shims/fake-tool): on the merge
    agent, on the checked-out Dockerfile, with the build args as names only (values from the
    environment) and the image registry's login as a private docker config."""
    root, reports = fake
    report = reports["happy"]
    assert report["result"] == "SUCCESS", explain(report)
    preflight = stage_calls(report, "archfleet preflight")
    assert [c["name"] for c in preflight if c["name"] == "checkout"] == ["checkout"]
    (bases,) = [c for c in preflight if c["name"] == "sh" and "check-bases" in c["args"]["label"]]
    assert bases["seq"] < first_build_seq(report)
    tools = tool_calls(root / "happy.tools.log")
    (run,) = [t for t in tools if t.tool == "archfleet" and t.args.startswith("check-bases")]
    assert run.args == (
        "check-bases --platforms linux/amd64,linux/arm64 --build-platform native "
        "--file ./Dockerfile --build-arg NOTE --build-arg VERSION"
    )
    assert run.node == "amd-1" and run.container == "-"
    values = [t.args for t in tools if t.tool == "archfleet" and "build-arg-env" in t.args]
    assert values == ["build-arg-env NOTE=two words", "build-arg-env VERSION=1.4.0"]
    # The push login reaches it only through DOCKER_CONFIG (archfleet would send
    # REGISTRY_USER/REGISTRY_PASSWORD to every base's registry).
    assert (run.user, run.password_hash) == (USER, SECRET_HASH)
    assert "BASE\tPLATFORM\tSTATUS" in report["log"]


def test_a_base_without_arm64_fails_before_any_build(fake: tuple[Path, dict[str, Any]]) -> None:
    root, reports = fake
    report = reports["base-lacks-arm64"]
    assert report["result"] == "FAILURE"
    assert (
        f"a base image of ./Dockerfile does not offer every platform of linux/amd64,linux/arm64 "
        f"(archfleet check-bases, before any build): base {AMD64_ONLY_BASE} (stage 0) does not "
        "offer linux/arm64" in report["error"]
    )
    assert first_build_seq(report) == 10**9  # no build agent was ever asked for
    tools = tool_calls(root / "base-lacks-arm64.tools.log")
    assert not [t for t in tools if t.tool in ("buildah", "skopeo", "docker")]
    # The work directory with the login was removed all the same.
    labels = [c["args"]["label"] for c in calls(report, "sh")]
    assert labels[-1] == "remove preflight work directory and registry login"


def test_check_bases_false_skips_the_check(fake: tuple[Path, dict[str, Any]]) -> None:
    root, reports = fake
    report = reports["merge-fails"]
    preflight = stage_calls(report, "archfleet preflight")
    assert [c["args"]["label"] for c in preflight if c["name"] == "sh"] == ["archfleet --version"]
    tools = tool_calls(root / "merge-fails.tools.log")
    assert not [t for t in tools if t.args.startswith("check-bases")]


def test_the_merge_writes_the_oci_annotations(fake: tuple[Path, dict[str, Any]]) -> None:
    """Issue 16 item 4: source (GIT_URL without its userinfo), revision, created (the harness's
    currentBuild.startTimeInMillis 1764732645123, as RFC 3339 UTC) reach merge-manifest."""
    root, reports = fake
    report = reports["happy"]
    assert report["result"] == "SUCCESS", explain(report)
    (merge,) = [
        t.args for t in tool_calls(root / "happy.tools.log") if t.args.startswith("merge-manifest")
    ]
    assert (
        "--annotation org.opencontainers.image.source=https://git.example.com/team/app.git "
        f"--annotation org.opencontainers.image.revision={COMMIT} "
        "--annotation org.opencontainers.image.created=2025-12-03T03:30:45Z"
    ) in merge
    assert "clone-token" not in merge and "clone-token" not in report["log"]


def test_merge_and_verify_run_in_the_tool_image(fake: tuple[Path, dict[str, Any]]) -> None:
    """archfleetImage: Docker Pipeline's docker.image(...).inside, through the stand-in
    (tests/groovy/DockerStandIn.groovy) and the FAKE docker engine."""
    root, reports = fake
    report = reports["image"]
    assert report["result"] == "SUCCESS", explain(report)
    ws = workspace_of(report, "amd-1")
    containers = calls(report, "withDockerContainer")
    assert len(containers) == 2  # the preflight's and the merge's
    for container in containers:
        assert container["args"]["image"] == TOOL_IMAGE
        assert container["args"]["args"] == "--network host"
        assert container["args"]["user"] == f"{os.getuid()}:{os.getgid()}"
        assert container["args"]["volumes"] == [str(ws), f"{ws}@tmp"]
        assert container["branch"] is None and container["agent"] == "amd-1"
        # The push secret never reaches `docker run -e`.
        assert not {"REGISTRY_USER", "REGISTRY_PASSWORD", "DOCKER_CONFIG"} & set(
            container["args"]["env"]
        )
    # Inside the image: the version checks, check-bases and the merge; nothing of the builds.
    inside = [c for c in calls(report, "sh") if c["container"]]
    assert [c["args"]["label"] for c in inside] == [
        "archfleet --version",
        "archfleet check-bases",
        "archfleet --version",
        "archfleet merge-manifest",
    ]
    assert all(c["container"] == TOOL_IMAGE for c in inside)
    assert all(c["exec"][1] == "exec" and Path(c["exec"][0]).name == "docker" for c in inside)
    assert not [c for c in calls(report, "sh") if c["branch"] and c["container"]]
    tools = tool_calls(root / "image.tools.log")
    archfleet = [t for t in tools if t.tool == "archfleet"]
    assert [t.args.split()[0] for t in archfleet] == [
        "--version",
        "check-bases",
        "--version",
        "merge-manifest",
        "verify-manifest",
    ]
    assert all(t.container == TOOL_IMAGE for t in archfleet)
    assert not [t for t in tools if t.tool in ("buildah", "skopeo") and t.container != "-"]
    # The push login reached archfleet as the private docker config, not as variables: no
    # `docker exec` command line (what the agent's process list shows) carries it.
    merger = [t for t in archfleet if t.args.split()[0] != "--version"]
    assert all(t.user == USER and t.password_hash == SECRET_HASH for t in merger)
    execs = [" ".join(c["exec"]) for c in inside]
    assert all("REGISTRY_PASSWORD" not in e and "REGISTRY_USER" not in e for e in execs)
    assert [e.count(f"--env DOCKER_CONFIG={ws}@tmp/archfleet-merge/registry ") for e in execs] == [
        0,
        0,
        0,
        1,
    ]
    # check-bases got the login the same way, in the preflight's own directory.
    assert [
        e.count(f"--env DOCKER_CONFIG={ws}@tmp/archfleet-preflight/registry ") for e in execs
    ] == [0, 1, 0, 0]
    # ... written on the agent under withCredentials, and removed after the merge.
    merge_stage = stage_calls(report, "merge multi-arch index")
    (login,) = [c for c in merge_stage if c["name"] == "withCredentials"]
    written = next(c for c in merge_stage if c["name"] == "sh" and c["seq"] > login["seq"])
    assert written["args"]["label"] == "registry login for the tool image"
    assert written["container"] is None and written["seq"] < login["end"]
    removed = [c for c in merge_stage if c["name"] == "sh"][-1]
    assert (
        removed["args"]["label"] == "remove merge work directory and registry login"
        and removed["container"] is None
    )
    assert not (Path(f"{ws}@tmp") / "archfleet-merge").exists()
    # The image was pulled once (the merge found it local); every container was removed.
    docker = [t.args.split()[0] for t in tools if t.tool == "docker"]
    assert docker.count("pull") == 1 and docker.count("run") == 2
    assert docker.count("stop") == 2 and docker.count("rm") == 2
    assert list((root / "engines" / "image" / "containers").iterdir()) == []
    result = returned(report)
    assert result["pushed"] is True and result["tags"] == [f"{IMAGE}:1.4.0"]
    (merge,) = [t for t in archfleet if t.args.startswith(MERGE_MARK)]
    assert result["index"] == fake_digest(f"index {merge.args}")


def test_a_private_tool_image_is_pulled_with_its_own_login(
    fake: tuple[Path, dict[str, Any]],
) -> None:
    root, reports = fake
    report = reports["image-private"]
    assert report["result"] == "SUCCESS", explain(report)
    registries = calls(report, "docker.withRegistry")
    assert [r["args"] for r in registries] == [
        {"url": "https://registry.example.com", "credentialsId": "image-pull"}
    ] * 2
    tools = tool_calls(root / "image-private.tools.log")
    logins = [t.args for t in tools if t.tool == "docker" and t.args.startswith("login")]
    pull_hash = hashlib.sha256(PULL_SECRET.encode()).hexdigest()
    assert (
        logins == [f"login -u {PULL_USER} -p sha256={pull_hash} https://registry.example.com"] * 2
    )
    # The pull login is scoped to the pull: the containers and archfleet never see it.
    for container in calls(report, "withDockerContainer"):
        assert container["seq"] > max(r["end"] for r in registries if r["seq"] < container["seq"])
        assert "DOCKER_CONFIG" not in container["args"]["env"]
    merger = [
        t
        for t in tools
        if t.tool == "archfleet" and t.args != "--version" and "build-arg-env" not in t.args
    ]
    assert merger and all(t.user == USER and t.password_hash == SECRET_HASH for t in merger)
    assert PULL_SECRET not in report["log"] and PULL_SECRET not in json.dumps(report["calls"])
    # Its login directory (docker-commons: a fresh one in the workspace's @tmp) is gone.
    ws = workspace_of(report, "amd-1")
    assert list(Path(f"{ws}@tmp").iterdir()) == []


def test_a_private_tool_image_without_its_login_fails_before_any_build(
    fake: tuple[Path, dict[str, Any]],
) -> None:
    _, reports = fake
    report = reports["image-private-without-login"]
    assert report["result"] == "FAILURE"
    assert "unauthorized: authentication required" in report["log"]
    assert not calls(report, "parallel") and not calls(report, "withDockerContainer")
    assert first_build_seq(report) == 10**9


TOOL_PROBLEMS: dict[str, list[str]] = {
    "image-wrong-version": [
        f"archfleet in image '{TOOL_REPOSITORY}:0.0.9' on agent 'amd-1' (label 'amd64') is "
        f"version 0.0.9, but this library is version {__version__}",
        f"(expected {__version__}, found 0.0.9)",
        f"archfleetImage must be the archfleet tool image of version {__version__}",
    ],
    "image-without-archfleet": [
        "archfleet not found in image 'registry.example.com/base:1' on agent 'amd-1'",
        "no command 'archfleet' on its PATH",
        "/opt/archfleet/bin",
    ],
    "agent-wrong-version": [
        f"archfleet on agent 'amd-1' (label 'amd64') is version 0.0.9, but this library is "
        f"version {__version__} (expected {__version__}, found 0.0.9)",
        f"archfleetImage: '<registry>/<path>/archfleet:{__version__}'",
        "merge-tool role",
    ],
    "agent-without-archfleet": [
        "archfleet not found on agent 'amd-1' (label 'amd64'): no command 'archfleet' on its PATH",
        f"Provide archfleet {__version__} to the merge: archfleetImage:",
        "docker.image(...).inside",
        "merge-tool role",
        "ARCHFLEET property",
    ],
    "agent-archfleet-fails": [
        "'false --version' failed on agent 'amd-1' (label 'amd64') (exit code 1, no output)",
    ],
}


@pytest.mark.parametrize("name", sorted(TOOL_PROBLEMS))
def test_a_missing_or_wrong_tool_fails_before_any_build(
    fake: tuple[Path, dict[str, Any]], name: str
) -> None:
    root, reports = fake
    report = reports[name]
    assert report["result"] == "FAILURE"
    assert report["errorClass"] == "hudson.AbortException", explain(report)
    assert report["error"].startswith("multiArchBuild: ")
    for fragment in TOOL_PROBLEMS[name]:
        assert fragment in report["error"], report["error"]
    # One node (the merge agent's preflight); no build branch, no builder ran, no push.
    assert [c["branch"] for c in calls(report, "node")] == [None]
    assert not calls(report, "parallel")
    tools = tool_calls(root / f"{name}.tools.log")
    assert not [t for t in tools if t.tool in ("buildah", "skopeo", "uname")]
    assert not [t for t in tools if t.tool == "archfleet" and t.args != "--version"]
    engine = root / "engines" / name / "containers"
    assert not engine.exists() or list(engine.iterdir()) == []


def test_an_image_entrypoint_gets_the_plugins_warning(fake: tuple[Path, dict[str, Any]]) -> None:
    _, reports = fake
    report = reports["image-with-entrypoint"]
    assert report["result"] == "SUCCESS", explain(report)
    assert report["log"].count("The container started but didn't run the expected command") == 2
    assert "--entrypoint=''" in report["log"]


def test_no_push_needs_no_tool(fake: tuple[Path, dict[str, Any]]) -> None:
    root, reports = fake
    report = reports["image-no-push"]
    assert report["result"] == "SUCCESS", explain(report)
    assert returned(report)["pushed"] is False
    assert [c for c in calls(report, "node") if c["branch"] is None] == []
    assert not [t for t in tool_calls(root / "image-no-push.tools.log") if t.tool == "docker"]


# ------------------------------------------------------------------ scripts as Jenkins runs them


@pytest.fixture(scope="module")
def noexec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Runs on agents whose workspaces are on a tmpfs mounted noexec (a hardened agent), and the
    shebang Jenkinsfile on an ordinary one."""
    root = tmp_path_factory.mktemp("jenkins-noexec")
    mount = root / "noexec"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "noexec,nosuid,size=256m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a noexec tmpfs (root needed): {done.stderr.strip()}")
    try:
        scenarios = [
            scenario("noexec-build", root, agentsRoot=str(mount / "agents")),
            scenario(
                "noexec-shebang",
                root,
                step=None,
                jenkinsfile=str(GROOVY_DIR / "shebang" / "Jenkinsfile"),
                agentsRoot=str(mount / "agents-shebang"),
            ),
            scenario(
                "shebang", root, step=None, jenkinsfile=str(GROOVY_DIR / "shebang" / "Jenkinsfile")
            ),
        ]
        for s in scenarios:
            if s.get("step") is None:
                del s["step"]
            s["env"]["BRANCH_IS_PRIMARY"] = "true"
            s["env"].setdefault("SHIM_LOG", str(root / f"{s['name']}.tools.log"))
        yield root, run_pipelines(scenarios, root / "runs", timeout=240)
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_the_harness_runs_a_shebang_script_by_exec_like_durable_task(
    noexec: tuple[Path, dict[str, Any]],
) -> None:
    _, reports = noexec
    report = reports["shebang"]
    assert report["result"] == "SUCCESS", explain(report)
    messages = [c["args"]["message"] for c in calls(report, "echo")]
    # The python interpreter of the shebang ran it (`sh -xe` could not have); the plain one
    # ran under sh.
    assert messages == ["shebang=python 3", "plain=shell script.sh"]
    # On a noexec workspace, exec'ing the script file is refused (exit 126, Permission denied).
    refused = reports["noexec-shebang"]
    assert refused["result"] == "FAILURE"
    assert refused["error"] == "script returned exit code 126" or "Permission denied" in (
        refused["error"] + refused["log"]
    ), explain(refused)


def test_the_library_runs_on_a_noexec_workspace(noexec: tuple[Path, dict[str, Any]]) -> None:
    _, reports = noexec
    report = reports["noexec-build"]
    assert report["result"] == "SUCCESS", explain(report)
    assert returned(report)["pushed"] is True and len(merge_calls(report)) == 1
    # Every script ran through `sh -xe` (none has a shebang) and turned the trace off first.
    for call in calls(report, "sh"):
        assert not call["args"]["script"].startswith("#!")
    assert "+ set +x" in report["log"]
    assert "REGISTRY_PASSWORD" not in report["log"].replace("$REGISTRY_PASSWORD", "")


# ------------------------------------------------------------------ executed for real


@dataclass(frozen=True)
class AuthRegistry:
    registry: LocalRegistry
    authfile: Path

    def head(self, repository: str, reference: str) -> str | None:
        response = requests.head(
            f"{self.registry.url}/v2/{repository}/manifests/{reference}",
            auth=(USER, SECRET),
            headers={"Accept": INDEX_ACCEPT},
            timeout=10,
        )
        return response.headers.get("Docker-Content-Digest") if response.ok else None

    def tags(self, repository: str) -> list[str]:
        response = requests.get(
            f"{self.registry.url}/v2/{repository}/tags/list", auth=(USER, SECRET), timeout=10
        )
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return sorted(response.json().get("tags") or [])


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    workdir = tmp_path_factory.mktemp("jenkins-registry")
    registry = start_registry(
        workdir, htpasswd=write_htpasswd(workdir / "htpasswd", {USER: SECRET})
    )
    authfile = workdir / "auth.json"
    token = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    authfile.write_text(json.dumps({"auths": {registry.address: {"auth": token}}}))
    authfile.chmod(0o600)
    try:
        yield AuthRegistry(registry, authfile)
    finally:
        registry.stop()


def lab_agent(name: str, labels: list[str], root: Path) -> dict[str, Any]:
    """A local agent with its own buildah storage (as a separate machine would have)."""
    home = root / "agents-state" / name
    (home / "tmp").mkdir(parents=True)
    conf = home / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{home / "root"}"\nrunroot = "{home / "run"}"\n'
    )
    return {
        "name": name,
        "labels": labels,
        "env": {
            "CONTAINERS_STORAGE_CONF": str(conf),
            "BUILDAH_ISOLATION": "chroot",
            "TMPDIR": str(home / "tmp"),
            # How these agents get archfleet: this checkout, run by the test's interpreter.
            "ARCHFLEET": f"{sys.executable} -m toolkit",
            "PYTHONPATH": str(REPO),
        },
    }


def mounts_under(path: Path) -> list[str]:
    prefix = f"{path.resolve()}/"
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines if line.split()[4].startswith(prefix)]


def test_jenkinsfile_builds_merges_and_verifies_for_real(
    auth_registry: AuthRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_binfmt("arm64")
    source = tmp_path / "source"
    app = source / "app"
    for arch in ("amd64", "arm64"):
        (app / f"bin-{arch}").mkdir(parents=True)
        shutil.copy(busybox_rootfs(arch) / "bin" / "busybox", app / f"bin-{arch}" / "busybox")
    shutil.copy(GROOVY_DIR / "lab" / "Dockerfile", app / "Dockerfile")
    address = auth_registry.registry.address
    agents = [
        lab_agent("local-amd64", ["linux", "amd64"], tmp_path),
        lab_agent("local-arm64", ["linux", "arm64"], tmp_path),
    ]
    common = {
        "source": str(source),
        "agents": agents,
        "credentials": {"lab-registry": {"username": USER, "password": SECRET}},
        "jenkinsfile": str(GROOVY_DIR / "lab" / "Jenkinsfile"),
    }
    scenarios = [
        {
            "name": "lab",
            "env": {"BRANCH_NAME": "main", "BRANCH_IS_PRIMARY": "true"},
            "params": {"IMAGE": f"{address}/team/app", "ALLOW_EMULATION": True},
            **common,
        },
        # Same pipeline without allowEmulation: the arm64 branch lands on an x86 machine.
        {
            "name": "lab-guarded",
            "env": {"BRANCH_NAME": "main", "BRANCH_IS_PRIMARY": "true"},
            "params": {"IMAGE": f"{address}/team/guarded", "ALLOW_EMULATION": False},
            **common,
        },
        # A feature branch: push is off, so no credential is bound and buildah has no login for
        # the registry (which wants one for every request) while the cache is on by default.
        {
            "name": "lab-no-push",
            "env": {"BRANCH_NAME": "feature/x"},
            # Another build arg: the RUN step misses the agents' local layers, so buildah asks
            # the registry cache for it (and is refused: 401 without a login).
            "params": {
                "IMAGE": f"{address}/team/app",
                "ALLOW_EMULATION": True,
                "GREETING": "hello from a branch",
            },
            **common,
        },
    ]
    reports = run_pipelines(scenarios, tmp_path / "runs", timeout=300)

    report = reports["lab"]
    assert report["result"] == "SUCCESS", explain(report)
    result = returned(report)
    digests = result["digests"]
    assert set(digests) == {"linux/amd64", "linux/arm64"}
    index = result["index"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", index)
    # Both tags hold the index; child tags protect the per-arch images; nothing else is tagged.
    assert auth_registry.head("team/app", "1.0.0") == index
    assert auth_registry.head("team/app", "latest") == index
    assert auth_registry.tags("team/app") == sorted(
        ["1.0.0", "latest", "1.0.0-amd64", "1.0.0-arm64", "latest-amd64", "latest-arm64"]
    )
    # skopeo, a third-party client, gets the right image for each architecture.
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_registry.authfile))
    for platform, digest in digests.items():
        assert resolved_digest(f"{address}/team/app:1.0.0", platform) == digest
    # The merge was archfleet's, once, after both branches; verify with --check-binaries passed.
    (merge,) = merge_calls(report)
    builds = [b for b in calls(report, "branch") if not b["args"]["name"].startswith("smoke ")]
    assert len(builds) == 2 and merge["seq"] > max(b["end"] for b in builds)
    assert "verify" in report["log"] and "WARNING" in report["log"]
    assert SECRET not in report["log"]
    assert all(SECRET not in c["args"]["script"] for c in calls(report, "sh"))
    # The real check-bases ran in the preflight, before any build agent was taken (the lab
    # Dockerfile is FROM scratch: nothing to ask a registry).
    (bases,) = [c for c in calls(report, "sh") if c["args"]["label"] == "archfleet check-bases"]
    assert bases["branch"] is None and bases["seq"] < first_build_seq(report)
    # The real merge-manifest wrote the OCI annotations onto the index.
    fetched = requests.get(
        f"{auth_registry.registry.url}/v2/team/app/manifests/1.0.0",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        auth=(USER, SECRET),
        timeout=10,
    )
    fetched.raise_for_status()
    assert fetched.json()["annotations"] == {
        "org.opencontainers.image.source": "https://git.example.com/team/app.git",
        "org.opencontainers.image.revision": COMMIT,
        "org.opencontainers.image.created": "2025-12-03T03:30:45Z",
    }

    # The smoke run, for real: buildah pulled the index BY DIGEST as each platform on that
    # platform's agent and ran `uname -m` in it (arm64 under QEMU reports aarch64).
    smokes = [c for c in calls(report, "sh") if (c["args"]["label"] or "").startswith("smoke ")]
    assert {(c["args"]["label"], c["agent"], c["exitCode"]) for c in smokes} == {
        ("smoke linux/amd64 (buildah)", "local-amd64", 0),
        ("smoke linux/arm64 (buildah)", "local-arm64", 0),
    }
    assert min(c["seq"] for c in smokes) > merge["seq"]
    assert "smoke run linux/amd64: 'uname -m' -> x86_64" in report["log"]
    assert "smoke run linux/arm64: 'uname -m' -> aarch64" in report["log"]
    assert f"{address}/team/app@{index} as linux/arm64" in report["log"]

    # cache: true on the primary branch: buildah wrote each arch's layers to its own protected
    # cache ref (REPO/ARCH), with the push login (the registry wants it for every request).
    for arch in ("amd64", "arm64"):
        assert auth_registry.tags(f"team/app/buildcache/{arch}"), arch
    assert auth_registry.tags("team/app/buildcache/unprotected-amd64") == []

    # The real buildah, cache on by default, no login: its --cache-from reads were refused
    # (401), which costs a rebuild, not the build; it wrote no cache (no --cache-to), pushed
    # nothing and left the protected cache as the primary branch wrote it.
    no_push = reports["lab-no-push"]
    assert no_push["result"] == "SUCCESS", explain(no_push)
    assert returned(no_push)["pushed"] is False and not calls(no_push, "withCredentials")
    assert "registry cache read only (push is off" in no_push["log"]
    for arch in ("amd64", "arm64"):
        assert auth_registry.tags(f"team/app/buildcache/unprotected-{arch}") == []
    assert auth_registry.tags("team/app") == sorted(
        ["1.0.0", "latest", "1.0.0-amd64", "1.0.0-arm64", "latest-amd64", "latest-arm64"]
    )

    guarded = reports["lab-guarded"]
    assert guarded["result"] == "FAILURE"
    assert "linux/arm64 must build natively" in guarded["error"]
    assert not merge_calls(guarded)
    assert auth_registry.tags("team/guarded") == []
    assert not mounts_under(tmp_path)


# ------------------------------------------------------------------ docker.inside, for real

# A STAND-IN archfleet for the real container (the tool image itself comes from
# ci-templates/image, built elsewhere): it answers --version, prints a digest for merge-manifest,
# and logs each call with its uid, the login it finds in DOCKER_CONFIG (user, sha256 of the
# password, the config.json key), whether REGISTRY_PASSWORD is set, and the image's marker file,
# to .archfleet-standin.log in the working directory (the mounted workspace).
STANDIN_ARCHFLEET = r"""#!/bin/sh
user=- pw=- key=-
config="${DOCKER_CONFIG:-/nonexistent}/config.json"
if [ -r "$config" ]; then
    key=$(sed -n 's/.*{"\([^"]*\)": {"auth".*/\1/p' "$config")
    login=$(sed -n 's/.*"auth": *"\([^"]*\)".*/\1/p' "$config" | base64 -d)
    user="${login%%:*}"
    pw=$(printf '%s' "${login#*:}" | sha256sum | cut -d' ' -f1)
fi
printf 'image=%s\tuid=%s\tuser=%s\tpw=%s\tkey=%s\tenv-password=%s\t%s\n' \
    "$(cat /etc/standin-image)" "$(id -u)" "$user" "$pw" "$key" "${REGISTRY_PASSWORD:+set}" "$*" \
    >> .archfleet-standin.log
case "${1:-}" in
--version) echo "archfleet @VERSION@" ;;
merge-manifest) printf 'sha256:%s\n' "$(printf '%s' "$*" | sha256sum | cut -d' ' -f1)" ;;
esac
"""
BUSYBOX_APPLETS = ("sh", "cat", "id", "sed", "head", "base64", "sha256sum", "cut", "mkdir", "rm")


def standin_image(engine: DockerEngine, reference: str, version: str, workdir: Path) -> None:
    """A busybox image whose archfleet is STANDIN_ARCHFLEET of `version`, no ENTRYPOINT."""
    root = workdir / re.sub(r"[/:@]", "_", reference)
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "tmp").mkdir()
    shutil.copy(busybox_rootfs("amd64") / "bin" / "busybox", root / "bin" / "busybox")
    for applet in BUSYBOX_APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "standin-image").write_text(reference + "\n")
    tool = root / "opt" / "archfleet" / "bin" / "archfleet"
    tool.parent.mkdir(parents=True)
    tool.write_text(STANDIN_ARCHFLEET.replace("@VERSION@", version))
    tool.chmod(0o755)
    tarball = workdir / f"{root.name}.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
    engine.docker(
        "import", "--change", "ENV PATH=/opt/archfleet/bin:/bin", "-", reference, input_file=tarball
    )


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    """A private dockerd (toolkit/lab/docker_engine.py: the GUIDE's recipe), stopped by pid."""
    with docker_engine() as running:
        yield running


def docker_agent(name: str, labels: list[str], root: Path, engine: DockerEngine) -> dict[str, Any]:
    """A fake-builder agent whose `docker` is Debian's client talking to `engine`."""
    shims = root / "shims-real-docker"
    if not shims.exists():
        shims.mkdir(parents=True)
        for shim in SHIMS.iterdir():
            if shim.name != "docker":
                (shims / shim.name).symlink_to(shim)
        (shims / "docker").symlink_to(DOCKER_CLIENT)
    agent = fake_agent(
        name, labels, "x86_64" if "amd64" in labels else "aarch64", root / "docker.tools.log", shims
    )
    return with_agent_env(agent, DOCKER_HOST=engine.host)


def standin_calls(workspace: Path) -> list[dict[str, str]]:
    rows = []
    for line in (workspace / ".archfleet-standin.log").read_text().splitlines():
        *fields, args = line.split("\t")
        rows.append({**dict(f.split("=", 1) for f in fields), "args": args})
    return rows


def test_merge_runs_inside_the_image_on_a_real_docker_engine(
    engine: DockerEngine, auth_registry: AuthRegistry, tmp_path: Path
) -> None:
    """docker.image(...).inside for real: the stand-in (tests/groovy/DockerStandIn.groovy) runs
    `docker run … cat`, `docker exec` and `docker login`/`pull` with Debian's docker 20.10
    against a dockerd of this test, and the image comes from a loopback registry with basic
    auth (archfleetImageCredentialsId). The builds use the FAKE builders, and archfleet in the
    image is a STAND-IN script (the real tool image is built from ci-templates/image and not
    available to this test): what is real here is the container — the workspace and its @tmp
    mounted at the same paths, the uid, the environment that reaches `docker exec`, the private
    docker config holding the push login, and the clean-up."""
    address = auth_registry.registry.address
    tool_image = f"{address}/platform/archfleet:{__version__}"
    standin_image(engine, tool_image, __version__, tmp_path / "images")
    config, password = tmp_path / "push-config", tmp_path / "password"
    config.mkdir()
    password.write_text(SECRET)
    password.chmod(0o600)
    engine.docker(
        "--config",
        str(config),
        "login",
        "-u",
        USER,
        "--password-stdin",
        address,
        input_file=password,
    )
    engine.docker("--config", str(config), "push", tool_image)
    engine.docker("rmi", tool_image)  # so that the step has to pull it, with its login
    standin_image(engine, "local/archfleet-standin:0.0.9", "0.0.9", tmp_path / "images")

    source = tmp_path / "source"
    source.mkdir()
    (source / "Dockerfile").write_text("FROM scratch\n")
    common: dict[str, Any] = {
        "source": str(source),
        "env": {
            "BRANCH_NAME": "main",
            "BRANCH_IS_PRIMARY": "true",
            "SHIM_LOG": str(tmp_path / "docker.tools.log"),
        },
        "agents": [
            docker_agent("amd-1", ["linux", "amd64"], tmp_path, engine),
            docker_agent("arm-1", ["linux", "arm64"], tmp_path, engine),
        ],
        "credentials": {
            "registry": {"username": USER, "password": SECRET},
            "image-pull": {"username": USER, "password": SECRET},
        },
    }
    scenarios = [
        {
            "name": "real-inside",
            **common,
            "step": with_args(
                credentialsId="registry",
                imageTags=["1.0.0"],
                tagLatest=False,
                archfleetImage=tool_image,
                archfleetImageCredentialsId="image-pull",
                # No bridge on this engine; the stand-in needs no network.
                archfleetImageArgs="--network none",
            ),
        },
        {
            "name": "real-inside-wrong-version",
            **common,
            "step": with_args(archfleetImage="local/archfleet-standin:0.0.9"),
        },
    ]
    reports = run_pipelines(scenarios, tmp_path / "runs", timeout=300)

    report = reports["real-inside"]
    assert report["result"] == "SUCCESS", explain(report)
    ws = workspace_of(report, "amd-1")
    rows = standin_calls(ws)
    assert [r["args"].split()[0] for r in rows] == [
        "--version",
        "check-bases",
        "--version",
        "merge-manifest",
        "verify-manifest",
    ]
    # In the image (its marker file), as the agent's uid, in the mounted workspace.
    assert {r["image"] for r in rows} == {tool_image}
    assert {r["uid"] for r in rows} == {str(os.getuid())}
    # check-bases and the merge found the push login in the private docker config (the image
    # registry's pull login never reached the container), and no password in their environment.
    merge_rows = [r for r in rows if r["args"] != "--version"]
    assert all(
        (r["user"], r["pw"], r["key"], r["env-password"])
        == (USER, SECRET_HASH, "registry.example.com", "")
        for r in merge_rows
    )
    assert all(r["user"] == "-" for r in rows if r["args"] == "--version")
    # Pulled from the registry through docker.withRegistry's `docker login`, then kept local.
    assert [c["args"]["credentialsId"] for c in calls(report, "withDockerRegistry")] == [
        "image-pull"
    ] * 2
    assert report["log"].count("Login Succeeded") == 2
    engine.docker("image", "inspect", tool_image)
    result = returned(report)
    (merge,) = [r for r in rows if r["args"].startswith(MERGE_MARK)]
    assert result["index"] == fake_digest(merge["args"])
    # Everything cleaned up: no container, no login directory, no registry config.
    assert engine.docker("ps", "-aq").stdout.strip() == ""
    assert list(Path(f"{ws}@tmp").iterdir()) == []
    assert SECRET not in report["log"] and SECRET not in json.dumps(report["calls"])

    wrong = reports["real-inside-wrong-version"]
    assert wrong["result"] == "FAILURE"
    assert f"(expected {__version__}, found 0.0.9)" in wrong["error"]
    assert [c["branch"] for c in calls(wrong, "node")] == [None]
    assert engine.docker("ps", "-aq").stdout.strip() == ""


# ------------------------------------------------------------------ many images, smoke, cache
# Issue 16 item 1 (images:, discovery), the smoke run and the registry cache, on the same FAKE
# tools (tests/groovy/shims/fake-tool): the builders only log; `archfleet discover-images` in
# the fake is the REAL one (python -m toolkit), run in the agent's checkout; the smoke
# "container" is a stand-in that runs the command on the agent itself.

THREE_IMAGES = {
    "jobs-job-a": ("jobs/job-a", "jobs/job-a/Dockerfile"),
    "jobs-job-b": ("jobs/job-b", "jobs/job-b/Containerfile"),
    "tools-x": ("tools/x", "tools/x/Dockerfile"),
}
PLATFORMS = ("linux/amd64", "linux/arm64")
AGENT_OF = {"linux/amd64": "amd-1", "linux/arm64": "arm-1"}


def three_image_source(root: Path) -> Path:
    """A monorepo: jobs/job-a/Dockerfile, jobs/job-b/Containerfile, tools/x/Dockerfile."""
    source = root / "source-three-images"
    for _, dockerfile in THREE_IMAGES.values():
        path = source / dockerfile
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("FROM scratch\n")
    return source


def image_build_digest(name: str, platform: str) -> str:
    """What the fake builders push with FAKE_DIGEST_BY_IMAGE=1."""
    return fake_digest(f"{IMAGE}/{name} {platform}")


def index_of(merge: ToolCall) -> str:
    """The index digest the FAKE merge-manifest prints for its arguments."""
    return fake_digest(f"index {merge.args}")


def merges_by_image(tools: list[ToolCall]) -> dict[str, ToolCall]:
    found: dict[str, ToolCall] = {}
    for tool in tools:
        if tool.tool == "archfleet" and tool.args.startswith(MERGE_MARK):
            target = re.search(r"--target (\S+)", tool.args)
            assert target, tool.args
            found[target.group(1).rsplit(":", 1)[0]] = tool
    return found


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("jenkins-images")
    source = str(three_image_source(root))
    images = [
        {"name": name, "context": context, "dockerfile": dockerfile}
        for name, (context, dockerfile) in THREE_IMAGES.items()
    ]
    # jobs-job-a without dockerfile: context + '/Dockerfile' is the default.
    images[0].pop("dockerfile")
    scenarios = [
        scenario(
            "images-list",
            root,
            source=source,
            step=with_args(
                images=images, credentialsId="registry", imageTags=["1.4.0"], tagLatest=False
            ),
        ),
        scenario(
            "images-discover",
            root,
            source=source,
            step=with_args(images="discover", imageTags=["1.4.0"], tagLatest=False),
        ),
        scenario(
            "images-discover-no-push",
            root,
            source=source,
            env={"BRANCH_NAME": "feature/x"},
            step=with_args(images="discover"),
        ),
        scenario(
            "images-one-fails",
            root,
            source=source,
            env={
                "BRANCH_NAME": "main",
                "FAKE_FAIL_BUILD": "linux/arm64",
                "FAKE_FAIL_IMAGE": f"{IMAGE}/jobs-job-b",
            },
            step=with_args(images=images, failFast=False),
        ),
        scenario(
            "images-cache-pr",
            root,
            source=source,
            env={"BRANCH_NAME": "PR-42", "CHANGE_ID": "42"},
            step=with_args(images=images[:1], cache=True, push=True),
        ),
        scenario("smoke-buildah", root, step=with_args(smokeCommand="uname -m")),
        scenario(
            "smoke-buildx",
            root,
            step={
                "name": "multiArchBuild",
                "args": {
                    "image": IMAGE,
                    "builder": "buildx",
                    "smokeCommand": "uname -m",
                    "credentialsId": "registry",
                },
            },
        ),
        scenario(
            "smoke-wrong-machine",
            root,
            agents=[
                fake_agent("amd-1", ["linux", "amd64"], "x86_64", root / "smoke-wrong.tools.log"),
                # A native agent whose smoke container says x86_64: the index's arm64 entry
                # is an amd64 image.
                with_agent_env(
                    fake_agent(
                        "arm-1", ["linux", "arm64"], "aarch64", root / "smoke-wrong.tools.log"
                    ),
                    FAKE_SMOKE_MACHINE="x86_64",
                ),
            ],
            env={"BRANCH_NAME": "main", "SHIM_LOG": str(root / "smoke-wrong.tools.log")},
            step=with_args(smokeCommand="uname -m"),
        ),
        scenario(
            "smoke-fails",
            root,
            env={"BRANCH_NAME": "main", "FAKE_FAIL_SMOKE": "linux/arm64"},
            step=with_args(smokeCommand="echo hello"),
        ),
        scenario("cache-main-buildah", root, step=with_args(cache=True)),
        # Nothing passed about the cache: on with buildah (the component's default), off with
        # buildx. A branch that pushes nothing has no login, so it only reads the cache.
        scenario(
            "cache-default-no-push-buildah",
            root,
            env={"BRANCH_NAME": "feature/x"},
            step=with_args(credentialsId="registry"),
        ),
        scenario(
            "cache-default-buildx",
            root,
            step={"name": "multiArchBuild", "args": {"image": IMAGE, "builder": "buildx"}},
        ),
        scenario(
            "cache-buildx-no-push",
            root,
            env={"BRANCH_NAME": "PR-8", "CHANGE_ID": "8"},
            step={
                "name": "multiArchBuild",
                "args": {"image": IMAGE, "builder": "buildx", "cache": True},
            },
        ),
        scenario(
            "images-discover-root",
            root,
            source=source,
            step=with_args(
                images="discover",
                discover={"root": "jobs", "exclude": "job-b"},
                imageTags=["1.4.0"],
                tagLatest=False,
            ),
        ),
        # Values that a shell would run, if they were ever spliced into a command line.
        scenario(
            "images-discover-hostile",
            root,
            source=source,
            env={"BRANCH_NAME": "feature/x"},
            step=with_args(
                images="discover",
                discover={
                    "exclude": ["tools", f"$(touch {root}/pwned-1)", f"`touch {root}/pwned-2`"],
                    "pattern": ["jobs/*/Dockerfile", "jobs/*/Containerfile", "-x'; touch pwned-3"],
                },
            ),
        ),
        scenario(
            "images-discover-missing-root",
            root,
            source=source,
            step=with_args(images="discover", discover={"root": "services"}),
        ),
        scenario(
            "cache-pr-buildx",
            root,
            env={"BRANCH_NAME": "PR-7", "CHANGE_ID": "7"},
            step={
                "name": "multiArchBuild",
                # push: true: a change request that pushes (by digest) writes its own cache ref;
                # one that pushes nothing only reads (cache-default-no-push-buildah).
                "args": {
                    "image": IMAGE,
                    "builder": "buildx",
                    "cache": True,
                    "insecure": True,
                    "push": True,
                },
            },
        ),
        scenario(
            "cache-tag-buildx-own-repository",
            root,
            env={"TAG_NAME": "v1.2.3"},
            step={
                "name": "multiArchBuild",
                "args": {
                    "image": IMAGE,
                    "builder": "buildx",
                    "cache": True,
                    "cacheRepository": "registry.example.com/cache/app",
                },
            },
        ),
    ]
    scenarios.append(
        scenario(
            "monorepo-example",
            root,
            source=source,
            step=None,
            jenkinsfile=str(LIBRARY / "Jenkinsfile.monorepo.example"),
            credentials={"registry-push": {"username": USER, "password": SECRET}},
        )
    )
    del scenarios[-1]["step"]
    for name, (args, _) in BAD_IMAGE_CONFIGS.items():
        scenarios.append(scenario(name, root, step={"name": "multiArchBuild", "args": args}))
    for s in scenarios:
        s["env"].setdefault("SHIM_LOG", str(root / f"{s['name']}.tools.log"))
        if s["env"].get("BRANCH_NAME") == "main":
            s["env"].setdefault("BRANCH_IS_PRIMARY", "true")
        s["env"].setdefault("FAKE_ARCHFLEET_VERSION", __version__)
        s["env"].setdefault("FAKE_DOCKER_IMAGES", str(root / "images"))
        s["env"].setdefault("FAKE_DOCKER_STATE", str(root / "engines" / s["name"]))
        s["env"]["FAKE_DIGEST_BY_IMAGE"] = "1"
        s["env"]["FAKE_PYTHON"] = sys.executable
    return root, run_pipelines(scenarios, root / "runs", timeout=240)


BAD_IMAGE_CONFIGS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "bad-images-name": (
        {"image": IMAGE, "images": [{"name": "Jobs/A", "context": "a"}]},
        ["images[1].name 'Jobs/A' must be one lowercase repository path component"],
    ),
    "bad-images-twice": (
        {"image": IMAGE, "images": [{"name": "a"}, {"name": "a", "context": "b"}]},
        ["the name 'a' is given twice"],
    ),
    "bad-images-with-context": (
        {"image": IMAGE, "images": [{"name": "a"}], "context": "a"},
        ["context belongs in each entry of images"],
    ),
    "bad-images-word": ({"image": IMAGE, "images": "all"}, ["images must be 'discover' or"]),
    "bad-images-key": (
        {"image": IMAGE, "images": [{"name": "a", "file": "a/Dockerfile"}]},
        ["images[1] has unknown key(s) file"],
    ),
    "bad-cache-repository-without-cache": (
        {"image": IMAGE, "builder": "buildx", "cacheRepository": "registry.example.com/cache/app"},
        ["cacheRepository only applies with the cache on: cache: true", "with 'buildx' it is off"],
    ),
    "bad-discover-without-discover": (
        {"image": IMAGE, "discover": {"root": "jobs"}},
        ["discover only applies with images: 'discover'"],
    ),
    "bad-discover-key": (
        {"image": IMAGE, "images": "discover", "discover": {"roots": "jobs"}},
        ["discover has unknown key(s) roots; known: root, pattern, exclude, defaultExcludes"],
    ),
    "bad-discover-root-outside": (
        {"image": IMAGE, "images": "discover", "discover": {"root": "jobs/../.."}},
        ["discover.root 'jobs/../..' must be a directory inside the workspace"],
    ),
    "bad-discover-exclude": (
        {"image": IMAGE, "images": "discover", "discover": {"exclude": ["legacy", 3]}},
        ["discover.exclude[2] must be a non-empty string"],
    ),
    "bad-discover-pattern-line-break": (
        {"image": IMAGE, "images": "discover", "discover": {"pattern": "a\nb"}},
        ["discover.pattern[1] contains a line break"],
    ),
    "bad-discover-default-excludes": (
        {"image": IMAGE, "images": "discover", "discover": {"defaultExcludes": "no"}},
        ["discover.defaultExcludes must be true or false, not 'no'"],
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGE_CONFIGS))
def test_bad_images_cache_arguments_are_clear_errors(
    many: tuple[Path, dict[str, Any]], name: str
) -> None:
    _, reports = many
    report = reports[name]
    assert report["result"] == "FAILURE" and report["error"].startswith("multiArchBuild: ")
    for fragment in BAD_IMAGE_CONFIGS[name][1]:
        assert fragment in report["error"], report["error"]
    assert not calls(report, "node") and not calls(report, "sh")


def assert_three_images_built_and_merged(root: Path, name: str, report: dict[str, Any]) -> None:
    assert report["result"] == "SUCCESS", explain(report)
    # ONE parallel step: every image x platform, each on its platform's native agent.
    (parallel,) = calls(report, "parallel")
    assert parallel["args"]["branches"] == [
        f"{image} {platform}" for image in THREE_IMAGES for platform in PLATFORMS
    ]
    tools = tool_calls(root / f"{name}.tools.log")
    builds = [t for t in tools if t.tool == "buildah" and t.args.startswith("build ")]
    assert len(builds) == 6
    for image, (context, dockerfile) in THREE_IMAGES.items():
        for platform in PLATFORMS:
            (build,) = [
                t
                for t in builds
                if t.platform == platform
                and t.args.endswith(f" {context}")
                and dockerfile in t.args
            ]
            assert build.node == AGENT_OF[platform]
            assert f"--tag localhost/archfleet-build/{image}:" in build.args
            (copy,) = [
                t
                for t in tools
                if t.tool == "skopeo"
                and t.platform == platform
                and t.args.endswith(
                    f"docker://{IMAGE}/{image}@{image_build_digest(image, platform)}"
                )
            ]
            assert copy.node == AGENT_OF[platform]
    # One merge per image, each with its own digests and targets, after every branch ended,
    # each under its own lock.
    merges = merges_by_image(tools)
    assert sorted(merges) == [f"{IMAGE}/{image}" for image in THREE_IMAGES]
    for image in THREE_IMAGES:
        sources = re.findall(r"--source (\S+)", merges[f"{IMAGE}/{image}"].args)
        assert sources == [f"{p}=@{image_build_digest(image, p)}" for p in PLATFORMS]
        assert re.findall(r"--target (\S+)", merges[f"{IMAGE}/{image}"].args) == [
            f"{IMAGE}/{image}:1.4.0"
        ]
    merge_shs = merge_calls(report)
    assert len(merge_shs) == 3 and min(c["seq"] for c in merge_shs) > parallel["end"]
    locks = [c["args"]["resource"] for c in calls(report, "lock")]
    assert locks == [f"archfleet {IMAGE}/{image}" for image in THREE_IMAGES]
    for merge, image in zip(merge_shs, THREE_IMAGES, strict=True):
        assert merge["stages"] == [f"merge {image}"] and "lock" in merge["blocks"]
    verifies = [t.args.split()[2] for t in tools if t.args.startswith("verify-manifest")]
    assert verifies == [f"{IMAGE}/{image}:1.4.0" for image in THREE_IMAGES]
    # check-bases: every image's Dockerfile, in the preflight, before any build agent.
    checks = [t for t in tools if t.tool == "archfleet" and t.args.startswith("check-bases")]
    assert [t.args.split(" --file ")[1].split()[0] for t in checks] == [
        dockerfile for _, dockerfile in THREE_IMAGES.values()
    ]
    preflight = stage_calls(report, "archfleet preflight")
    assert max(c.get("end", c["seq"]) for c in preflight) < first_build_seq(report)
    # The return value: the single-image map, per image.
    result = returned(report)
    assert sorted(result) == sorted(THREE_IMAGES)
    for image in THREE_IMAGES:
        assert result[image] == {
            "pushed": True,
            "digests": {p: image_build_digest(image, p) for p in PLATFORMS},
            "index": index_of(merges[f"{IMAGE}/{image}"]),
            "tags": [f"{IMAGE}/{image}:1.4.0"],
        }


def test_three_images_build_per_arch_and_merge_per_image(
    many: tuple[Path, dict[str, Any]],
) -> None:
    root, reports = many
    assert_three_images_built_and_merged(root, "images-list", reports["images-list"])


def test_discovery_finds_the_three_images_in_the_preflight(
    many: tuple[Path, dict[str, Any]],
) -> None:
    root, reports = many
    report = reports["images-discover"]
    assert_three_images_built_and_merged(root, "images-discover", report)
    tools = tool_calls(root / "images-discover.tools.log")
    (discover,) = [t for t in tools if t.args.startswith("discover-images")]
    assert discover.args == "discover-images --json --root=." and discover.node == "amd-1"
    preflight = stage_calls(report, "archfleet preflight")
    labels = [c["args"]["label"] for c in preflight if c["name"] == "sh"]
    assert labels == [
        "prepare preflight work directory",
        "archfleet --version",
        "archfleet discover-images",
        *[f"archfleet check-bases {image}" for image in THREE_IMAGES],
        "remove preflight work directory and registry login",
    ]
    assert "discover-images found 3 image(s): jobs-job-a, jobs-job-b, tools-x" in report["log"]


def test_discovery_runs_even_when_nothing_is_pushed(many: tuple[Path, dict[str, Any]]) -> None:
    root, reports = many
    report = reports["images-discover-no-push"]
    assert report["result"] == "SUCCESS", explain(report)
    tools = tool_calls(root / "images-discover-no-push.tools.log")
    assert [t.args for t in tools if t.tool == "archfleet"] == [
        "--version",
        "discover-images --json --root=.",
    ]
    builds = [t for t in tools if t.tool == "buildah" and t.args.startswith("build ")]
    assert len(builds) == 6 and not [t for t in tools if t.tool == "skopeo"]
    not_pushed = {"pushed": False, "digests": {}, "index": None, "tags": []}
    assert returned(report) == {image: not_pushed for image in THREE_IMAGES}


def test_discovery_takes_the_tools_options_root_and_exclude(
    many: tuple[Path, dict[str, Any]],
) -> None:
    """discover: [root: 'jobs', exclude: 'job-b'] -> `discover-images --root=jobs
    --exclude=job-b`: names relative to the root, paths relative to the workspace."""
    root, reports = many
    report = reports["images-discover-root"]
    assert report["result"] == "SUCCESS", explain(report)
    tools = tool_calls(root / "images-discover-root.tools.log")
    (discover,) = [t for t in tools if t.args.startswith("discover-images")]
    assert discover.args == "discover-images --json --root=jobs --exclude=job-b"
    assert "discover-images found 1 image(s): job-a" in report["log"]
    (parallel,) = calls(report, "parallel")
    assert parallel["args"]["branches"] == [f"job-a {platform}" for platform in PLATFORMS]
    builds = [t for t in tools if t.tool == "buildah" and t.args.startswith("build ")]
    assert len(builds) == 2
    assert all(b.args.endswith(" jobs/job-a") and "jobs/job-a/Dockerfile" in b.args for b in builds)
    assert sorted(merges_by_image(tools)) == [f"{IMAGE}/job-a"]
    assert sorted(returned(report)) == ["job-a"]


def test_discovery_options_never_reach_a_shell_command_line(
    many: tuple[Path, dict[str, Any]],
) -> None:
    """Each value is one argument (`--exclude=VALUE`), from the environment: `$(...)`, backquotes
    and a leading '-' stay globs, nothing runs, and the script's text holds none of them."""
    root, reports = many
    report = reports["images-discover-hostile"]
    assert report["result"] == "SUCCESS", explain(report)
    assert not list(root.rglob("pwned-*"))
    tools = tool_calls(root / "images-discover-hostile.tools.log")
    (discover,) = [t for t in tools if t.args.startswith("discover-images")]
    assert f"--exclude=$(touch {root}/pwned-1)" in discover.args
    assert "--pattern=-x'; touch pwned-3" in discover.args
    assert "discover-images found 2 image(s): jobs-job-a, jobs-job-b" in report["log"]
    (script,) = [
        c for c in calls(report, "sh") if c["args"]["label"] == "archfleet discover-images"
    ]
    assert "pwned" not in script["args"]["script"]


def test_a_discovery_that_fails_names_its_root_before_any_build(
    many: tuple[Path, dict[str, Any]],
) -> None:
    _, reports = many
    report = reports["images-discover-missing-root"]
    assert report["result"] == "FAILURE"
    assert report["error"].startswith(
        "multiArchBuild: archfleet discover-images failed (exit code 1; its message is above), "
        "searching 'services'"
    )
    # The tool's own message (toolkit/tasks/discover.py) is in the log.
    assert "--root services: not a directory" in report["log"]
    assert not calls(report, "parallel")


def test_one_image_failing_writes_no_tag_of_any_image(many: tuple[Path, dict[str, Any]]) -> None:
    root, reports = many
    report = reports["images-one-fails"]
    assert report["result"] == "FAILURE"
    assert report["error"].startswith(
        f"multiArchBuild: the build of image jobs-job-b ({IMAGE}/jobs-job-b) for linux/arm64 failed"
    )
    # failFast: false, so the other five branches built and pushed by digest; yet no merge ran
    # and no tag of any image was written.
    statuses = {c["args"]["name"]: c["status"] for c in calls(report, "branch")}
    assert statuses.pop("jobs-job-b linux/arm64") == "FAILURE"
    assert set(statuses.values()) == {"SUCCESS"} and len(statuses) == 5
    tools = tool_calls(root / "images-one-fails.tools.log")
    assert not merge_calls(report) and not merges_by_image(tools)
    assert not [t for t in tools if t.args.startswith(("verify-manifest", "tag", "manifest"))]
    assert report["stepResults"] == []


def smoke_runs(tools: list[ToolCall]) -> list[ToolCall]:
    return [
        t
        for t in tools
        if (t.tool == "buildah" and t.args.split()[0] in ("from", "run"))
        or (t.tool == "docker" and t.args.startswith("run --rm"))
    ]


def test_smoke_runs_the_merged_digest_per_platform_on_its_agent_buildah(
    many: tuple[Path, dict[str, Any]],
) -> None:
    root, reports = many
    report = reports["smoke-buildah"]
    assert report["result"] == "SUCCESS", explain(report)
    tools = tool_calls(root / "smoke-buildah.tools.log")
    (merge,) = merges_by_image(tools).values()
    ref = f"{IMAGE}@{index_of(merge)}"
    runs = smoke_runs(tools)
    for platform, arch in (("linux/amd64", "amd64"), ("linux/arm64", "arm64")):
        mine = [t for t in runs if t.platform == platform]
        assert [t.node for t in mine] == [AGENT_OF[platform]] * 2
        assert mine[0].args == (
            f"from --quiet --pull=always --tls-verify=true --os linux --arch {arch} docker://{ref}"
        )
        # The command writes its own output on a bind mount: buildah's chroot relay of the
        # container's stdout can lose it (jenkins/resources/archfleet/build.sh).
        assert re.fullmatch(
            r"run --volume /\S+/archfleet-smoke-\w+/smoke-run:/\.archfleet-smoke "
            r"fake-working-container -- sh -c sh -c \"\$1\" > /\.archfleet-smoke/stdout "
            r"2> /\.archfleet-smoke/stderr archfleet-smoke uname -m",
            mine[1].args,
        ), mine[1].args
    # After the merge (and its verify), in branches of their own, native guard first.
    smoke_shs = [c for c in calls(report, "sh") if (c["args"]["label"] or "").startswith("smoke ")]
    assert len(smoke_shs) == 2 and min(c["seq"] for c in smoke_shs) > merge_calls(report)[0]["seq"]
    assert {c["branch"] for c in smoke_shs} == {"smoke linux/amd64", "smoke linux/arm64"}
    assert "smoke run linux/arm64: 'uname -m' -> aarch64" in report["log"]
    # The return value is the single-image map, as before.
    assert set(returned(report)) == {"pushed", "digests", "index", "tags"}


def test_smoke_with_buildx_uses_docker_run_and_the_login(
    many: tuple[Path, dict[str, Any]],
) -> None:
    root, reports = many
    report = reports["smoke-buildx"]
    assert report["result"] == "SUCCESS", explain(report)
    tools = tool_calls(root / "smoke-buildx.tools.log")
    (merge,) = merges_by_image(tools).values()
    runs = smoke_runs(tools)
    assert sorted((t.node, t.args) for t in runs) == [
        (
            AGENT_OF[p],
            f"run --rm --pull always --platform {p} --entrypoint sh "
            f"{IMAGE}@{index_of(merge)} -c uname -m",
        )
        for p in PLATFORMS
    ]
    # The pull's login: the push credential, as a private docker config (never an argument).
    assert {(t.user, t.password_hash) for t in runs} == {(USER, SECRET_HASH)}
    assert SECRET not in report["log"] and SECRET not in json.dumps(report["calls"])


def test_a_smoke_run_on_the_wrong_machine_fails_naming_the_platform(
    many: tuple[Path, dict[str, Any]],
) -> None:
    _, reports = many
    report = reports["smoke-wrong-machine"]
    assert report["result"] == "FAILURE"
    assert report["error"].startswith("multiArchBuild: smoke run for linux/arm64: ")
    assert "runs as x86_64 (linux/amd64)" in report["error"]
    # As the component: the smoke runs after the merge, which wrote the tags.
    assert len(merge_calls(report)) == 1


def test_a_failing_smoke_command_fails_naming_the_platform(
    many: tuple[Path, dict[str, Any]],
) -> None:
    _, reports = many
    report = reports["smoke-fails"]
    assert report["result"] == "FAILURE"
    assert report["error"].startswith(
        f"multiArchBuild: smoke run for linux/arm64: 'echo hello' failed in {IMAGE}@sha256:"
    )
    assert "(exit code 1; its output is above)" in report["error"]
    statuses = {c["args"]["name"]: c["status"] for c in calls(report, "branch")}
    assert statuses["smoke linux/arm64"] == "FAILURE"
    # The tags stay written: the smoke runs after the merge, as the component's smoke jobs.
    assert len(merge_calls(report)) == 1


def cache_options(tools: list[ToolCall], platform: str, tool: str) -> list[str]:
    (build,) = [
        t
        for t in tools
        if t.tool == tool and t.platform == platform and re.match(r"(buildx )?build ", t.args)
    ]
    words = build.args.split()
    return [
        f"{word} {words[i + 1]}"
        for i, word in enumerate(words)
        if word in ("--cache-from", "--cache-to")
    ] + [word for word in words if word in ("--layers", "--tls-verify=true")]


def test_cache_refs_per_arch_on_the_primary_branch_buildah(
    many: tuple[Path, dict[str, Any]],
) -> None:
    """ci-templates/src/build.sh archfleet_cache_args: a protected build reads and writes
    REPO/ARCH (buildah takes a repository)."""
    root, reports = many
    report = reports["cache-main-buildah"]
    assert report["result"] == "SUCCESS", explain(report)
    tools = tool_calls(root / "cache-main-buildah.tools.log")
    for arch in ("amd64", "arm64"):
        assert cache_options(tools, f"linux/{arch}", "buildah") == [
            f"--cache-from {IMAGE}/buildcache/{arch}",
            f"--cache-to {IMAGE}/buildcache/{arch}",
            "--layers",
            "--tls-verify=true",
        ]


def test_a_change_request_reads_the_main_cache_and_writes_its_own_buildx(
    many: tuple[Path, dict[str, Any]],
) -> None:
    root, reports = many
    report = reports["cache-pr-buildx"]
    assert report["result"] == "SUCCESS", explain(report)
    tools = tool_calls(root / "cache-pr-buildx.tools.log")
    insecure = ",registry.insecure=true"
    for arch in ("amd64", "arm64"):
        main, own = f"{IMAGE}/buildcache:{arch}", f"{IMAGE}/buildcache:unprotected-{arch}"
        assert cache_options(tools, f"linux/{arch}", "docker") == [
            f"--cache-from type=registry,ref={main}{insecure}",
            f"--cache-from type=registry,ref={own}{insecure}",
            f"--cache-to type=registry,ref={own},mode=max{insecure}",
        ]


def test_a_tag_build_writes_the_protected_cache_in_its_repository(
    many: tuple[Path, dict[str, Any]],
) -> None:
    root, reports = many
    report = reports["cache-tag-buildx-own-repository"]
    assert report["result"] == "SUCCESS", explain(report)
    tools = tool_calls(root / "cache-tag-buildx-own-repository.tools.log")
    assert cache_options(tools, "linux/arm64", "docker") == [
        "--cache-from type=registry,ref=registry.example.com/cache/app:arm64",
        "--cache-to type=registry,ref=registry.example.com/cache/app:arm64,mode=max",
    ]


def test_each_image_has_its_own_cache_repository(many: tuple[Path, dict[str, Any]]) -> None:
    root, reports = many
    report = reports["images-cache-pr"]
    assert report["result"] == "SUCCESS", explain(report)
    tools = tool_calls(root / "images-cache-pr.tools.log")
    repository = f"{IMAGE}/jobs-job-a/buildcache"
    assert cache_options(tools, "linux/amd64", "buildah") == [
        f"--cache-from {repository}/amd64",
        f"--cache-from {repository}/unprotected-amd64",
        f"--cache-to {repository}/unprotected-amd64",
        "--layers",
        "--tls-verify=true",
    ]


def test_the_cache_is_on_by_default_with_buildah_and_read_only_without_push(
    many: tuple[Path, dict[str, Any]],
) -> None:
    """A feature branch pushes nothing, so no credential is bound: the cache is read (the
    protected ref and the branch's own, as the component's non-protected pipelines read) and
    never written, and no login is made for it (a write without one would fail the build:
    buildah's pushCache error is fatal, its pullCache error is not)."""
    root, reports = many
    report = reports["cache-default-no-push-buildah"]
    assert report["result"] == "SUCCESS", explain(report)
    assert returned(report)["pushed"] is False
    assert not calls(report, "withCredentials")
    tools = tool_calls(root / "cache-default-no-push-buildah.tools.log")
    for arch in ("amd64", "arm64"):
        assert cache_options(tools, f"linux/{arch}", "buildah") == [
            f"--cache-from {IMAGE}/buildcache/{arch}",
            f"--cache-from {IMAGE}/buildcache/unprotected-{arch}",
            "--layers",
            "--tls-verify=true",
        ]
    builds = [t for t in tools if t.tool == "buildah" and t.args.startswith("build ")]
    assert all("--authfile" not in b.args and b.user == "-" for b in builds)
    assert not [t for t in tools if t.tool == "skopeo"]
    assert "registry cache read only (push is off" in report["log"]


def test_buildx_has_no_cache_unless_asked(many: tuple[Path, dict[str, Any]]) -> None:
    root, reports = many
    report = reports["cache-default-buildx"]
    assert report["result"] == "SUCCESS", explain(report)
    tools = tool_calls(root / "cache-default-buildx.tools.log")
    for arch in ("amd64", "arm64"):
        assert cache_options(tools, f"linux/{arch}", "docker") == []


def test_a_buildx_build_that_pushes_nothing_uses_no_cache(
    many: tuple[Path, dict[str, Any]],
) -> None:
    """BuildKit fails a build whose registry cache import is refused (moby/buildkit#3179), and
    a build that pushes nothing has no login: so no cache options at all, said in the log."""
    root, reports = many
    report = reports["cache-buildx-no-push"]
    assert report["result"] == "SUCCESS", explain(report)
    assert not calls(report, "withCredentials")
    tools = tool_calls(root / "cache-buildx-no-push.tools.log")
    for arch in ("amd64", "arm64"):
        assert cache_options(tools, f"linux/{arch}", "docker") == []
    assert (
        "push is off, so no registry login: this buildx build uses no registry cache"
        in (report["log"])
    )


def test_the_monorepo_example_runs_under_the_harness(many: tuple[Path, dict[str, Any]]) -> None:
    root, reports = many
    report = reports["monorepo-example"]
    assert report["result"] == "SUCCESS", explain(report)
    mono = "registry.example.com/team/mono"
    tools = tool_calls(root / "monorepo-example.tools.log")
    assert sorted(merges_by_image(tools)) == [f"{mono}/{name}" for name in THREE_IMAGES]
    # cache: true on the primary branch: each image's own protected ref per arch.
    for name, (context, _) in THREE_IMAGES.items():
        (build,) = [
            t
            for t in tools
            if t.tool == "buildah"
            and t.platform == "linux/arm64"
            and t.args.startswith("build ")
            and t.args.endswith(f" {context}")
        ]
        ref = f"{mono}/{name}/buildcache/arm64"
        assert f"--cache-from {ref} --cache-to {ref} " in build.args
    smoke_branches = sorted(
        c["args"]["name"] for c in calls(report, "branch") if c["args"]["name"].startswith("smoke")
    )
    assert smoke_branches == sorted(
        f"smoke {name} {platform}" for name in THREE_IMAGES for platform in PLATFORMS
    )
    assert len(smoke_runs(tools)) == 12  # buildah from + run, per image and platform
    for name in THREE_IMAGES:
        assert f"{name}: {mono}/{name}:" in report["log"]
