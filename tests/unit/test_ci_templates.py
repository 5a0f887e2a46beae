"""The CI templates: committed files equal the rendering, the one arch mapping is archmap's,
every input is documented, and the job scripts' logic (run in dash and busybox ash)."""

from __future__ import annotations

import os
import re
import shutil
import string
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from toolkit import archmap, ci_templates
from toolkit.ci_templates import (
    COMPONENT_PATH,
    INCLUDE_PATH,
    INPUTS,
    LIBRARY_JOB_PREFIX,
    README_PATH,
    ArchJob,
    Flavour,
    TemplateError,
    arch_jobs,
    default_root,
    gitlab_tag_pattern,
    render_readme,
    shell_library,
    stale_files,
)
from toolkit.registry.manifest import Platform

ROOT = default_root()


def component_documents() -> tuple[dict[str, object], dict[str, object]]:
    text = (ROOT / COMPONENT_PATH).read_text(encoding="utf-8")
    header, jobs = ci_templates.load_rendered(text)
    return header, jobs


def test_committed_files_equal_the_rendering() -> None:
    assert stale_files(ROOT) == [], "run `python -m toolkit.ci_templates` and commit"


def test_readme_documents_every_input_with_its_default() -> None:
    readme = (ROOT / README_PATH).read_text(encoding="utf-8")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_]+)` \|.*$", readme, re.M)}
    header, _ = component_documents()
    spec_inputs = header["spec"]["inputs"]  # type: ignore[index]
    assert list(rows) == list(spec_inputs) == [inp.name for inp in INPUTS]
    for inp in INPUTS:
        row = rows[inp.name]
        assert spec_inputs[inp.name]["default"] == inp.default
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        default_cell = cells[2]
        if isinstance(inp.default, bool):
            assert default_cell == f"`{str(inp.default).lower()}`"
        elif isinstance(inp.default, list):
            flow = yaml.safe_dump(inp.default, default_flow_style=True).strip()
            assert flow in default_cell or all(i in default_cell for i in inp.default), row
        else:
            assert default_cell == (f"`{inp.default}`" if inp.default else '`""`'), row
        assert inp.description.split("`")[0].strip()[:20] in row


def test_readme_markers_are_required() -> None:
    with pytest.raises(TemplateError, match=r"README\.md: expected the markers"):
        render_readme("# no markers here\n")


def test_component_spec_matches_the_input_table() -> None:
    header, _ = component_documents()
    spec_inputs = header["spec"]["inputs"]  # type: ignore[index]
    for inp in INPUTS:
        entry = spec_inputs[inp.name]
        assert entry["type"] == inp.type  # explicit on every input
        assert tuple(entry.get("options", ())) == inp.options
        assert entry["description"]
    # Every interpolation names a declared input.
    text = (ROOT / COMPONENT_PATH).read_text(encoding="utf-8").split("\n---\n", 1)[1]
    used = set(re.findall(r"\$\[\[ inputs\.([a-z_]+) \]\]", text))
    assert used == set(spec_inputs)


def test_one_build_and_one_smoke_job_per_archmap_platform() -> None:
    _, jobs = component_documents()
    for platform in archmap.export()["platforms"]:
        arch = Platform.parse(platform).tag_suffix
        build = jobs[f"$[[ inputs.job_prefix ]]-build-{arch}"]
        assert build["variables"]["ARCHFLEET_PLATFORM"] == platform  # type: ignore[index]
        assert build["tags"] == ["$[[ inputs.runner_tag_pattern ]]"]  # type: ignore[index]
        assert f"$[[ inputs.job_prefix ]]-smoke-{arch}" in jobs


def test_default_runner_tag_pattern_is_archmaps() -> None:
    for job in arch_jobs():
        for pattern in (archmap.DEFAULT_TAG_PATTERN, "linux-{arch}", "{os}-{architecture}"):
            expanded = string.Template(gitlab_tag_pattern(pattern)).substitute(job.variables)
            assert expanded == archmap.runner_tag(job.platform, pattern)
    default = next(i for i in INPUTS if i.name == "runner_tag_pattern").default
    assert default == gitlab_tag_pattern(archmap.DEFAULT_TAG_PATTERN) == "${ARCHFLEET_ARCH}"


