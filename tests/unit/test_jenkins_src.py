"""The shared library's pure helpers (jenkins/src/archfleet) on Groovy 2.4.21, the Groovy Jenkins
embeds: platform names, agent labels, the native guard, digest parsing, argument validation, the
archfleet tool's version check. All calls go through ONE groovy process
(tests/groovy/call.groovy)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "jenkins"
GROOVY_DIR = REPO / "tests" / "groovy"
JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")
DIGEST = "sha256:" + "ab" * 32
ARM64 = {
    "platform": "linux/arm64",
    "os": "linux",
    "architecture": "arm64",
    "variant": "",
    "tag": "arm64",
    "unames": ["aarch64", "arm64"],
}
ARM_V7 = {
    **ARM64,
    "platform": "linux/arm/v7",
    "architecture": "arm",
    "variant": "v7",
    "tag": "arm-v7",
    "unames": ["armv7l", "armv8l"],
}
COMMIT = "3f9c2a7be41d05c6e8a9b0c1d2e3f405a6b7c8d9"
# A multibranch build of the primary branch (branch-api sets BRANCH_IS_PRIMARY).
BUILD = {
    "BRANCH_NAME": "main",
    "BRANCH_IS_PRIMARY": "true",
    "TAG_NAME": None,
    "GIT_COMMIT": COMMIT,
    "BUILD_TAG": "jenkins-Team/App-42",
}

# (request, expected value) or (request, {"error": fragment})
CASES: dict[str, tuple[dict[str, Any], Any]] = {
    # Default image tags, the GitLab component's (ci-templates/templates/multiarch.yml).
    "ref-slug": (
        {"target": "Config", "method": "refSlug", "args": ["Feature/ÄB_c--X-"]},
        "feature--b-c--x",
    ),
    "ref-slug-long": (
        {"target": "Config", "method": "refSlug", "args": ["a" * 62 + "/b"]},
        "a" * 62,
    ),
    "ref-slug-none": ({"target": "Config", "method": "refSlug", "args": [None]}, None),
    "short-sha": ({"target": "Config", "method": "shortSha", "args": [COMMIT.upper()]}, "3f9c2a7b"),
    "short-sha-not-hex": ({"target": "Config", "method": "shortSha", "args": ["harness"]}, None),
    "semver": (
        {"target": "Config", "method": "semverTags", "args": ["v1.4.2+build.7"]},
        ["1.4.2", "1.4", "1"],
    ),
    "semver-prerelease": (
        {"target": "Config", "method": "semverTags", "args": ["v2.0.0-rc.1"]},
        ["2.0.0-rc.1"],
    ),
    "semver-not": ({"target": "Config", "method": "semverTags", "args": ["release-7"]}, []),
    "final-tags-after-checkout": (
        {
            "target": "Config",
            "method": "finalTags",
            "args": [
                {
                    "image": "r/app",
                    "tagPlan": {
                        "explicit": None,
                        "imageTag": None,
                        "slug": "v1-4-2",
                        "latest": False,
                        "semver": ["1.4.2", "1.4", "1"],
                    },
                },
                COMMIT,
            ],
        },
        {
            "tags": ["3f9c2a7b", "v1-4-2", "1.4.2", "1.4", "1"],
            "targets": ["r/app:3f9c2a7b", "r/app:v1-4-2", "r/app:1.4.2", "r/app:1.4", "r/app:1"],
        },
    ),
    "final-tags-none": (
        {
            "target": "Config",
            "method": "finalTags",
            "args": [
                {
                    "image": "r/app",
                    "tagPlan": {
                        "explicit": None,
                        "imageTag": None,
                        "slug": None,
                        "latest": False,
                        "semver": [],
                    },
                },
                None,
            ],
        },
        {"error": "no image tag to write"},
    ),
    # buildx's side of the native guard: the first platform of each node is its own.
    "builder-native": (
        {
            "target": "Platforms",
            "method": "builderGuard",
            "args": [
                {"platform": "linux/arm64", "architecture": "arm64"},
                "Name: multi\nDriver: docker-container\n\nNodes:\nName: multi0\n"
                "Platforms: linux/amd64*, linux/arm64, linux/386\nName: multi1\n"
                "Platforms: linux/arm64, linux/arm/v7, linux/arm/v6\n",
            ],
        },
        None,
    ),
    "builder-emulated": (
        {
            "target": "Platforms",
            "method": "builderGuard",
            "args": [
                {"platform": "linux/arm64", "architecture": "arm64"},
                "Name: remote\nNodes:\nName: remote0\n"
                "Platforms: linux/amd64, linux/amd64/v2, linux/arm64, linux/riscv64\n",
            ],
        },
        "linux/arm64 must build natively, but buildx builder 'remote' runs on linux/amd64",
    ),
    "builder-arm-v7-on-arm64": (
        {
            "target": "Platforms",
            "method": "builderGuard",
            "args": [
                {"platform": "linux/arm/v7", "architecture": "arm"},
                "Name: b\nPlatforms: linux/arm64, linux/arm/v7\n",
            ],
        },
        None,
    ),
    "builder-not-booted": (
        {
            "target": "Platforms",
            "method": "builderGuard",
            "args": [{"platform": "linux/arm64", "architecture": "arm64"}, "Name: b\nDriver: x\n"],
        },
        "buildx builder 'b' reported no platforms",
    ),
    "normalise-aliases": (
        {"target": "Platforms", "method": "normalise", "args": ["Linux/x86_64"]},
        "linux/amd64",
    ),
    "normalise-arm64-v8": (
        {"target": "Platforms", "method": "normalise", "args": ["linux/arm64/v8"]},
        "linux/arm64",
    ),
    "normalise-bad": (
        {"target": "Platforms", "method": "normalise", "args": ["linux"]},
        {"error": "invalid platform 'linux': expected OS/ARCH"},
    ),
    "describe-arm-v7": (
        {"target": "Platforms", "method": "describe", "args": ["@table", "linux/arm/v7"]},
        ARM_V7,
    ),
    "describe-containerd-spelling": (
        {"target": "Platforms", "method": "describe", "args": ["@table", "linux/arm"]},
        ARM_V7,
    ),
    "describe-armhf": (
        {"target": "Platforms", "method": "describe", "args": ["@table", "linux/armhf"]},
        ARM_V7,
    ),
    "describe-unknown": (
        {"target": "Platforms", "method": "describe", "args": ["@table", "linux/mips"]},
        {"error": "unknown platform 'linux/mips' (known: linux/386, linux/amd64, linux/arm/v6"},
    ),
    "label-default": (
        {"target": "Platforms", "method": "label", "args": [ARM_V7, "{arch}"]},
        "arm-v7",
    ),
    "label-dollar-pattern": (
        {"target": "Platforms", "method": "label", "args": [ARM64, "linux && ${arch}"]},
        "linux && arm64",
    ),
    "label-parts": (
        {
            "target": "Platforms",
            "method": "label",
            "args": [ARM_V7, "{os}-{architecture}-{variant}"],
        },
        "linux-arm-v7",
    ),
    "label-map": (
        {
            "target": "Platforms",
            "method": "label",
            "args": [ARM64, {"linux/arm64/v8": "graviton", "linux/amd64": "x86"}],
        },
        "graviton",
    ),
    "label-map-missing": (
        {"target": "Platforms", "method": "label", "args": [ARM64, {"linux/amd64": "x86"}]},
        {"error": "agentLabel map has no label for linux/arm64"},
    ),
    "label-unknown-placeholder": (
        {"target": "Platforms", "method": "label", "args": [ARM64, "linux && {cpu}"]},
        {"error": "uses {cpu}; use {arch}, {os}, {architecture}, {variant}"},
    ),
    "guard-native": (
        {
            "target": "Platforms",
            "method": "guard",
            "args": ["@table", ARM64, "aarch64\n", "arm64", "pi-1"],
        },
        None,
    ),
    "guard-foreign": (
        {
            "target": "Platforms",
            "method": "guard",
            "args": ["@table", ARM64, "x86_64", "arm64", "build-7"],
        },
        "linux/arm64 must build natively, on a machine whose uname -m is aarch64 or arm64, but "
        "agent 'build-7' (label 'arm64') reports 'x86_64', which runs linux/amd64",
    ),
    "guard-unknown-machine": (
        {
            "target": "Platforms",
            "method": "guard",
            "args": ["@table", ARM64, "sparc64", "arm64", None],
        },
        "linux/arm64 must build natively, on a machine whose uname -m is aarch64 or arm64, but "
        "the agent (label 'arm64') reports 'sparc64', which archfleet does not know",
    ),
    "digest-file": (
        {"target": "Digests", "method": "parse", "args": [f"{DIGEST}\n", "x"]},
        DIGEST,
    ),
    "digest-buildx-metadata": (
        {
            "target": "Digests",
            "method": "parse",
            "args": [json.dumps({"containerimage.digest": DIGEST, "image.name": "r/a"}), "x"],
        },
        DIGEST,
    ),
    "digest-metadata-without-digest": (
        {"target": "Digests", "method": "parse", "args": ['{"buildx.build.ref": "b"}', "arm"]},
        {"error": "arm: buildx metadata has no 'containerimage.digest'"},
    ),
    "digest-garbage": (
        {"target": "Digests", "method": "parse", "args": ["sha256:ABC", "amd64 build"]},
        {"error": "amd64 build: expected a digest sha256:<64 hex digits>, got 'sha256:ABC'"},
    ),
    "digest-empty": (
        {"target": "Digests", "method": "parse", "args": ["", "merge"]},
        {"error": "merge: expected a digest"},
    ),
    "source": (
        {"target": "Digests", "method": "source", "args": ["linux/arm64", DIGEST]},
        f"linux/arm64=@{DIGEST}",
    ),
    "image-with-tag": (
        {"target": "Config", "method": "parseImage", "args": ["127.0.0.1:5000/team/app:1.0"]},
        {"registry": "127.0.0.1:5000", "repository": "127.0.0.1:5000/team/app", "tag": "1.0"},
    ),
    "image-uppercase": (
        {"target": "Config", "method": "parseImage", "args": ["registry.example.com/Team/App"]},
        {"error": "with a lowercase repository"},
    ),
    "image-digest": (
        {"target": "Config", "method": "parseImage", "args": [f"r.example.com/app@{DIGEST}"]},
        {"error": "has a digest"},
    ),
    "tool-version": ({"target": "Tool", "method": "version", "args": ["0.1.0\n"]}, "0.1.0"),
    "tool-version-damaged": (
        {"target": "Tool", "method": "version", "args": ["<html>"]},
        {"error": "archfleet/version.txt holds '<html>', not a version"},
    ),
    "tool-env-agent-default": (
        {"target": "Tool", "method": "commandEnv", "args": [{"archfleet": None}]},
        [],
    ),
    "tool-env-agent-command": (
        {
            "target": "Tool",
            "method": "commandEnv",
            "args": [{"archfleet": "/opt/af/bin/archfleet"}],
        },
        ["AF_ARCHFLEET=/opt/af/bin/archfleet"],
    ),
    # In the image always explicit: an agent's ARCHFLEET (a host path) reaches the container.
    "tool-env-image": (
        {"target": "Tool", "method": "commandEnv", "args": [{"archfleetImage": "r.io/af:1"}]},
        ["AF_ARCHFLEET=archfleet"],
    ),
    "registry-url-host": (
        {"target": "Tool", "method": "registryUrl", "args": ["registry.example.com:5000/p/af:1"]},
        "https://registry.example.com:5000",
    ),
    "registry-url-docker-hub": (
        {"target": "Tool", "method": "registryUrl", "args": ["platform/archfleet:1"]},
        "https://index.docker.io/v1/",
    ),
    "registry-url-docker-io": (
        {"target": "Tool", "method": "registryUrl", "args": ["docker.io/platform/archfleet:1"]},
        "https://index.docker.io/v1/",
    ),
    "auth-key-host": (
        {"target": "Tool", "method": "authKey", "args": ["127.0.0.1:5000"]},
        "127.0.0.1:5000",
    ),
    # OCI annotations of the index (issue 16 item 4): a clone token never reaches the registry.
    "source-url-userinfo": (
        {
            "target": "Config",
            "method": "sourceUrl",
            "args": ["https://ci-bot:tok@git.example.com/team/app.git"],
        },
        "https://git.example.com/team/app.git",
    ),
    "source-url-plain": (
        {"target": "Config", "method": "sourceUrl", "args": ["https://git.example.com/a@b.git"]},
        "https://git.example.com/a@b.git",
    ),
    "source-url-scp": (
        {"target": "Config", "method": "sourceUrl", "args": ["git@github.com:team/app.git"]},
        "ssh://github.com/team/app.git",
    ),
    "source-url-none": ({"target": "Config", "method": "sourceUrl", "args": [""]}, None),
    "source-url-space": (
        {"target": "Config", "method": "sourceUrl", "args": ["https://a b/c"]},
        None,
    ),
    "annotation-env": (
        {
            "target": "Config",
            "method": "annotationEnv",
            "args": ["https://u:p@git.example.com/x.git", COMMIT.upper(), 1764732645123],
        },
        [
            "AF_ANNOTATION_SOURCE=https://git.example.com/x.git",
            f"AF_ANNOTATION_REVISION={COMMIT}",
            "AF_ANNOTATION_CREATED_MILLIS=1764732645123",
        ],
    ),
    "annotation-env-empty": (
        {"target": "Config", "method": "annotationEnv", "args": [None, "not-a-sha", 0]},
        [],
    ),
    "bases-problem": (
        {
            "target": "Tool",
            "method": "basesProblem",
            "args": [
                "./Dockerfile",
                "linux/amd64,linux/arm64",
                "note: x\nerror: base example.com/b:1 (stage 0) does not offer linux/arm64 "
                "(offers: linux/amd64)\n",
            ],
        },
        "a base image of ./Dockerfile does not offer every platform of linux/amd64,linux/arm64 "
        "(archfleet check-bases, before any build): base example.com/b:1 (stage 0) does not "
        "offer linux/arm64 (offers: linux/amd64). Use a base that offers them, build fewer "
        "platforms, or pass checkBases: false to skip this check",
    ),
    "bases-problem-no-lines": (
        {"target": "Tool", "method": "basesProblem", "args": ["Dockerfile", "linux/amd64", "boom"]},
        "archfleet check-bases failed on Dockerfile before any build (its output is above); "
        "pass checkBases: false to skip the base image check",
    ),
    "auth-key-docker-hub": (
        {"target": "Tool", "method": "authKey", "args": ["docker.io"]},
        "https://index.docker.io/v1/",
    ),
}

MERGE_ON_AGENT = {"mergeLabel": "amd64", "archfleetImage": None}
MERGE_IN_IMAGE = {"mergeLabel": "amd64", "archfleetImage": "r.example.com/platform/archfleet:0.1.0"}


def problem(
    output: str, cfg: dict[str, Any] = MERGE_ON_AGENT, node: str | None = "m-1"
) -> dict[str, Any]:
    return {"target": "Tool", "method": "problem", "args": ["0.1.0", output, cfg, node]}


# Tool.problem: check-tool.sh's output -> None (fine) or the message; fragments it must hold.
PROBLEMS: dict[str, tuple[dict[str, Any], list[str] | None]] = {
    "ok": (problem("command=archfleet\nstatus=ok\ncode=0\noutput=archfleet 0.1.0\n"), None),
    "ok-after-a-warning": (
        problem("command=af\nstatus=ok\ncode=0\noutput=WARNING: x\noutput=archfleet 0.1.0\n"),
        None,
    ),
    "mismatch": (
        problem("command=archfleet\nstatus=ok\ncode=0\noutput=archfleet 0.2.0\n"),
        [
            "archfleet on agent 'm-1' (label 'amd64') is version 0.2.0, but this library is "
            "version 0.1.0 (expected 0.1.0, found 0.2.0)",
            "archfleetImage: '<registry>/<path>/archfleet:0.1.0'",
            "merge-tool role",
            "@Library('archfleet@<that release>')",
        ],
    ),
    "mismatch-in-image": (
        problem("command=archfleet\nstatus=ok\ncode=0\noutput=archfleet 0.2.0\n", MERGE_IN_IMAGE),
        [
            "archfleet in image 'r.example.com/platform/archfleet:0.1.0' on agent 'm-1' "
            "(label 'amd64') is version 0.2.0",
            "archfleetImage must be the archfleet tool image of version 0.1.0",
        ],
    ),
    "missing": (
        problem("command=archfleet\nstatus=missing\n", node=None),
        [
            "archfleet not found on the agent with label 'amd64': "
            "no command 'archfleet' on its PATH",
            "Provide archfleet 0.1.0 to the merge",
        ],
    ),
    "failed": (
        problem("command=python3\nstatus=failed\ncode=1\noutput=No module named toolkit\n"),
        ["'python3 --version' failed on agent 'm-1' (label 'amd64') (exit code 1): No module"],
    ),
    "not-archfleet": (
        problem("command=true\nstatus=ok\ncode=0\n"),
        ["'true --version' on agent 'm-1' (label 'amd64') printed '', not 'archfleet <version>'"],
    ),
    "garbage": (problem("Segmentation fault\n"), ["printed nothing it could read (Segmentation"]),
}


def call_groovy(requests: list[dict[str, Any]], tmp: Path) -> list[dict[str, Any]]:
    if shutil.which("groovy") is None or not JAVA_HOME.is_dir():
        pytest.fail("groovy 2.4 and OpenJDK 17 are needed: apt-get install groovy openjdk-17-jre")
    path = tmp / "requests.json"
    path.write_text(json.dumps(requests))
    classpath = os.pathsep.join(str(p) for p in (GROOVY_DIR / "stubs", GROOVY_DIR, LIBRARY / "src"))
    done = subprocess.run(
        ["groovy", "-cp", classpath, str(GROOVY_DIR / "call.groovy"), str(LIBRARY), str(path)],
        env={**os.environ, "JAVA_HOME": str(JAVA_HOME)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def config_request(args: dict[str, Any], build: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"target": "Config", "method": "parse", "args": [args, "@arches", build or BUILD]}


CONFIG_CASES: dict[str, dict[str, Any]] = {
    "defaults": config_request({"image": "registry.example.com/team/app"}),
    "tag-build": config_request(
        {"image": "registry.example.com/team/app:rc", "agentLabel": "linux && {arch}"},
        {"BRANCH_NAME": "v1.0.0", "TAG_NAME": "v1.0.0", "BUILD_TAG": None},
    ),
    "feature-branch": config_request(
        {"image": "registry.example.com/team/app", "buildArgs": {"A": "1", "B": "x y"}},
        {"BRANCH_NAME": "feature/x", "TAG_NAME": None, "BUILD_TAG": None, "GIT_COMMIT": COMMIT},
    ),
    "emulated-one-label": config_request(
        {"image": "r.example.com/app", "agentLabel": "linux", "allowEmulation": True}
    ),
    "not-a-flag": config_request({"image": "r.example.com/app", "verify": "yes"}),
    "build-arg-newline": config_request({"image": "r.example.com/app", "buildArgs": {"A": "1\n2"}}),
    "duplicate-platform": config_request(
        {"image": "r.example.com/app", "platforms": ["linux/arm64", "linux/arm64/v8"]}
    ),
    "tool-image": config_request(
        {
            "image": "r.example.com/app",
            "credentialsId": "push",
            "archfleetImage": f"r.example.com/platform/archfleet:0.1.0@{DIGEST}",
            "archfleetImageArgs": " --network host ",
            "archfleetImageCredentialsId": "pull",
        }
    ),
    "deprecated-tags": config_request(
        {"image": "r.example.com/app", "tags": ["1.4.0", "latest"], "mainBranch": "main"},
        {"BRANCH_NAME": "main", "TAG_NAME": None, "BUILD_TAG": None},
    ),
    "both-tag-arguments": config_request(
        {"image": "r.example.com/app", "tags": ["a"], "imageTags": ["b"]}
    ),
    "image-tags-no-latest": config_request(
        {"image": "r.example.com/app", "imageTags": ["stable"], "tagLatest": False}
    ),
    "not-primary": config_request(
        {"image": "r.example.com/app"},
        {"BRANCH_NAME": "main", "BRANCH_IS_PRIMARY": None, "TAG_NAME": None, "BUILD_TAG": None},
    ),
    "fallback-label": config_request(
        {"image": "r.example.com/app", "allowEmulation": "qemu", "agentTimeout": 5}
    ),
    "bad-timeout": config_request({"image": "r.example.com/app", "agentTimeout": 0}),
    "reserved-build-arg": config_request(
        {"image": "r.example.com/app", "buildArgs": {"PATH": "/x"}}
    ),
    "tool-image-bad": config_request({"image": "r.example.com/app", "archfleetImage": "a b"}),
    "tool-image-args-alone": config_request(
        {"image": "r.example.com/app", "archfleetImageCredentialsId": "pull"}
    ),
    "tool-image-args-multiline": config_request(
        {"image": "r.example.com/app", "archfleetImage": "af:1", "archfleetImageArgs": "a\nb"}
    ),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    requests = {name: request for name, (request, _) in CASES.items()}
    requests.update({f"problem-{name}": request for name, (request, _) in PROBLEMS.items()})
    requests.update(CONFIG_CASES)
    requests["@compile"] = {"target": "@compile"}
    requests["@arguments"] = {"target": "Config", "method": "@field", "args": ["ARGUMENTS"]}
    requests["merge-env-image"] = {
        "target": "Config",
        "method": "mergeEnv",
        "args": [
            {
                "arches": [ARM64],
                "targets": ["r/app:1"],
                "platformList": "linux/arm64",
                "archfleetImage": "r.example.com/platform/archfleet:0.1.0",
            },
            {"linux/arm64": DIGEST},
            "/ws@tmp/archfleet-merge",
            "/ws@tmp/archfleet-merge/registry",
        ],
    }
    requests["merge-env-missing"] = {
        "target": "Config",
        "method": "mergeEnv",
        "args": [
            {"arches": [ARM64], "targets": ["r/app:1"]},
            {"linux/amd64": DIGEST},
            "/ws@tmp/archfleet-merge",
        ],
    }
    # workflow-cps saves the step's locals with Java serialization: JsonSlurper's LazyMap would
    # fail there (NotSerializableException); parseTable hands back plain maps and lists.
    requests["table-serializable"] = {
        "target": "Platforms",
        "method": "parseTable",
        "args": ["@arches"],
        "serialize": True,
    }
    requests["config-serializable"] = {
        **config_request({"image": "r.example.com/a"}),
        "serialize": True,
    }
    names = list(requests)
    answers = call_groovy([requests[n] for n in names], tmp_path_factory.mktemp("groovy-src"))
    return dict(zip(names, answers, strict=True))


@pytest.mark.parametrize("name", ["table-serializable", "config-serializable"])
def test_parsed_json_is_plain_and_serializable(
    results: dict[str, dict[str, Any]], name: str
) -> None:
    answer = results[name]
    assert "error" not in answer, answer
    classes = set(answer["value"])
    assert "java.util.LinkedHashMap" in classes and "java.util.ArrayList" in classes
    assert not [c for c in classes if "Lazy" in c or "groovy.json" in c], classes


@pytest.mark.parametrize("name", sorted(CASES))
def test_pure_helpers(results: dict[str, dict[str, Any]], name: str) -> None:
    expected = CASES[name][1]
    answer = results[name]
    if isinstance(expected, dict) and set(expected) == {"error"}:
        assert "error" in answer, answer
        assert expected["error"] in answer["error"]
        # The library's own exception (sandbox-approved), turned into error() by vars/.
        assert answer["errorClass"] == "archfleet.LibraryError"
    elif isinstance(expected, str) and name.startswith("builder-"):
        assert expected in (answer.get("value") or ""), answer
    else:
        assert answer == {"value": expected}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_tool_check_verdicts(results: dict[str, dict[str, Any]], name: str) -> None:
    answer = results[f"problem-{name}"]
    fragments = PROBLEMS[name][1]
    if fragments is None:
        assert answer == {"value": None}
    else:
        for fragment in fragments:
            assert fragment in answer["value"], answer


def test_tool_image_arguments(results: dict[str, dict[str, Any]]) -> None:
    cfg = results["tool-image"]["value"]
    assert cfg["archfleetImage"] == f"r.example.com/platform/archfleet:0.1.0@{DIGEST}"
    assert cfg["archfleetImageArgs"] == "--network host"
    assert cfg["archfleetImageCredentialsId"] == "pull"
    assert cfg["archfleetImageRegistryUrl"] == "https://r.example.com"
    assert cfg["dockerAuthKey"] == "r.example.com"
    defaults = results["defaults"]["value"]
    assert (defaults["archfleetImage"], defaults["archfleetImageArgs"]) == (None, "")


def test_merge_in_the_image_gets_the_docker_config_not_the_agents_command(
    results: dict[str, dict[str, Any]],
) -> None:
    env = results["merge-env-image"]["value"]
    assert env[-2:] == ["AF_ARCHFLEET=archfleet", "DOCKER_CONFIG=/ws@tmp/archfleet-merge/registry"]
    # The merge's files are outside the workspace.
    assert "AF_OUT=/ws@tmp/archfleet-merge" in env


def test_every_library_file_compiles_on_groovy_2_4(results: dict[str, dict[str, Any]]) -> None:
    compiled = results["@compile"]["value"]
    on_disk = sorted(str(p.relative_to(LIBRARY)) for p in LIBRARY.glob("**/*.groovy"))
    assert compiled == on_disk


def test_defaults_push_on_main_with_arch_labels(results: dict[str, dict[str, Any]]) -> None:
    cfg = results["defaults"]["value"]
    # The GitLab component's defaults: short SHA, ref slug, latest on the primary branch.
    assert cfg["push"] is True and cfg["tags"] == ["3f9c2a7b", "main", "latest"]
    assert cfg["targets"] == [f"registry.example.com/team/app:{t}" for t in cfg["tags"]]
    assert cfg["warnings"] == [] and cfg["lock"] is True and cfg["agentTimeout"] == 60
    assert [(a["platform"], a["label"]) for a in cfg["arches"]] == [
        ("linux/amd64", "amd64"),
        ("linux/arm64", "arm64"),
    ]
    assert cfg["arches"][1]["localRef"] == "localhost/archfleet-build:jenkins-team-app-42-arm64"
    assert cfg["mergeLabel"] == "amd64" and cfg["builder"] == "buildah"
    assert cfg["dockerfile"] == "./Dockerfile" and cfg["registry"] == "registry.example.com"
    assert (cfg["verify"], cfg["checkBinaries"], cfg["allowEmulation"]) == (True, True, False)


def test_tag_build_and_tagged_image(results: dict[str, dict[str, Any]]) -> None:
    cfg = results["tag-build"]["value"]
    # The image's own tag first, then the ref slug and the semver floats; no SHA (no commit
    # known yet: finalTags adds it after checkout), no latest (a tag is no primary branch).
    assert cfg["push"] is True and cfg["tags"] == ["rc", "v1-0-0", "1.0.0", "1.0", "1"]
    assert [a["label"] for a in cfg["arches"]] == ["linux && amd64", "linux && arm64"]


def test_feature_branch_builds_without_push(results: dict[str, dict[str, Any]]) -> None:
    cfg = results["feature-branch"]["value"]
    assert cfg["push"] is False
    assert cfg["buildArgsText"] == "A=1\nB=x y\n"


def test_old_tags_and_main_branch_still_work_with_a_warning(
    results: dict[str, dict[str, Any]],
) -> None:
    cfg = results["deprecated-tags"]["value"]
    assert cfg["tags"] == ["1.4.0", "latest"] and cfg["push"] is True and cfg["primary"] is True
    warnings = "\n".join(cfg["warnings"])
    assert "'tags' is deprecated, use 'imageTags'" in warnings
    assert "mainBranch is deprecated" in warnings and "BRANCH_IS_PRIMARY" in warnings


def test_image_tags_replace_the_defaults_and_latest_can_be_off(
    results: dict[str, dict[str, Any]],
) -> None:
    assert results["image-tags-no-latest"]["value"]["tags"] == ["stable"]


def test_a_branch_named_main_is_not_primary_unless_jenkins_says_so(
    results: dict[str, dict[str, Any]],
) -> None:
    cfg = results["not-primary"]["value"]
    assert cfg["push"] is False and "latest" not in cfg["tags"]


def test_allow_emulation_names_a_fallback_label(results: dict[str, dict[str, Any]]) -> None:
    cfg = results["fallback-label"]["value"]
    assert (cfg["allowEmulation"], cfg["emulationLabel"], cfg["agentTimeout"]) == (True, "qemu", 5)


def test_one_label_for_all_needs_emulation(results: dict[str, dict[str, Any]]) -> None:
    cfg = results["emulated-one-label"]["value"]
    assert [a["label"] for a in cfg["arches"]] == ["linux", "linux"]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("not-a-flag", "verify must be true or false, not 'yes'"),
        ("both-tag-arguments", "pass imageTags only: tags is its old, deprecated name"),
        ("bad-timeout", "agentTimeout must be a whole number from 1 to 10080, not '0'"),
        ("reserved-build-arg", "build arg name 'PATH' is reserved"),
        ("build-arg-newline", "build arg A contains a line break"),
        ("duplicate-platform", "platform linux/arm64 is listed twice"),
        ("merge-env-missing", "no digest came back from the linux/arm64 build"),
        ("tool-image-bad", "archfleetImage 'a b' is not an image reference"),
        ("tool-image-args-alone", "archfleetImageCredentialsId only applies with archfleetImage"),
        ("tool-image-args-multiline", "archfleetImageArgs must be one line of docker run options"),
    ],
)
def test_config_errors(results: dict[str, dict[str, Any]], name: str, fragment: str) -> None:
    assert fragment in results[name]["error"]


def test_help_lists_every_argument_with_type_default_and_example(
    results: dict[str, dict[str, Any]],
) -> None:
    arguments = results["@arguments"]["value"]
    text = (LIBRARY / "vars" / "multiArchBuild.txt").read_text()
    documented = re.findall(r"^  (\w+) \((.+), default: (.+)\)$", text, flags=re.MULTILINE)
    assert [name for name, _, _ in documented] == [a["name"] for a in arguments]
    for argument, (_, kind, default) in zip(arguments, documented, strict=True):
        assert (kind, default) == (argument["type"], argument["default"]), argument["name"]
        assert f"e.g. {argument['name']}: {argument['example']}" in text, argument["name"]


def test_help_text_survives_safe_html() -> None:
    # Jenkins renders vars/*.txt with the configured markup formatter: under Safe HTML (OWASP
    # Markup Formatter) anything in angle brackets is taken for a tag and dropped, so
    # `List<String>` or `<tag>-<arch>` would vanish. Plain text is the same in both.
    text = (LIBRARY / "vars" / "multiArchBuild.txt").read_text()
    assert "<" not in text and ">" not in text
