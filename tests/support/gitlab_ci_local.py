"""gitlab-ci-local (4.70.1, under $ARCHFLEET_CACHE/npm) on a throw-away git repository.

It needs a git work tree: `make_project` writes the files into a fresh repository and commits
them. `list_jobs` evaluates rules like GitLab (`--list-json`, jobs that rules exclude have
`when: never`); `preview` returns the expanded YAML (includes, inputs, extends); `run` executes
jobs with the shell executor. gitlab-ci-local ignores `tags:`, so tests read them from the
preview. Overriding predefined variables (CI_PIPELINE_SOURCE…) is on purpose here, so its
warning about that is switched off for the names a test passes.

The jobs' shell must not read the developer's startup files: `job_environment` explains why
and how.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from toolkit.lab.cache import cache_dir

# gitlab-ci-local's copy of GitLab's ci.json asks `tags:` for at least one item, but GitLab
# itself accepts an empty list (gitlabhq lib/gitlab/ci/config/entry/tags.rb validates only
# `array_of_strings`; check-jsonschema's vendored schema has no minItems there either): the
# component's `merge_tags` input defaults to `[]`, untagged jobs.
SCHEMA_EXCEPTIONS = ("--ignore-schema-paths", "#/definitions/tags/minItems")

_GIT_IDENTITY = ["-c", "user.name=archfleet tests", "-c", "user.email=tests@archfleet.invalid"]


def binary() -> Path:
    return cache_dir() / "npm" / "node_modules" / ".bin" / "gitlab-ci-local"


def require() -> Path:
    path = binary()
    if not path.exists():
        pytest.skip(f"gitlab-ci-local not installed at {path} (bash scripts/bootstrap)")
    return path


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def make_project(root: Path, files: Mapping[str, str]) -> Path:
    """A git repository at `root` holding `files` (relative path -> text), committed."""
    root.mkdir(parents=True, exist_ok=True)
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "project"]):
        subprocess.run(["git", *_GIT_IDENTITY, *args], cwd=root, check=True, capture_output=True)
    return root


def job_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment gitlab-ci-local (and so every shell-executor job) gets: ours plus `env`,
    with no way for the caller's shell startup files into the job.

    gitlab-ci-local 4.70.1 runs a shell job as `execa("bash", {shell: "bash"})`, i.e.
    `bash -c bash`, and writes the job script to its stdin (src/job.ts, execScripts). Node's
    stdio pipes are socketpairs, and bash takes a socket on stdin of a `-c` shell for "started
    by rshd/sshd" and then sources ~/.bashrc when its SHLVL, after its own increment, is below 2
    (bash shell.c, run_startup_files; isnetconn). So a pytest started without SHLVL (or with
    SHLVL=0) gives every job the developer's ~/.bashrc, and here that puts pyenv's shims in front
    of the PATH a test set up (the SHIM `archfleet`, a recording `python3`). SHLVL=1 (what any
    shell that starts pytest exports) keeps bash out of that rule; BASH_ENV, which every
    non-interactive bash sources, is dropped unless a test passes it on purpose.
    """
    merged = {key: value for key, value in os.environ.items() if key != "BASH_ENV"}
    merged.update({"FORCE_COLOR": "0", "NO_COLOR": "1", **(env or {})})
    level = merged.get("SHLVL", "")
    if not level.isdigit() or int(level) < 1:
        merged["SHLVL"] = "1"
    return merged


def run(
    project: Path,
    *args: str,
    variables: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> Result:
    command = [str(require()), *args, *SCHEMA_EXCEPTIONS]
    for name, value in (variables or {}).items():
        command += ["--variable", f"{name}={value}"]
    if variables:
        command += ["--ignore-predefined-vars", ",".join(variables)]
    # Files, not pipes: node exits before a large write to a pipe is flushed (a --preview of
    # the component was cut at 128 KiB through a pipe).
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        done = subprocess.run(
            command,
            cwd=project,
            env=job_environment(env),
            stdout=out,
            stderr=err,
            timeout=timeout,
            check=False,
        )
        out.seek(0)
        err.seek(0)
        return Result(done.returncode, out.read(), err.read())


def _validation(validate: bool) -> list[str]:
    # Schema validation costs ~0.7 s a call: the tests that are about it ask for it.
    return [] if validate else ["--no-json-schema-validation"]


def preview(
    project: Path, variables: Mapping[str, str] | None = None, *, validate: bool = False
) -> dict[str, Any]:
    result = run(project, "--preview", *_validation(validate), variables=variables)
    assert result.code == 0, result.output
    data: dict[str, Any] = yaml.safe_load(result.stdout)
    return data


def list_jobs(
    project: Path, variables: Mapping[str, str] | None = None, *, validate: bool = False
) -> dict[str, str]:
    """Job name -> `when` after rules (`never` for jobs the rules leave out)."""
    result = run(project, "--list-json", *_validation(validate), variables=variables)
    if validate:
        assert "json schema validated" in result.output, result.output
    assert result.code == 0, result.output
    jobs = yaml.safe_load(result.stdout)
    return {job["name"]: job["when"] for job in jobs}


def active(jobs: Mapping[str, str]) -> set[str]:
    return {name for name, when in jobs.items() if when != "never"}