def test_include_variant_pins_archmaps_runner_tags() -> None:
    [jobs] = ci_templates.load_rendered((ROOT / INCLUDE_PATH).read_text(encoding="utf-8"))
    for job in arch_jobs():
        assert jobs[f"archfleet-build-{job.arch}"]["tags"] == [archmap.runner_tag(job.platform)]
    assert "$[[" not in (ROOT / INCLUDE_PATH).read_text(encoding="utf-8")
    # Every setting but the component-only ones is a variable with the input's default.
    names = {i.variable for i in INPUTS if not i.component_only}
    assert set(jobs["variables"]) == names
    assert jobs["variables"]["ARCHFLEET_PLATFORMS"] == "linux/amd64 linux/arm64"


def test_component_quotes_every_interpolation() -> None:
    # Text interpolation pastes JSON for arrays and booleans: only single quotes keep it a string.
    text = (ROOT / COMPONENT_PATH).read_text(encoding="utf-8").split("\n---\n", 1)[1]
    for line in text.splitlines():
        if "$[[" in line:
            assert 0 <= line.find("'") < line.find("$[["), line


def test_platform_regex_matches_every_list_form() -> None:
    arm64 = ArchJob(Platform.parse("linux/arm64"))
    regex = re.compile(arm64.selected_regex().strip("/"))
    for text in (
        '["linux/amd64", "linux/arm64"]',  # GitLab (Ruby) writes an array so
        '["linux/amd64","arm64"]',  # gitlab-ci-local (JSON)
        "linux/amd64 linux/arm64/v8",
        "linux/amd64,arm64",
    ):
        assert regex.search(text), text
    for text in ('["linux/amd64"]', "linux/arm64x", "linux/arm/v7", "xarm64"):
        assert not regex.search(text), text


# --- the job scripts -----------------------------------------------------------------------


def _shells() -> list[list[str]]:
    shells = [["sh"]]
    busybox = shutil.which("busybox")
    cached = Path(os.environ.get("ARCHFLEET_CACHE", Path.home() / ".cache" / "archfleet"))
    candidate = cached / "busybox" / "amd64" / "bin" / "busybox"
    if busybox is None and candidate.is_file():
        busybox = str(candidate)
    if busybox:
        shells.append([busybox, "sh"])
    return shells


SHELLS = _shells()


