"""Nothing left behind: two jobs of one shell-runner user (same HOME, same TMPDIR), run as the
component's job scripts. The first logs in with REAL buildah to a REAL registry with basic
auth (Debian's docker-registry, htpasswd) and reaches it with skopeo; the second, started after
it, finds no credential file anywhere in that HOME or TMPDIR and is refused by the registry.
A job killed after its login (as a runner kills a cancelled job) leaves its private directory;
the component's after_script, run in a new shell, removes it.

The docker side uses a RECORDING FAKE `docker` (no engine can take a login here) that writes
its login where docker/cli does (cli/config/config.go `Dir()`: $DOCKER_CONFIG, else
~/.docker; `config.json` with `auths.<host>.auth` = base64 user:password): the login lands in
the job-private DOCKER_CONFIG, seeded from the user's config.json, and ~/.docker is unchanged.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from toolkit.ci_templates import AFTER_SCRIPT, default_root, shell_library
from toolkit.lab.registry import LocalRegistry, start_registry, write_htpasswd

pytestmark = pytest.mark.integration

SECRET = "job-token-5e1f-not-real"
USER = "gitlab-ci-token"


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    work = tmp_path_factory.mktemp("auth-registry")
    htpasswd = write_htpasswd(work / "htpasswd", {USER: SECRET})
    registry = start_registry(work, htpasswd=htpasswd)
    yield registry
    registry.stop()


def job(script: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """One job's script as the runner runs it: the library, then the steps, in one sh."""
    if not shutil.which("buildah") or not shutil.which("skopeo"):
        pytest.skip("buildah and skopeo are needed (bash scripts/bootstrap)")
    library = shell_library(
        default_root(), ("archmap", "common", "lists", "engines", "auth", "guard", "build")
    )
    return subprocess.run(
        ["sh", "-c", f"{library}\n{script}"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def secret_files(*roots: Path) -> list[Path]:
    encoded = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                text = path.read_text(encoding="utf-8", errors="replace")
                if SECRET in text or encoded in text:
                    found.append(path)
    return found


LIST_TAGS = 'skopeo list-tags --tls-verify=false "docker://$ARCHFLEET_IMAGE" 2>&1'


@pytest.fixture
def runner_user(tmp_path: Path, auth_registry: LocalRegistry) -> dict[str, str]:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    return {
        "HOME": str(home),
        "TMPDIR": str(tmp),
        # Each job: its own containers storage (as lab/images.py), not the user's default.
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "ARCHFLEET_IMAGE": f"{auth_registry.address}/team/app",
        "ARCHFLEET_OPTIONS": "insecure=true",
    }


def test_second_job_cannot_use_the_first_jobs_login(
    runner_user: dict[str, str], auth_registry: LocalRegistry
) -> None:
    first = job(
        f'archfleet_login buildah\n{LIST_TAGS}\necho "private=$REGISTRY_AUTH_FILE"',
        {
            **runner_user,
            "CI_JOB_ID": "501",
            "CI_REGISTRY": auth_registry.address,
            "CI_REGISTRY_USER": USER,
            "CI_REGISTRY_PASSWORD": SECRET,
        },
    )
    assert first.returncode == 0, first.stderr
    # Logged in: the registry answers about the repository, not "unauthorized".
    assert "unauthorized" not in first.stdout.lower(), first.stdout
    private = Path(first.stdout.split("private=")[1].strip())
    assert private.parent.name == "archfleet-job-501"
    assert not private.parent.exists(), "the job's private directory outlived the job"
    home, tmp = Path(runner_user["HOME"]), Path(runner_user["TMPDIR"])
    assert secret_files(home, tmp) == []
    assert SECRET not in first.stdout + first.stderr

    second = job(f"archfleet_login buildah\n{LIST_TAGS}", {**runner_user, "CI_JOB_ID": "502"})
    assert "no login to" in second.stderr
    assert "unauthorized" in second.stdout.lower(), second.stdout


def test_after_script_removes_what_a_killed_job_left(
    runner_user: dict[str, str], auth_registry: LocalRegistry
) -> None:
    env = {
        **runner_user,
        "CI_JOB_ID": "503",
        "CI_REGISTRY": auth_registry.address,
        "CI_REGISTRY_USER": USER,
        "CI_REGISTRY_PASSWORD": SECRET,
    }
    killed = job("archfleet_login buildah\nkill -KILL $$", env)
    assert killed.returncode == -9
    left = Path(runner_user["TMPDIR"]) / "archfleet-job-503"
    assert secret_files(left), "the login should be in the private directory until removed"
    after = subprocess.run(
        ["sh", "-c", AFTER_SCRIPT], env=env, capture_output=True, text=True, check=False
    )
    assert after.returncode == 0, after.stderr
    assert not left.exists()
    assert secret_files(Path(runner_user["HOME"]), Path(runner_user["TMPDIR"])) == []


def test_docker_login_goes_to_a_private_config_seeded_from_the_users(
    runner_user: dict[str, str], tmp_path: Path
) -> None:
    shim = tmp_path / "bin"
    shim.mkdir()
    # RECORDING FAKE docker: `login` writes config.json where docker/cli does.
    (shim / "docker").write_text(
        "#!/bin/sh\n"
        '[ "$1" = login ] || exit 0\n'
        "dir=${DOCKER_CONFIG:-$HOME/.docker}\n"
        "pass=$(cat)\n"
        'auth=$(printf "%s:%s" "$3" "$pass" | base64 | tr -d "\\n")\n'
        'printf \'{"auths":{"%s":{"auth":"%s"}}}\' "$6" "$auth"'
        ' > "$dir/config.json"\n'
        'echo "$dir" > "$HOME/login-dir"\n'
    )
    (shim / "docker").chmod(0o755)
    home = Path(runner_user["HOME"])
    (home / ".docker" / "cli-plugins").mkdir(parents=True)
    user_config = '{"proxies": {"default": {"httpProxy": "http://proxy.invalid:3128"}}}'
    (home / ".docker" / "config.json").write_text(user_config)
    done = job(
        'archfleet_login docker\ncat "$DOCKER_CONFIG/config.json" >/dev/null\n'
        'ls -d "$DOCKER_CONFIG/cli-plugins"\necho "buildx=$BUILDX_CONFIG"',
        {
            **runner_user,
            "PATH": f"{shim}:{os.environ['PATH']}",
            "CI_JOB_ID": "504",
            "ARCHFLEET_REGISTRY_USER": USER,
            "ARCHFLEET_REGISTRY_PASSWORD": SECRET,
            # The generic names are not read: they would go to any registry.
            "REGISTRY_USER": "someone-else",
            "REGISTRY_PASSWORD": "other-secret",
        },
    )
    assert done.returncode == 0, done.stderr
    login_dir = Path((home / "login-dir").read_text().strip())
    assert login_dir == Path(runner_user["TMPDIR"]) / "archfleet-job-504" / "docker"
    assert "cli-plugins" in done.stdout  # the user's plugins (buildx) are still found
    assert f"buildx={home}/.docker/buildx" in done.stdout  # builders stay where buildx keeps them
    assert (home / ".docker" / "config.json").read_text() == user_config
    assert f"logged in to {runner_user['ARCHFLEET_IMAGE'].split('/')[0]} as {USER}" in done.stderr
    assert not login_dir.exists()
    generic = job(
        "archfleet_login docker",
        {
            **runner_user,
            "CI_JOB_ID": "505",
            "PATH": f"{shim}:{os.environ['PATH']}",
            "REGISTRY_USER": "someone-else",
            "REGISTRY_PASSWORD": "other-secret",
        },
    )
    assert "REGISTRY_USER is not used" in generic.stderr and "no login to" in generic.stderr
    assert secret_files(home, Path(runner_user["TMPDIR"])) == []
