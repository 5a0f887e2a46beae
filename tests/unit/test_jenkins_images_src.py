"""The shared library's pure helpers for many images, the smoke run and the registry cache
(jenkins/src/archfleet Config and Platforms), on Groovy 2.4.21 through ONE groovy process
(tests/groovy/call.groovy), as tests/unit/test_jenkins_src.py does for the others."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.test_jenkins_src import ARM64, ARM_V7, BUILD, call_groovy

IMAGE = "registry.example.com/team/mono"
DISCOVERED = [
    {"name": "jobs-job-a", "context": "jobs/job-a", "dockerfile": "jobs/job-a/Dockerfile"},
    {"name": "tools-x", "context": "tools/x", "dockerfile": "tools/x/Dockerfile"},
]


def parse(args: dict[str, Any], **build: Any) -> dict[str, Any]:
    return {
        "target": "Config",
        "method": "parse",
        "args": [{"image": IMAGE, **args}, "@arches", {**BUILD, **build}],
    }


def cache_env(
    builder: str, protected: bool, insecure: bool = False, push: bool = True
) -> dict[str, Any]:
    cfg = {
        "cache": True,
        "builder": builder,
        "insecure": insecure,
        "cacheRepository": f"{IMAGE}/buildcache",
        "cacheProtected": protected,
        "push": push,
    }
    return {"target": "Config", "method": "cacheEnv", "args": [cfg, ARM64]}


REQUESTS: dict[str, dict[str, Any]] = {
    "images": parse(
        {"images": [{"name": "a"}, {"name": "b", "context": "b", "dockerfile": "b/C"}]}
    ),
    "discover": parse({"images": "discover"}),
    "discovered": {
        "target": "Config",
        "method": "discovered",
        "args": [json.dumps(DISCOVERED)],
    },
    "discovered-none": {"target": "Config", "method": "discovered", "args": ["[]"]},
    "discovered-garbage": {"target": "Config", "method": "discovered", "args": ["NAME CONTEXT"]},
    "for-image": {
        "target": "Config",
        "method": "forImage",
        "args": [
            {
                "image": IMAGE,
                "tags": ["1.0"],
                "cache": True,
                "cacheRepository": f"{IMAGE}/buildcache",
                "cacheRepositoryGiven": False,
                "name": None,
            },
            DISCOVERED[0],
        ],
    },
    "for-image-own-cache": {
        "target": "Config",
        "method": "forImage",
        "args": [
            {
                "image": IMAGE,
                "tags": [],
                "cache": True,
                "cacheRepository": "r.example.com/cache",
                "cacheRepositoryGiven": True,
            },
            DISCOVERED[1],
        ],
    },
    "build-env-image": {
        "target": "Config",
        "method": "buildEnv",
        "args": [
            {"name": "tools-x", "image": f"{IMAGE}/tools-x", "cache": False},
            {**ARM64, "localRef": "localhost/archfleet-build:jenkins-x-1-arm64"},
            "/w",
        ],
    },
    "cache-buildah-protected": cache_env("buildah", True),
    "cache-buildah-change": cache_env("buildah", False),
    "cache-buildx-change-insecure": cache_env("buildx", False, insecure=True),
    "cache-off": {"target": "Config", "method": "cacheEnv", "args": [{"cache": False}, ARM64]},
    # push off: no login, so the cache is only read.
    "cache-buildah-change-no-push": cache_env("buildah", False, push=False),
    "cache-buildah-protected-no-push": cache_env("buildah", True, push=False),
    "cache-buildx-change-no-push": cache_env("buildx", False, push=False),
    # The default: on with buildah (the component's cache input), off with buildx.
    "cache-default-buildah": parse({}),
    "cache-default-buildx": parse({"builder": "buildx"}),
    "cache-buildx-asked": parse({"builder": "buildx", "cache": True}),
    "cache-buildx-asked-no-push": parse(
        {"builder": "buildx", "cache": True}, BRANCH_NAME="feature/x", BRANCH_IS_PRIMARY=None
    ),
    "cache-buildah-off": parse({"cache": False}),
    "cache-repository-buildah-default": parse({"cacheRepository": "r.example.com/cache/app"}),
    "cache-repository-buildx-default": parse(
        {"builder": "buildx", "cacheRepository": "r.example.com/cache/app"}
    ),
    "cache-repository-cache-off": parse(
        {"cache": False, "cacheRepository": "r.example.com/cache/app"}
    ),
    # discover: archfleet discover-images' options, by its names.
    "discover-options": parse(
        {
            "images": "discover",
            "discover": {
                "root": "jobs",
                "pattern": ["*/Dockerfile.prod", "-odd"],
                "exclude": "legacy",
                "defaultExcludes": False,
                "rootName": "top",
            },
        }
    ),
    "discover-no-options": parse({"images": "discover"}),
    "discover-not-discovering": parse({"discover": {"root": "jobs"}}),
    "discover-list": parse({"images": [{"name": "a"}], "discover": {"root": "jobs"}}),
    "discover-not-a-map": parse({"images": "discover", "discover": "jobs"}),
    "discover-unknown": parse({"images": "discover", "discover": {"excludes": ["x"]}}),
    "discover-absolute-root": parse({"images": "discover", "discover": {"root": "/srv"}}),
    "discover-parent-root": parse({"images": "discover", "discover": {"root": "../other"}}),
    "discover-empty-exclude": parse({"images": "discover", "discover": {"exclude": []}}),
    "discover-exclude-number": parse({"images": "discover", "discover": {"exclude": 3}}),
    "discover-blank-pattern": parse({"images": "discover", "discover": {"pattern": ["a", " "]}}),
    "discover-root-name-line-break": parse(
        {"images": "discover", "discover": {"rootName": "a\nb"}}
    ),
    "discover-default-excludes-word": parse(
        {"images": "discover", "discover": {"defaultExcludes": "false"}}
    ),
    "discover-env": {
        "target": "Config",
        "method": "discoverEnv",
        "args": [
            {
                "discoverOptions": {
                    "root": "jobs",
                    "pattern": ["*/Dockerfile.prod", "$(id)"],
                    "exclude": ["legacy"],
                    "defaultExcludes": False,
                    "rootName": "top",
                },
                "archfleet": "/opt/archfleet/bin/archfleet",
                "archfleetImage": None,
            },
            "/w",
        ],
    },
    "discover-env-defaults": {
        "target": "Config",
        "method": "discoverEnv",
        "args": [{"discoverOptions": None, "archfleet": None, "archfleetImage": None}, "/w"],
    },
    # Which builds write the protected cache (build.sh archfleet_protected_pipeline's twin).
    "protected-primary": parse({"cache": True}),
    "protected-change-request": parse(
        {"cache": True}, BRANCH_NAME="PR-4", BRANCH_IS_PRIMARY=None, CHANGE_ID="4"
    ),
    "protected-feature": parse({"cache": True}, BRANCH_NAME="feature/x", BRANCH_IS_PRIMARY=None),
    "protected-tag": parse({"cache": True}, BRANCH_NAME="v1.0.0", TAG_NAME="v1.0.0"),
    "protected-plain-job": parse({"cache": True}, BRANCH_NAME=None, BRANCH_IS_PRIMARY=None),
    "smoke-ok": {
        "target": "Platforms",
        "method": "smokeProblem",
        "args": ["@table", ARM64, "uname -m", "r/a@sha256:1", 0, "hello\naarch64\n\n"],
    },
    "smoke-other-output": {
        "target": "Platforms",
        "method": "smokeProblem",
        "args": ["@table", ARM64, "app --version", "r/a@sha256:1", 0, "app 1.0"],
    },
    "smoke-wrong-machine": {
        "target": "Platforms",
        "method": "smokeProblem",
        "args": ["@table", ARM64, "uname -m", "r/a@sha256:1", 0, "x86_64"],
    },
    "smoke-armv8l-is-arm-v7": {
        "target": "Platforms",
        "method": "smokeProblem",
        "args": ["@table", ARM_V7, "uname -m", "r/a@sha256:1", 0, "armv8l"],
    },
    "smoke-exit": {
        "target": "Platforms",
        "method": "smokeProblem",
        "args": ["@table", ARM64, "uname -m", "r/a@sha256:1", 3, None],
    },
    "smoke-env": {
        "target": "Config",
        "method": "smokeEnv",
        "args": [
            {
                "image": IMAGE,
                "registry": "registry.example.com",
                "builder": "buildah",
                "smokeCommand": "uname -m",
                "insecure": False,
            },
            ARM_V7,
            "sha256:" + "ab" * 32,
            "/w",
        ],
    },
}


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    names = list(REQUESTS)
    found = call_groovy([REQUESTS[n] for n in names], tmp_path_factory.mktemp("groovy-images"))
    return dict(zip(names, found, strict=True))


def value(answers: dict[str, dict[str, Any]], name: str) -> Any:
    assert "error" not in answers[name], answers[name]
    return answers[name]["value"]


def test_images_default_context_and_dockerfile(answers: dict[str, dict[str, Any]]) -> None:
    cfg = value(answers, "images")
    assert cfg["images"] == [
        {"name": "a", "context": ".", "dockerfile": "./Dockerfile"},
        {"name": "b", "context": "b", "dockerfile": "b/C"},
    ]
    assert cfg["discover"] is False and cfg["builder"] == "buildah"
    discover = value(answers, "discover")
    assert discover["discover"] is True and discover["images"] is None


def test_discovery_output_is_read_and_checked(answers: dict[str, dict[str, Any]]) -> None:
    assert value(answers, "discovered") == DISCOVERED
    assert "found no image" in answers["discovered-none"]["error"]
    assert "printed no JSON list" in answers["discovered-garbage"]["error"]


def test_each_image_gets_its_repository_lock_targets_and_cache(
    answers: dict[str, dict[str, Any]],
) -> None:
    cfg = value(answers, "for-image")
    assert (cfg["name"], cfg["image"], cfg["context"], cfg["dockerfile"]) == (
        "jobs-job-a",
        f"{IMAGE}/jobs-job-a",
        "jobs/job-a",
        "jobs/job-a/Dockerfile",
    )
    assert cfg["lockResource"] == f"archfleet {IMAGE}/jobs-job-a"
    assert cfg["targets"] == [f"{IMAGE}/jobs-job-a:1.0"]
    assert cfg["cacheRepository"] == f"{IMAGE}/jobs-job-a/buildcache"
    assert value(answers, "for-image-own-cache")["cacheRepository"] == "r.example.com/cache/tools-x"


def test_an_images_build_has_its_own_local_name(answers: dict[str, dict[str, Any]]) -> None:
    env = value(answers, "build-env-image")
    assert "AF_LOCAL_REF=localhost/archfleet-build/tools-x:jenkins-x-1-arm64" in env
    assert f"AF_IMAGE={IMAGE}/tools-x" in env
    assert not [e for e in env if e.startswith("AF_CACHE_")]


def test_cache_refs_follow_the_component(answers: dict[str, dict[str, Any]]) -> None:
    """ci-templates/src/build.sh archfleet_cache_ref / archfleet_cache_args."""
    repo = f"{IMAGE}/buildcache"
    assert value(answers, "cache-buildah-protected") == [
        f"AF_CACHE_FROM={repo}/arm64",
        f"AF_CACHE_TO={repo}/arm64",
    ]
    assert value(answers, "cache-buildah-change") == [
        f"AF_CACHE_FROM={repo}/arm64 {repo}/unprotected-arm64",
        f"AF_CACHE_TO={repo}/unprotected-arm64",
    ]
    insecure = ",registry.insecure=true"
    assert value(answers, "cache-buildx-change-insecure") == [
        f"AF_CACHE_FROM=type=registry,ref={repo}:arm64{insecure} "
        f"type=registry,ref={repo}:unprotected-arm64{insecure}",
        f"AF_CACHE_TO=type=registry,ref={repo}:unprotected-arm64,mode=max{insecure}",
    ]
    assert value(answers, "cache-off") == []


def test_a_build_that_pushes_nothing_only_reads_the_cache(
    answers: dict[str, dict[str, Any]],
) -> None:
    """No login without push (no credential is bound): --cache-from only, never --cache-to,
    whose failure would fail the build (buildah's pushCache), while a failed read does not."""
    repo = f"{IMAGE}/buildcache"
    assert value(answers, "cache-buildah-change-no-push") == [
        f"AF_CACHE_FROM={repo}/arm64 {repo}/unprotected-arm64",
    ]
    assert value(answers, "cache-buildah-protected-no-push") == [f"AF_CACHE_FROM={repo}/arm64"]
    # buildx: BuildKit fails the build on a refused cache import, so no cache at all.
    assert value(answers, "cache-buildx-change-no-push") == []


def test_the_cache_default_follows_the_builder(answers: dict[str, dict[str, Any]]) -> None:
    buildah = value(answers, "cache-default-buildah")
    assert buildah["cache"] is True and buildah["cacheRepository"] == f"{IMAGE}/buildcache"
    buildx = value(answers, "cache-default-buildx")
    assert buildx["cache"] is False and buildx["cacheRepository"] is None
    assert value(answers, "cache-buildx-asked")["cache"] is True
    assert not [w for w in value(answers, "cache-buildx-asked")["warnings"] if "cache" in w]
    assert value(answers, "cache-buildx-asked-no-push")["warnings"] == [
        "multiArchBuild: push is off, so no registry login: this buildx build uses no registry "
        "cache (BuildKit fails a build whose cache import is refused)"
    ]
    assert not [w for w in value(answers, "cache-default-buildah")["warnings"] if "cache" in w]
    assert value(answers, "cache-buildah-off")["cache"] is False
    assert (
        value(answers, "cache-repository-buildah-default")["cacheRepository"]
        == "r.example.com/cache/app"
    )
    for name in ("cache-repository-buildx-default", "cache-repository-cache-off"):
        assert answers[name]["error"].startswith(
            "cacheRepository only applies with the cache on: cache: true (the default with "
            "builder 'buildah'; with 'buildx' it is off unless asked)"
        ), name


def test_discover_options_take_the_tools_names(answers: dict[str, dict[str, Any]]) -> None:
    assert value(answers, "discover-options")["discoverOptions"] == {
        "root": "jobs",
        "pattern": ["*/Dockerfile.prod", "-odd"],
        "exclude": ["legacy"],
        "defaultExcludes": False,
        "rootName": "top",
    }
    assert value(answers, "discover-no-options")["discoverOptions"] == {
        "root": ".",
        "pattern": [],
        "exclude": [],
        "defaultExcludes": True,
        "rootName": None,
    }


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("discover-not-discovering", "discover only applies with images: 'discover'"),
        ("discover-list", "discover only applies with images: 'discover'"),
        ("discover-not-a-map", "discover must be a map of archfleet discover-images options"),
        (
            "discover-unknown",
            "discover has unknown key(s) excludes; known: root, pattern, exclude, "
            "defaultExcludes, rootName",
        ),
        ("discover-absolute-root", "discover.root '/srv' must be a directory inside the workspace"),
        ("discover-parent-root", "discover.root '../other' must be a directory inside"),
        ("discover-empty-exclude", "discover.exclude must be a glob or a non-empty list of globs"),
        ("discover-exclude-number", "discover.exclude must be a glob or a non-empty list of globs"),
        ("discover-blank-pattern", "discover.pattern[2] must be a non-empty string"),
        ("discover-root-name-line-break", "discover.rootName contains a line break"),
        ("discover-default-excludes-word", "discover.defaultExcludes must be true or false"),
    ],
)
def test_bad_discover_options_are_clear_errors(
    answers: dict[str, dict[str, Any]], name: str, message: str
) -> None:
    assert message in answers[name].get("error", ""), answers[name]


