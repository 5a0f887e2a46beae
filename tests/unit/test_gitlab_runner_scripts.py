"""The host-side gitlab-runner scripts, run LOCALLY with `sh`: hostile inventory strings stay
single arguments (a stub `gitlab-runner` records its exact argv), the runner token arrives
through stdin/env and never in argv or the script, downloads are verified and atomic."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.https_files import HttpsFiles, serve_https
from toolkit.fleet.gitlab_host import (
    RunnerHostError,
    fix_config_mode_script,
    install_runner_script,
    register_argv,
    register_runner,
    register_script,
    set_concurrent_script,
    unregister_script,
    verify_delete_script,
)
from toolkit.fleet.gitlab_runner import CreatedRunner
from toolkit.inventory import GitLabSettings

TOKEN = "glrt-unit-4f1c0ffee5eed"
HOSTILE = [
    "; rm -rf /",
    "a'b\"c",
    "line1\nline2",
    "$(touch /tmp/archfleet-pwned)",
    "`touch /tmp/archfleet-pwned`",
    "-x --tag-list evil",
    "with space\tand tab",
    "back\\slash",
]
# Records argv NUL-separated (one file per call) and where the token came from.
STUB = r"""#!/bin/sh
n=$(ls "$STUB_DIR" | grep -c '^argv') || true
printf '%s\0' "$@" > "$STUB_DIR/argv$n"
printf '%s' "${CI_SERVER_TOKEN-}" > "$STUB_DIR/env$n"
for a in "$@"; do
  case $a in --config) next=1 ;; *) [ -n "${next-}" ] && { : > "$a"; next=; } ;; esac
