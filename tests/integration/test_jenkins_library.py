"""The Jenkins shared library (jenkins/) run by a pipeline harness on Groovy 2.4.21, the Groovy
Jenkins embeds (tests/groovy/PipelineHarness.groovy, JenkinsPipelineUnit style).

The harness binds the pipeline steps, records every call (sequence, parallel branch, node label,
agent), and runs `sh` FOR REAL. Two kinds of runs:
- fake tools: agents whose PATH starts with tests/groovy/shims, FAKE buildah/skopeo/docker/
  archfleet/uname that log their arguments; the library's own scripts run for real. One JVM
  runs all of these scenarios.
- executed for real: a declarative Jenkinsfile calls multiArchBuild with buildah against a
  loopback registry with basic auth; amd64 and arm64 are built (arm64 RUN under QEMU, so
  allowEmulation), pushed by digest, merged and verified by archfleet; skopeo checks the tag.
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
MERGE_MARK = "merge-manifest"
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
    tool: str
    node: str
    platform: str
    user: str
    password_hash: str
    args: str


def tool_calls(log: Path) -> list[ToolCall]:
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        tool, node, platform, user, password, args = line.split("\t", 5)
        rows.append(ToolCall(tool, node, platform, user.removeprefix("user="), password[3:], args))
    return rows


def fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------ fake-tool scenarios


def fake_agent(name: str, labels: list[str], uname: str, shim_log: Path) -> dict[str, Any]:
    return {
        "name": name,
        "labels": labels,
        "env": {"PATH+SHIMS": str(SHIMS), "FAKE_UNAME": uname, "SHIM_LOG": str(shim_log)},
    }


def scenario(name: str, root: Path, **overrides: Any) -> dict[str, Any]:
    """A multiArchBuild run on an amd64 and an arm64 agent with fake tools."""
    source = root / "source"
    if not source.exists():
        source.mkdir(parents=True)
        (source / "Dockerfile").write_text("FROM scratch\n")
    shim_log = root / f"{name}.tools.log"
    base: dict[str, Any] = {
        "name": name,
        "source": str(source),
        "env": {"BRANCH_NAME": "main", "SHIM_LOG": str(shim_log)},
        "agents": [
            fake_agent("amd-1", ["linux", "amd64"], "x86_64", shim_log),
            fake_agent("arm-1", ["linux", "arm64"], "aarch64", shim_log),
        ],
        "credentials": {"registry": {"username": USER, "password": SECRET}},
        "step": {"name": "multiArchBuild", "args": {"image": IMAGE, "builder": "buildah"}},
    }
    base.update(overrides)
    return base


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
    "bad-builder": ({"image": IMAGE, "builder": "kaniko"}, ["builder must be 'buildx' or"]),
    "bad-same-label": (
        {"image": IMAGE, "agentLabel": "linux"},
        ["same label 'linux'", "allowEmulation"],
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
        ),
        scenario(
            "feature-branch-no-push",
            root,
            env={"BRANCH_NAME": "feature/x", "SHIM_LOG": shim("feature-branch-no-push")},
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
    ]
    for name, (args, _) in BAD_CONFIGS.items():
        scenarios.append(scenario(name, root, step={"name": "multiArchBuild", "args": args}))
    for s in scenarios:
        if s.get("step") is None:
            del s["step"]
        s["env"].setdefault("SHIM_LOG", shim(s["name"]))
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
        f"merge-manifest --target {IMAGE}:1.4.0 --target {IMAGE}:latest "
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
        assert "--build-arg VERSION=1.4.0 " in build_args
        assert "--build-arg NOTE=two words " in build_args
        (copy,) = [
            t
            for t in tools
            if t.tool == "skopeo" and t.args.startswith("copy") and t.platform == platform
        ]
        assert copy.node == agent and copy.args.endswith(f"docker://{IMAGE}@{digests[platform]}")
    result = returned(report)
    assert result["pushed"] is True and result["digests"] == digests
    assert result["index"] == fake_digest(f"index {merges[0].args}")
    assert result["tags"] == [f"{IMAGE}:1.4.0", f"{IMAGE}:latest"]


def test_secrets_reach_scripts_only_as_environment(fake: tuple[Path, dict[str, Any]]) -> None:
    root, reports = fake
    report = reports["happy"]
    assert report["result"] == "SUCCESS", explain(report)
    bindings = [b for c in calls(report, "withCredentials") for b in c["args"]["bindings"]]
    assert len(bindings) == 3  # two builds, one merge
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
    merger = [t for t in tools if t.tool == "archfleet"]
    assert merger and all(t.user == USER and t.password_hash == SECRET_HASH for t in merger)


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
    merge_env = [c["args"]["env"] for c in calls(report, "withEnv") if c["branch"] is None]
    assert [e for e in merge_env[0] if e.startswith("AF_ARCHFLEET=")] == [
        f"AF_ARCHFLEET={SHIMS / 'fake-tool'} archfleet"
    ]
    assert len([t for t in tools if t.tool == "archfleet" and MERGE_MARK in t.args]) == 1
    result = returned(report)
    # A tag build pushes by default and tags the release with the git tag.
    assert result["tags"] == [f"{IMAGE}:v2.0.0"]
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
    assert not [t for t in tools if t.tool == "archfleet"]


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
        assert not [t for t in tools if t.tool == "archfleet"]
        (failed,) = [b for b in calls(report, "branch") if b["status"] == "FAILURE"]
        assert failed["args"]["name"] == "linux/arm64"
        assert "fake buildah: build of linux/arm64 failed" in report["log"]
    else:
        # The merger refused: verify never ran, and the step returned nothing.
        assert [t.args.split()[0] for t in tools if t.tool == "archfleet"] == ["merge-manifest"]


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
    assert not [t for t in tool_calls(root / "unknown-credentials.tools.log") if t.tool != "uname"]


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


@pytest.mark.parametrize("name", ["declarative-example", "scripted-example"])
def test_examples_run_under_the_harness(fake: tuple[Path, dict[str, Any]], name: str) -> None:
    _, reports = fake
    report = reports[name]
    assert report["result"] == "SUCCESS", explain(report)
    result = returned(report)
    assert result["pushed"] is True and result["index"].startswith("sha256:")
    assert set(result["digests"]) == {"linux/amd64", "linux/arm64"}
    assert len(merge_calls(report)) == 1
    if name == "declarative-example":
        assert report["params"]["IMAGE"] == IMAGE
        assert result["tags"] == [f"{IMAGE}:latest"]
    else:
        assert result["tags"] == [f"{IMAGE}:latest", f"{IMAGE}:build-7"]


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
            "env": {"BRANCH_NAME": "main"},
            "params": {"IMAGE": f"{address}/team/app", "ALLOW_EMULATION": True},
            **common,
        },
        # Same pipeline without allowEmulation: the arm64 branch lands on an x86 machine.
        {
            "name": "lab-guarded",
            "env": {"BRANCH_NAME": "main"},
            "params": {"IMAGE": f"{address}/team/guarded", "ALLOW_EMULATION": False},
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
    assert merge["seq"] > max(b["end"] for b in calls(report, "branch"))
    assert "verify" in report["log"] and "WARNING" in report["log"]
    assert SECRET not in report["log"]
    assert all(SECRET not in c["args"]["script"] for c in calls(report, "sh"))

    guarded = reports["lab-guarded"]
    assert guarded["result"] == "FAILURE"
    assert "linux/arm64 must build natively" in guarded["error"]
    assert not merge_calls(guarded)
    assert auth_registry.tags("team/guarded") == []
    assert not mounts_under(tmp_path)
