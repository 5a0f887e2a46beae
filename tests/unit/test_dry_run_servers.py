"""The server sides of a fleet command are asked ONCE, before any host needs them
(toolkit.tasks.fleet._servers): without a token, or with the server unreachable, a dry run
notes it once and marks the side "not checked (why)"; a real run stops with one error line.

No GitLab or Jenkins runs here: the tokens are absent, or the servers' URLs point at a port on
127.0.0.1 where nothing listens (a connection refused, as from a GitLab that is down)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from invoke.exceptions import Exit

from toolkit.inventory import Inventory, load
from toolkit.tasks import fleet


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def inventory(tmp_path: Path, port: int = 9) -> Inventory:
    path = tmp_path / "fleet.yml"
    path.write_text(f"""
gitlab: {{url: 'http://127.0.0.1:{port}', allow_http: true, group: lab}}
jenkins: {{url: 'http://127.0.0.1:{port}', allow_http: true, credentials_id: lab-ssh}}
hosts:
  - {{name: a, address: 127.0.0.112, roles: [gitlab-runner, jenkins-agent]}}
  - {{name: b, address: 127.0.0.113, roles: [gitlab-runner, jenkins-agent]}}
""")
    return load(path)


@pytest.fixture
def no_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GITLAB_TOKEN", "JENKINS_USER", "JENKINS_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # python-gitlab's default config files must not hand over a token either.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PYTHON_GITLAB_CFG", str(tmp_path / "none.cfg"))


def notes(captured: str) -> list[str]:
    return [line for line in captured.splitlines() if line.startswith(("note:", "error:"))]


def test_a_dry_run_without_tokens_marks_both_sides_not_checked(
    no_tokens: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    servers = fleet._servers(inventory(tmp_path), no_gitlab=False, no_jenkins=False, dry_run=True)
    assert servers.runners is None and servers.nodes is None
    assert servers.not_checked == {"gitlab": "no token", "jenkins": "no token"}
    lines = notes(capsys.readouterr().err)
    assert len(lines) == 2, lines
    assert lines[0].startswith("note: GitLab side not checked (no token): no GitLab token for ")
    assert lines[1].startswith("note: Jenkins side not checked (no token): Jenkins at ")
    # Not-checked sides keep their inventory sections, so the hosts' part is planned.
    scoped = servers.scoped(inventory(tmp_path))
    assert scoped.gitlab is not None and scoped.jenkins is not None


def test_without_dry_run_a_missing_token_is_one_error(
    no_tokens: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(Exit) as stopped:
        fleet._servers(inventory(tmp_path), no_gitlab=False, no_jenkins=False)
    assert stopped.value.code == 1
    lines = notes(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: no GitLab token for ")


def test_an_unreachable_gitlab_is_reported_once_for_all_hosts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-unused-0d1e")
    fleet_ = inventory(tmp_path, closed_port())
    servers = fleet._servers(fleet_, no_gitlab=False, no_jenkins=True, dry_run=True)
    assert servers.runners is None and servers.not_checked == {"gitlab": "unreachable"}
    err = capsys.readouterr().err
    (line,) = [line for line in notes(err) if "GitLab" in line]
    assert line.startswith("note: GitLab side not checked (unreachable): GitLab http://127.0.0.1:")
    assert "cannot reach it (ConnectionError)" in line
    assert "glpat-unused-0d1e" not in err and "Traceback" not in err
    with pytest.raises(Exit):
        fleet._servers(fleet_, no_gitlab=False, no_jenkins=True)
    (error,) = notes(capsys.readouterr().err)
    assert error.startswith("error: GitLab http://127.0.0.1:") and "cannot reach it" in error


def test_an_unreachable_jenkins_is_reported_once_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JENKINS_USER", "admin")
    monkeypatch.setenv("JENKINS_API_TOKEN", "unused-token-0d1e")
    servers = fleet._servers(
        inventory(tmp_path, closed_port()), no_gitlab=True, no_jenkins=False, dry_run=True
    )
    assert servers.nodes is None and servers.not_checked == {"jenkins": "unreachable"}
    lines = notes(capsys.readouterr().err)
    assert [line.split(":")[0:2] for line in lines] == [
        ["note", " Jenkins side not checked (unreachable)"],
        ["note", " GitLab side off"],
    ]