done
exit 0
"""


@dataclass
class Stub:
    bin: Path
    record: Path

    def calls(self) -> list[list[str]]:
        files = sorted(self.record.glob("argv*"), key=lambda p: int(p.name[4:]))
        return [_decode(p) for p in files]

    def env(self, call: int) -> str:
        return (self.record / f"env{call}").read_text()


def _decode(path: Path) -> list[str]:
    return [part.decode() for part in path.read_bytes().split(b"\0")[:-1]]


@pytest.fixture
def stub(tmp_path: Path) -> Stub:
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    runner = bin_dir / "gitlab-runner"
    runner.write_text(STUB)
    runner.chmod(0o755)
    return Stub(bin_dir, record)


def run_sh(script: str, stub: Stub | None = None, stdin: str = "", **env: str) -> Any:
    path = f"{stub.bin}:{os.environ['PATH']}" if stub else os.environ["PATH"]
    environment = {"PATH": path, "HOME": "/nonexistent", **env}
    if stub:
        environment["STUB_DIR"] = str(stub.record)
    return subprocess.run(
        ["sh", "-c", script], input=stdin, capture_output=True, text=True, env=environment
    )


def syntax_ok(script: str) -> None:
    done = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(autouse=True)
def no_pwn() -> Any:
    Path("/tmp/archfleet-pwned").unlink(missing_ok=True)
    yield
    assert not Path("/tmp/archfleet-pwned").exists(), "a hostile string was executed"


@pytest.mark.parametrize("hostile", HOSTILE)
def test_register_passes_hostile_values_as_exact_arguments(
    hostile: str, stub: Stub, tmp_path: Path
) -> None:
    settings = GitLabSettings(
        url=f"http://gitlab.example/{hostile}",
        executor="docker",
        docker_image=hostile,
        docker_privileged=True,
        tags=(hostile,),
    )
    config = tmp_path / "etc" / f"runner {hostile[:3]}" / "config.toml"
    script = register_script(hostile, settings, config=str(config))
    syntax_ok(script)
    assert TOKEN not in script
    done = run_sh(script, stub, stdin=TOKEN + "\n")
    assert done.returncode == 0, done.stderr
    assert stub.calls() == [register_argv(hostile, settings, config=str(config))[1:]]
    assert stub.calls()[0][-5:] == [
        "--description",
        hostile,
        "--docker-image",
        hostile,
        "--docker-privileged",
    ]
    assert stub.env(0) == TOKEN  # through the environment, read from stdin
    assert not any(TOKEN in arg for arg in stub.calls()[0])
    # Tags are GitLab's business with glrt- tokens: register must not be given them.
    assert not any(
        a.startswith(("--tag-list", "--run-untagged", "--locked")) for a in stub.calls()[0]
    )
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert TOKEN not in done.stdout + done.stderr


def test_register_argv_for_the_shell_executor() -> None:
    settings = GitLabSettings(url="https://gitlab.example.com", executor="shell")
    assert register_argv("host-1", settings) == [
        "gitlab-runner",
        "register",
        "--non-interactive",
        "--config",
        "/etc/gitlab-runner/config.toml",
        "--url",
        "https://gitlab.example.com",
        "--executor",
        "shell",
        "--description",
        "host-1",
    ]


def test_register_without_a_token_on_stdin_refuses(stub: Stub, tmp_path: Path) -> None:
    script = register_script("h", GitLabSettings(url="http://g"), config=str(tmp_path / "c"))
    done = run_sh(script, stub, stdin="")
    assert done.returncode == 2 and "no runner token on stdin" in done.stderr
    assert stub.calls() == []


@pytest.mark.parametrize("hostile", HOSTILE)
def test_unregister_names_exactly_that_runner(hostile: str, stub: Stub, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    script = unregister_script(hostile, config=str(config))
    syntax_ok(script)
    # Not registered (no file, then a file without it): nothing to do, success.
    assert run_sh(script, stub).returncode == 0
    config.write_text('[[runners]]\n  name = "other"\n')
    done = run_sh(script, stub)
    assert done.returncode == 0 and "nothing to unregister" in done.stdout
    assert stub.calls() == []
    config.write_text(f'[[runners]]\n  name = {json.dumps(hostile)}\n  token = "x"\n')
    done = run_sh(script, stub)
    assert done.returncode == 0, done.stderr
    assert stub.calls() == [["unregister", "--config", str(config), "--name", hostile]]


def test_fix_config_mode(tmp_path: Path) -> None:
    config = tmp_path / "gitlab runner; x" / "config.toml"
    config.parent.mkdir()
    config.write_text("")
    config.chmod(0o644)
    config.parent.chmod(0o755)
    script = fix_config_mode_script(config=str(config))
    syntax_ok(script)
    assert run_sh(script).returncode == 0
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700


BINARY = b"#!/bin/sh\necho 'Version: 17.5.0'\n"
GOOD = hashlib.sha256(BINARY).hexdigest()
NAME = "gitlab-runner-linux-amd64"
# GitLab's release.sha256 lists every artifact of a release, sha256sum style.
SUMS = (
    f"{'1' * 64}  binaries/gitlab-runner-linux-arm64\n"
    f"{GOOD}  binaries/{NAME}\n"
    f"{'2' * 64}  deb/gitlab-runner_amd64.deb\n"
).encode()


@pytest.fixture
def downloads(tmp_path: Path) -> Iterator[HttpsFiles]:
    files = {f"/v19.3.0/binaries/{NAME}": BINARY, "/v19.3.0/release.sha256": SUMS}
    with serve_https(files, tmp_path) as served:
        yield served


def run_with_ca(
    script: str, ca: Path, *, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path or os.environ["PATH"], "CURL_CA_BUNDLE": str(ca)}
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env)


def test_install_verifies_and_moves_atomically(tmp_path: Path, downloads: HttpsFiles) -> None:
    dest = tmp_path / "bin dir" / "gitlab-runner"
    url = downloads.url(f"/v19.3.0/binaries/{NAME}")
    script = install_runner_script(url, binary=NAME, sha256="0" * 64, dest=str(dest))
    refused = run_with_ca(script, downloads.ca_file)
    assert refused.returncode == 5
    assert f"has sha256 {GOOD}, expected {'0' * 64}; not installed" in refused.stderr
    assert list(dest.parent.iterdir()) == []  # no binary, no temp file
    done = run_with_ca(
        install_runner_script(url, binary=NAME, sha256=GOOD, dest=str(dest)), downloads.ca_file
    )
    assert done.returncode == 0, done.stderr
    missing = run_with_ca(
        install_runner_script(url + "-nope", binary=NAME, sha256=GOOD, dest=str(tmp_path / "x")),
        downloads.ca_file,
    )
    assert dest.read_bytes() == BINARY
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert [p.name for p in dest.parent.iterdir()] == ["gitlab-runner"]
    assert missing.returncode == 4 and "download of gitlab-runner from" in missing.stderr
    assert not (tmp_path / "x").exists()


def test_install_takes_the_sha256_from_the_release_list(
    tmp_path: Path, downloads: HttpsFiles
) -> None:
    """No sha256 in the inventory: the binary's line in GitLab's release.sha256 decides."""
    dest = tmp_path / "gitlab-runner"
    url = downloads.url(f"/v19.3.0/binaries/{NAME}")
    sums = downloads.url("/v19.3.0/release.sha256")
    done = run_with_ca(
        install_runner_script(url, binary=NAME, checksums_url=sums, dest=str(dest)),
        downloads.ca_file,
    )
    assert done.returncode == 0, done.stderr
    assert dest.read_bytes() == BINARY
    # An arch the list does not name (or whose line differs) installs nothing.
    other = tmp_path / "other"
    absent = run_with_ca(
        install_runner_script(
            url, binary="gitlab-runner-linux-s390x", checksums_url=sums, dest=str(other)
        ),
        downloads.ca_file,
    )
    assert absent.returncode == 5 and "no sha256 for gitlab-runner-linux-s390x" in absent.stderr
    wrong = run_with_ca(
        install_runner_script(
            url, binary="gitlab-runner-linux-arm64", checksums_url=sums, dest=str(other)
        ),
        downloads.ca_file,
    )
    assert wrong.returncode == 5 and f"expected {'1' * 64}; not installed" in wrong.stderr
    assert not other.exists()


def test_install_refuses_a_server_it_cannot_verify(tmp_path: Path, downloads: HttpsFiles) -> None:
    """Without the CA the TLS handshake fails: https is checked, not just spoken."""
    dest = tmp_path / "gitlab-runner"
    url = downloads.url(f"/v19.3.0/binaries/{NAME}")
    done = subprocess.run(
        ["/bin/sh", "-c", install_runner_script(url, binary=NAME, sha256=GOOD, dest=str(dest))],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "CURL_CA_BUNDLE": "/dev/null"},
    )
    assert done.returncode == 4 and not dest.exists()


def test_install_without_any_downloader_fails_clearly(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("dirname", "mkdir", "mktemp", "rm", "sha256sum", "cut", "chmod", "mv", "grep"):
        found = shutil.which(tool)
        assert found
        (tools / tool).symlink_to(found)
    # busybox's wget checks no certificate: it does not count as a downloader.
    (tools / "wget").write_text("#!/bin/sh\necho 'BusyBox v1.35.0 multi-call binary.'\n")
    (tools / "wget").chmod(0o755)
    dest = tmp_path / "out" / "gitlab-runner"
    script = install_runner_script(
        "https://example.invalid/gitlab-runner", binary=NAME, sha256=GOOD, dest=str(dest)
    )
    done = subprocess.run(
        ["/bin/sh", "-c", script], capture_output=True, text=True, env={"PATH": str(tools)}
    )
    assert done.returncode == 3
    assert "install curl or GNU wget" in done.stderr
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("hostile", HOSTILE)
def test_install_script_quotes_its_inputs(hostile: str) -> None:
    script = install_runner_script(
        f"https://example.invalid/{hostile}", binary=hostile, sha256=GOOD, dest=f"/tmp/{hostile}"
    )
    syntax_ok(script)


@pytest.mark.parametrize(
    ("url", "checksums", "sha256", "message"),
    [
        ("-o /etc/passwd https://x", "", GOOD, "must be https"),
        ("http://x/gitlab-runner", "", GOOD, "must be https"),
        ("file:///etc/shadow", "", GOOD, "must be https"),
        ("https://x/gitlab-runner", "http://x/release.sha256", "", "must be https"),
        ("https://x/gitlab-runner", "", "", "needs a sha256 or a checksums URL"),
        ("https://x/gitlab-runner", "", "ABC; rm -rf /", "64 lowercase hex digits"),
    ],
)
def test_install_refuses_bad_url_or_checksum(
    url: str, checksums: str, sha256: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        install_runner_script(url, binary=NAME, sha256=sha256, checksums_url=checksums)


@dataclass
class _Result:
    exited: int
    stdout: str
    stderr: str


class RecordingConnection:
    """Stands for a Fabric Connection: records what `run` got, answers `result`."""

    def __init__(self, result: _Result) -> None:
        self.result = result
        self.commands: list[str] = []
        self.stdin: list[str] = []
        self.kwargs: list[dict[str, Any]] = []

    def run(self, command: str, **kwargs: Any) -> _Result:
        self.commands.append(command)
        self.stdin.append(kwargs.pop("in_stream").read())
        self.kwargs.append(kwargs)
        return self.result


def test_register_runner_sends_the_token_on_stdin_only() -> None:
    connection = RecordingConnection(_Result(0, "ok", ""))
    register_runner(connection, "host-1", GitLabSettings(url="http://g"), TOKEN)
    assert connection.stdin == [TOKEN + "\n"]
    assert TOKEN not in connection.commands[0]
    assert connection.kwargs[0]["echo_stdin"] is False


def test_register_runner_errors_never_carry_the_token() -> None:
    # Even if the tool on the host echoed it, the error shows [hidden].
    connection = RecordingConnection(_Result(1, "", f"FATAL: token {TOKEN} is invalid"))
    with pytest.raises(RunnerHostError) as caught:
        register_runner(connection, "host-1", GitLabSettings(url="http://g"), TOKEN)
    assert str(caught.value) == (
        "host-1: gitlab-runner register failed (exit 1): FATAL: token [hidden] is invalid"
    )
    with pytest.raises(ValueError, match="spans lines") as multi:
        register_runner(connection, "host-1", GitLabSettings(url="http://g"), TOKEN + "\nx")
    assert TOKEN not in str(multi.value)


def test_created_runner_repr_hides_the_token() -> None:
    created = CreatedRunner(id=7, token=TOKEN, token_expires_at=None)
    assert TOKEN not in repr(created) and TOKEN not in str(created)
    assert repr(created) == "CreatedRunner(id=7, token_expires_at=None)"


def test_concurrent_is_set_at_the_top_level_in_place(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'concurrent = 1\ncheck_interval = 0\n\n[[runners]]\n  name = "a"\n  concurrent = 9\n'
    )
    config.chmod(0o600)
    inode = config.stat().st_ino
    assert run_sh(set_concurrent_script(4, config=str(config))).returncode == 0
    assert config.read_text() == (
        'concurrent = 4\ncheck_interval = 0\n\n[[runners]]\n  name = "a"\n  concurrent = 9\n'
    )
    assert config.stat().st_ino == inode and stat.S_IMODE(config.stat().st_mode) == 0o600
    # No top-level key yet (a fresh `gitlab-runner install`): it goes before the first table.
    config.write_text("[session_server]\n  session_timeout = 1800\n")
    assert run_sh(set_concurrent_script(2, config=str(config))).returncode == 0
    assert config.read_text().startswith("concurrent = 2\n[session_server]\n")
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]
    with pytest.raises(ValueError, match="integer >= 1"):
        set_concurrent_script(0)


def test_verify_delete_drops_only_a_runner_gitlab_refuses(stub: Stub, tmp_path: Path) -> None:
    """A `gitlab-runner verify` that keeps the entry (as the real one does for a runner GitLab
    still accepts) fails the step with what to do, rather than let a second runner of the
    same name be registered beside it."""
    config = tmp_path / "config.toml"
    config.write_text('[[runners]]\n  name = "h-1"\n  id = 5\n')
    done = run_sh(verify_delete_script("h-1", config=str(config)), stub)
    assert stub.calls() == [["verify", "--delete", "--config", str(config), "--name", "h-1"]]
    assert done.returncode == 0  # the recording stub empties the file: as if GitLab said 403
    keeper = tmp_path / "keeper"
    keeper.mkdir()
    (keeper / "gitlab-runner").write_text("#!/bin/sh\nexit 0\n")
    (keeper / "gitlab-runner").chmod(0o755)
    config.write_text('[[runners]]\n  name = "h-1"\n  id = 5\n')
    kept = subprocess.run(
        ["sh", "-c", verify_delete_script("h-1", config=str(config))],
        capture_output=True,
        text=True,
        env={"PATH": f"{keeper}:{os.environ['PATH']}"},
    )
    assert kept.returncode == 7 and "unregister it by hand" in kept.stderr