def sh(
    shell: list[str],
    script: str,
    env: Mapping[str, str] | None = None,
    parts: tuple[str, ...] = (
        "archmap",
        "common",
        "lists",
        "engines",
        "auth",
        "guard",
        "build",
        "tool",
        "merge",
    ),
    path_prefix: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    library = shell_library(ROOT, parts)
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    if path_prefix:
        base["PATH"] = f"{path_prefix}:{base['PATH']}"
    return subprocess.run(
        [*shell, "-c", f"{library}\n{script}"],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@pytest.fixture(params=SHELLS, ids=lambda s: os.path.basename(s[0]))
def shell(request: pytest.FixtureRequest) -> list[str]:
    chosen: list[str] = request.param
    return chosen


@pytest.mark.parametrize(
    ("mode", "value", "items"),
    [
        ("words", 'inputs.platforms=["linux/amd64", "arm64"]', ["linux/amd64", "arm64"]),
        ("words", 'inputs.platforms=["linux/amd64","arm64"]', ["linux/amd64", "arm64"]),
        ("words", "linux/amd64 arm64,linux/riscv64", ["linux/amd64", "arm64", "linux/riscv64"]),
        ("words", "inputs.image_tags=[]", []),
        (
            "lines",
            'inputs.build_args=["A=1", "B=two words", "C=say \\"hi\\""]',
            ["A=1", "B=two words", 'C=say "hi"'],
        ),
        ("lines", "A=1\n  B=two words  \n\n", ["A=1", "B=two words"]),
    ],
)
def test_list_forms(shell: list[str], mode: str, value: str, items: list[str]) -> None:
    done = sh(shell, f'archfleet_list {mode} "$VALUE"', {"VALUE": value})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == items


def test_requested_platforms_are_canonical_and_checked(shell: list[str]) -> None:
    ok = sh(
        shell,
        "archfleet_requested_platforms",
        {"ARCHFLEET_PLATFORMS": 'inputs.platforms=["amd64", "linux/arm64/v8", "arm/v7"]'},
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    unknown = sh(shell, "archfleet_requested_platforms", {"ARCHFLEET_PLATFORMS": "linux/sparc"})
    assert unknown.returncode == 1
    assert "unknown platform 'linux/sparc' in platforms; archfleet knows: linux/386" in (
        unknown.stderr
    )
    twice = sh(shell, "archfleet_requested_platforms", {"ARCHFLEET_PLATFORMS": "arm64 linux/arm64"})
    assert twice.returncode == 1 and "linux/arm64 is listed twice" in twice.stderr


def test_shell_archmap_is_archmaps(shell: list[str]) -> None:
    data = archmap.export()
    script = 'for m in $MACHINES; do echo "$m $(archfleet_uname_platform $m)"; done'
    done = sh(shell, script, {"MACHINES": " ".join(data["unameToPlatform"])})
    assert dict(line.split() for line in done.stdout.splitlines()) == data["unameToPlatform"]
    for platform in data["platforms"]:
        arch = sh(shell, f"archfleet_platform_arch {platform}").stdout.strip()
        assert arch == Platform.parse(platform).tag_suffix


@pytest.mark.parametrize(
    ("env", "tags"),
    [
        (
            {"CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"},
            ["1a2b3c4d", "main", "latest"],
        ),
        ({"CI_COMMIT_BRANCH": "release-1", "CI_DEFAULT_BRANCH": "main"}, ["1a2b3c4d", "main"]),
        ({"CI_COMMIT_TAG": "v1.4.2"}, ["1a2b3c4d", "main", "1.4.2", "1.4", "1"]),
        ({"CI_COMMIT_TAG": "2.0.0-rc.1"}, ["1a2b3c4d", "main", "2.0.0-rc.1"]),
        ({"CI_COMMIT_TAG": "v1.4"}, ["1a2b3c4d", "main"]),
        (
            {"CI_COMMIT_TAG": "v1.4.2", "ARCHFLEET_OPTIONS": "tag_semver=false"},
            ["1a2b3c4d", "main"],
        ),
    ],
)
def test_release_tags(shell: list[str], env: dict[str, str], tags: list[str]) -> None:
    base = {
        # As the runner hands the job the tags input: variables already expanded, one empty.
        "ARCHFLEET_IMAGE_TAGS": 'inputs.image_tags=["1a2b3c4d", "main", "", "main"]',
        "ARCHFLEET_OPTIONS": "tag_latest=true tag_semver=true",
    }
    done = sh(shell, "archfleet_release_tags", {**base, **env})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == tags


@pytest.mark.parametrize(
    ("source", "protected", "mr_iid"),
    [
        ("merge_request_event", "true", ""),
        ("push", "false", ""),
        # The child pipeline of a merge-request pipeline keeps the merge request's variables.
        ("parent_pipeline", "true", "7"),
    ],
)
def test_release_mode_refuses_mr_and_unprotected_pipelines(
    shell: list[str], source: str, protected: str, mr_iid: str
) -> None:
    env = {
        "ARCHFLEET_MERGE_MODE": "release",
        "ARCHFLEET_IMAGE_TAGS": "v1 latest",
        "CI_PIPELINE_SOURCE": source,
        "CI_COMMIT_REF_PROTECTED": protected,
        "CI_MERGE_REQUEST_IID": mr_iid,
    }
    done = sh(shell, "archfleet_merge_tags", env)
    assert done.returncode == 1 and done.stdout == ""
    assert "release tags move only in pipelines of protected branches and tags" in done.stderr
    scratch = sh(
        shell,
        "archfleet_merge_tags",
        {**env, "ARCHFLEET_MERGE_MODE": "scratch", "ARCHFLEET_SCRATCH_TAG": "ci-feature"},
    )
    assert scratch.stdout.split() == ["ci-feature"]


def _fake_uname(tmp_path: Path, machine: str) -> Path:
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "uname").write_text(f"#!/bin/sh\necho {machine}\n")
    (shim / "uname").chmod(0o755)
    return shim


GUARD_ENV = {
    "ARCHFLEET_PLATFORM": "linux/arm64",
    "CI_JOB_NAME": "archfleet-build-arm64",
    "CI_RUNNER_DESCRIPTION": "x86-runner-3",
    "CI_RUNNER_ID": "17",
    "CI_RUNNER_TAGS": '["arm64"]',
}


def test_native_guard_fails_on_another_arch(tmp_path: Path) -> None:
    shim = _fake_uname(tmp_path, "x86_64")
    done = sh(["sh"], "archfleet_native_guard; echo after", GUARD_ENV, path_prefix=shim)
    assert done.returncode == 1 and "after" not in done.stdout
    assert (
        "native guard: archfleet-build-arm64 must run linux/arm64 natively, but it landed on "
        "runner 'x86-runner-3' (id 17, tags: [\"arm64\"]), a x86_64 CPU (linux/amd64)"
    ) in done.stderr
    emulated = sh(
        ["sh"],
        "archfleet_native_guard; echo after",
        {**GUARD_ENV, "ARCHFLEET_OPTIONS": "allow_emulation=true"},
        path_prefix=shim,
    )
    assert emulated.returncode == 0 and "after" in emulated.stdout
    assert "emulated, because allow_emulation is true" in emulated.stderr


@pytest.mark.parametrize("machine", ["aarch64", "arm64"])
def test_native_guard_passes_natively(tmp_path: Path, machine: str) -> None:
    shim = _fake_uname(tmp_path, machine)
    done = sh(["sh"], "archfleet_native_guard", GUARD_ENV, path_prefix=shim)
    assert done.returncode == 0, done.stderr
    assert "native" in done.stderr


def test_login_never_shows_the_password(tmp_path: Path) -> None:
    shim = tmp_path / "bin"
    shim.mkdir()
    record = tmp_path / "login"
    (shim / "docker").write_text(f'#!/bin/sh\necho "$*" > {record}\ncat > {record}.stdin\n')
    (shim / "docker").chmod(0o755)
    env = {
        "ARCHFLEET_IMAGE": "registry.example.com/team/app",
        "CI_REGISTRY": "registry.example.com",
        "CI_REGISTRY_USER": "gitlab-ci-token",
        "CI_REGISTRY_PASSWORD": "s3cret-job-token",
    }
    done = sh(["sh"], "archfleet_login docker", env, path_prefix=shim)
    assert done.returncode == 0, done.stderr
    assert record.read_text().split() == [
        "login",
        "--username",
        "gitlab-ci-token",
        "--password-stdin",
        "registry.example.com",
    ]
    assert record.with_suffix(".stdin").read_text().strip() == "s3cret-job-token"
    assert "s3cret" not in done.stdout + done.stderr
    elsewhere = sh(
        ["sh"],
        "archfleet_login docker",
        {**env, "ARCHFLEET_IMAGE": "quay.io/x/y"},
        path_prefix=shim,
    )
    assert "no login to quay.io" in elsewhere.stderr


def test_logged_command_hides_build_arg_values(shell: list[str]) -> None:
    done = sh(shell, 'archfleet_show_args build --build-arg "TOKEN=s3cret x" --file F .')
    assert done.stdout.strip() == "build --build-arg TOKEN=... --file F ."


def test_sources_keep_literal_blocks(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "bad.sh").write_text("x() {\n\techo tab\n}\n")
    with pytest.raises(TemplateError, match=r"bad.sh:2: tab or trailing blank"):
        shell_library(tmp_path, ["bad"])


def test_flavours_agree_on_the_jobs() -> None:
    component = ci_templates.resolve_references(ci_templates.jobs(ROOT, Flavour(component=True)))
    plain = ci_templates.resolve_references(ci_templates.jobs(ROOT, Flavour(component=False)))
    prefix = "$[[ inputs.job_prefix ]]"
    # The component alone picks per-builder settings by name (`.archfleet-builder-<builder>`).
    builders = {f".{prefix}-builder-buildx", f".{prefix}-builder-buildah"}
    assert [
        name.replace(prefix, "archfleet") for name in component if name not in builders
    ] == list(plain)
    for name, job in plain.items():
        # The library's hidden jobs are named by content, the same in both flavours.
        twin = name if name.startswith(LIBRARY_JOB_PREFIX) else name.replace("archfleet", prefix, 1)
        assert job.get("script") == component[twin].get("script")


# --- the shell library, once per file --------------------------------------------------------

_DEFINITION = re.compile(r"^ *(archfleet_[a-z_]+)\(\) \{$", re.M)


@pytest.mark.parametrize("path", [COMPONENT_PATH, INCLUDE_PATH])
def test_each_library_function_is_written_once_per_file(path: str) -> None:
    text = (ROOT / path).read_text(encoding="utf-8")
    defined = _DEFINITION.findall(text)
    assert "archfleet_build" in defined and "archfleet_fail" in defined
    assert sorted(defined) == sorted(set(defined)), "a library part is written twice"
    # ...and every job still runs with the functions it calls, once GitLab resolved the tags.
    *_, jobs = ci_templates.load_rendered(text)
    prefix = "$[[ inputs.job_prefix ]]" if path == COMPONENT_PATH else "archfleet"
    for name, calls in (
        (f".{prefix}-build", "archfleet_build"),
        (f"{prefix}-verify", "archfleet_verify"),
    ):
        script = "\n".join(jobs[name]["script"])
        assert f"\n{calls}() {{\n" in script, name
        assert _DEFINITION.findall(script).count("archfleet_fail") == 1, name
        assert script.rstrip().endswith(calls), name


def test_library_jobs_are_named_by_content_not_by_input() -> None:
    # GitLab does not interpolate inside a `!reference` tag (gitlabhq
    # lib/gitlab/ci/interpolation/config.rb walks hashes, arrays and strings only): the names
    # the references use carry no input, and are the same in both flavours and inclusions.
    component = ci_templates.jobs(ROOT, Flavour(component=True))
    plain = ci_templates.jobs(ROOT, Flavour(component=False))
    library = {n for n in component if n.startswith(LIBRARY_JOB_PREFIX)}
    assert library == {n for n in plain if n.startswith(LIBRARY_JOB_PREFIX)}
    assert len(library) == len(set(ci_templates.library_jobs(ROOT))) >= 10
    referenced = set()
    for job in component.values():
        for item in job.get("script", []):
            if isinstance(item, ci_templates.Reference):
                assert "$[[" not in "".join(item)
                assert item[1:] == ("script",)
                referenced.add(item[0])
    assert referenced == library
    # A change in a part's text renames its job: two versions side by side keep their own.
    text = "x() {\n  :\n}\n"
    assert ci_templates.library_job_name("common", text) != ci_templates.library_job_name(
        "common", text + "y() {\n  :\n}\n"
    )
    assert "!reference [.archfleet-lib-" in (ROOT / COMPONENT_PATH).read_text(encoding="utf-8")


def test_references_resolve_as_gitlab_resolves_them() -> None:
    text = (
        ".lib:\n  script:\n    - a\n    - b\n"
        "job:\n  script:\n    - !reference [.lib, script]\n    - c\n"
        "  variables: !reference [.vars, variables]\n"
        ".vars:\n  variables:\n    X: '1'\n"
    )
    [data] = ci_templates.load_rendered(text)
    assert data["job"] == {"script": ["a", "b", "c"], "variables": {"X": "1"}}
    with pytest.raises(TemplateError, match=r"!reference \['\.nope', 'script'\]: could not"):
        ci_templates.load_rendered("job:\n  script:\n    - !reference [.nope, script]\n")
    with pytest.raises(TemplateError, match="expected a sequence"):
        ci_templates.load_rendered("job:\n  script: !reference .lib\n")


@pytest.mark.parametrize(
    ("env", "writes"),
    [
        ({"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_REF_PROTECTED": "true"}, "amd64"),
        ({"CI_PIPELINE_SOURCE": "merge_request_event", "CI_COMMIT_REF_PROTECTED": "true"}, "mr"),
        # The child of a merge-request pipeline: source parent_pipeline, the MR's variables kept.
        (
            {
                "CI_PIPELINE_SOURCE": "parent_pipeline",
                "CI_COMMIT_REF_PROTECTED": "true",
                "CI_MERGE_REQUEST_IID": "7",
            },
            "mr",
        ),
        ({"CI_PIPELINE_SOURCE": "parent_pipeline", "CI_COMMIT_REF_PROTECTED": "true"}, "amd64"),
    ],
    ids=["protected", "mr", "child-of-mr", "child-of-protected"],
)
def test_only_protected_pipelines_write_the_cache_release_builds_read(
    shell: list[str], env: dict[str, str], writes: str
) -> None:
    base = {"ARCHFLEET_IMAGE": "registry.example.com/team/app", "ARCHFLEET_ARCH": "amd64"}
    done = sh(shell, "archfleet_cache_args buildah ''", {**base, **env})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    repo = "registry.example.com/team/app/buildcache"
    expected_to = f"{repo}/amd64" if writes == "amd64" else f"{repo}/unprotected-amd64"
    assert lines[lines.index("--cache-to") + 1] == expected_to
    assert lines[:2] == ["--cache-from", f"{repo}/amd64"]