def test_discover_env_carries_each_option_as_a_value(answers: dict[str, dict[str, Any]]) -> None:
    """resources/archfleet/discover-images.sh reads these; globs one a line."""
    env = value(answers, "discover-env")
    assert env[:6] == [
        "AF_OUT=/w",
        "AF_DISCOVER_ROOT=jobs",
        "AF_DISCOVER_PATTERNS=*/Dockerfile.prod\n$(id)",
        "AF_DISCOVER_EXCLUDES=legacy",
        "AF_DISCOVER_DEFAULT_EXCLUDES=0",
        "AF_DISCOVER_ROOT_NAME=top",
    ]
    assert "AF_ARCHFLEET=/opt/archfleet/bin/archfleet" in env
    assert value(answers, "discover-env-defaults")[:6] == [
        "AF_OUT=/w",
        "AF_DISCOVER_ROOT=.",
        "AF_DISCOVER_PATTERNS=",
        "AF_DISCOVER_EXCLUDES=",
        "AF_DISCOVER_DEFAULT_EXCLUDES=1",
        "AF_DISCOVER_ROOT_NAME=",
    ]


@pytest.mark.parametrize(
    ("name", "protected"),
    [
        ("protected-primary", True),
        ("protected-change-request", False),
        ("protected-feature", False),
        ("protected-tag", True),
        ("protected-plain-job", True),
    ],
)
def test_which_builds_write_the_protected_cache(
    answers: dict[str, dict[str, Any]], name: str, protected: bool
) -> None:
    cfg = value(answers, name)
    assert cfg["cacheProtected"] is protected
    assert cfg["cacheRepository"] == f"{IMAGE}/buildcache"


