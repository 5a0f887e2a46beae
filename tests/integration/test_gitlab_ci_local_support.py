"""gitlab-ci-local as the tests run it (tests/support/gitlab_ci_local.py), on a one-job project.

A shell-executor job must see the PATH a test gives it, however pytest was started: no
SHLVL in its environment (or SHLVL=0) made bash read the caller's ~/.bashrc in every job
(gitlab-ci-local's job shell has a socket on stdin, bash's "started by rshd" rule), and here
that put pyenv's shims before a test's SHIM `archfleet`. BASH_ENV would do the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import gitlab_ci_local as gcl
from toolkit.lab.cache import cache_dir

pytestmark = pytest.mark.integration

STARTUP_FILE = 'echo "startup file read"\nexport PATH="/from-startup-file:$PATH"\n'


@pytest.mark.parametrize(
    "caller",
    [{"SHLVL": None}, {"SHLVL": "0"}, {"SHLVL": "1", "BASH_ENV": "{home}/.bashrc"}],
    ids=["no-SHLVL", "SHLVL-0", "BASH_ENV"],
)
def test_shell_job_does_not_read_the_callers_startup_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caller: dict[str, str | None]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text(STARTUP_FILE, encoding="utf-8")
    # The caller's environment (what pytest was started with): its HOME holds the ~/.bashrc;
    # the cache (gitlab-ci-local's install) stays where it is.
    monkeypatch.setenv("ARCHFLEET_CACHE", str(cache_dir()))
    monkeypatch.setenv("HOME", str(home))
    for name, value in caller.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value.format(home=home))
    project = gcl.make_project(
        tmp_path / "project",
        {".gitlab-ci.yml": yaml.safe_dump({"probe": {"script": ['echo "job PATH=$PATH"']}})},
    )
    path = f"{tmp_path / 'bin'}:/usr/bin:/bin"
    run = gcl.run(
        project,
        "--shell-executor-no-image",
        "--no-json-schema-validation",
        "probe",
        env={"PATH": path},
    )
    assert run.code == 0, run.output[-3000:]
    assert "startup file read" not in run.output
    assert f"job PATH={path}\n" in run.output
