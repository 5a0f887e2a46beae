"""Builder scripts: valid sh, the right package manager branch, hostile names harmless."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from toolkit.fleet.builder import install_builder_script
from toolkit.fleet.users import ensure_job_user_script


def run_with_stubs(script: str, tmp_path: Path, stubs: dict[str, str]) -> tuple[int, str]:
    """Run `script` with only stub commands on PATH; each stub logs its argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for name, body in stubs.items():
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\nprintf "%s|" {name} "$@" >> {log}\necho >> {log}\n{body}\n')
        stub.chmod(0o755)
    for tool in ("tr", "grep"):  # the scripts' own plumbing, nothing else from the machine
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    done = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True)
    return done.returncode, log.read_text() if log.exists() else ""


def test_install_uses_the_package_manager_present(tmp_path: Path) -> None:
    script = install_builder_script("buildah")
    subprocess.run(["sh", "-n", "-c", script], check=True)
    code, calls = run_with_stubs(script, tmp_path, {"dnf": "exit 0", "buildah": "exit 0"})
    assert code == 0
    assert "dnf|install|-y|-q|buildah|skopeo|" in calls and "apt-get" not in calls


def test_install_without_package_manager_fails_clearly(tmp_path: Path) -> None:
    code, _ = run_with_stubs(install_builder_script("docker"), tmp_path, {})
    assert code == 3


def test_umoci_comes_with_skopeo_and_is_checked(tmp_path: Path) -> None:
    script = install_builder_script("umoci")
    code, calls = run_with_stubs(
        script, tmp_path, {"apt-get": "exit 0", "umoci": "exit 0", "skopeo": "exit 0"}
    )
    assert code == 0
    assert (
        "apt-get|-o|DPkg::Lock::Timeout=60|install|-y|-qq|--no-install-recommends|umoci|skopeo|"
        in calls
    )
    assert "umoci|--version|" in calls and "skopeo|--version|" in calls
    # The install "succeeded" but left no skopeo: the script must say so, not report success.
    (tmp_path / "again").mkdir()
    code, _ = run_with_stubs(script, tmp_path / "again", {"apt-get": "exit 0", "umoci": "exit 0"})
    assert code != 0


def test_unknown_builder() -> None:
    with pytest.raises(ValueError, match="expected one of buildah, docker, umoci"):
        install_builder_script("kaniko")


@pytest.mark.parametrize("hostile", ["ci; touch /tmp/pwned-archfleet", "a'b\"c", "x\nrm -rf /"])
def test_job_user_script_refuses_hostile_user_and_group_names(hostile: str) -> None:
    """Job users and their groups (toolkit/fleet/users.py) must be plain names, as shadow's
    useradd accepts them: anything else is refused before a script exists."""
    with pytest.raises(ValueError, match="expected a user/group name"):
        ensure_job_user_script(hostile, groups=["docker"])
    with pytest.raises(ValueError, match="expected a user/group name"):
        ensure_job_user_script("gitlab-runner", groups=[hostile])