def test_smoke_verdicts(answers: dict[str, dict[str, Any]]) -> None:
    assert value(answers, "smoke-ok") is None
    assert value(answers, "smoke-other-output") is None
    assert value(answers, "smoke-armv8l-is-arm-v7") is None
    assert value(answers, "smoke-wrong-machine") == (
        "r/a@sha256:1 pulled as linux/arm64 runs as x86_64 (linux/amd64): the index's "
        "linux/arm64 entry is another platform's image"
    )
    assert value(answers, "smoke-exit") == (
        "'uname -m' failed in r/a@sha256:1 pulled as linux/arm64 (exit code 3; its output is above)"
    )


def test_smoke_env_pins_the_index_digest_and_the_platform(
    answers: dict[str, dict[str, Any]],
) -> None:
    env = value(answers, "smoke-env")
    assert env == [
        "AF_ACTION=smoke",
        "AF_PLATFORM=linux/arm/v7",
        "AF_OS=linux",
        "AF_ARCHITECTURE=arm",
        "AF_VARIANT=v7",
        "AF_BUILDER=buildah",
        "AF_REGISTRY=registry.example.com",
        f"AF_SMOKE_REF={IMAGE}@sha256:{'ab' * 32}",
        "AF_SMOKE_COMMAND=uname -m",
        "AF_OUT=/w",
        "AF_INSECURE=0",
    ]
