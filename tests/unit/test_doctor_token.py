"""One GitLab token lookup (toolkit/fleet/gitlab_runner.py find_token) for provision-runners
and doctor: the same source named, the same config file refused, the same "no token" — so
doctor's verdict is what provisioning will meet. python-gitlab's config files are real files
read by python-gitlab itself; the server is the FAKE GitLab (tests/support/gitlab_fake.py,
written from GitLab's doc/api and lib/api; not GitLab)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitlab_fake import GitLabFake
from toolkit.doctor.checks import NOT_CHECKED_NO_TOKEN
from toolkit.doctor.gitlab import evaluate_gitlab
from toolkit.doctor.probe import probe_gitlab
from toolkit.fleet.gitlab_runner import GitLabRunnerError, GitLabRunners, find_token
from toolkit.inventory import GitLabSettings

TOKEN = "glpat-one-lookup-3c9d"


@pytest.fixture
def gitlab() -> Iterator[GitLabFake]:
    with GitLabFake(token=TOKEN, project="platform/builds") as fake:
        yield fake


def config(tmp_path: Path, url: str, token: str | None = TOKEN) -> Path:
    path = tmp_path / "python-gitlab.cfg"
    line = f"private_token = {token}\n" if token else ""
    path.write_text(f"[global]\ndefault = lab\n\n[lab]\nurl = {url}\n{line}")
    return path


def settings(url: str, config_file: Path | None = None) -> GitLabSettings:
    return GitLabSettings(url=url, allow_http=True, group="platform", config_file=config_file)


def test_the_environment_wins_and_is_named_the_same(gitlab: GitLabFake, tmp_path: Path) -> None:
    chosen = settings(gitlab.url, config(tmp_path, "https://elsewhere.example"))
    found = find_token(chosen, {"GITLAB_TOKEN": TOKEN})
    assert (found.token, found.source, found.problem) == (TOKEN, "$GITLAB_TOKEN", None)
    assert TOKEN not in repr(found)
    probe, _ = probe_gitlab(chosen, {"GITLAB_TOKEN": TOKEN}, timeout=5)
    assert probe.token_source == "$GITLAB_TOKEN"
    assert "token from $GITLAB_TOKEN" in repr(
        GitLabRunners.from_settings(chosen, {"GITLAB_TOKEN": TOKEN})
    )


def test_a_config_file_token_is_used_by_both_with_one_name(
    gitlab: GitLabFake, tmp_path: Path
) -> None:
    path = config(tmp_path, gitlab.url)
    chosen = settings(gitlab.url, path)
    where = f"python-gitlab config file {path}"
    assert find_token(chosen, {}).source == where
    probe, token = probe_gitlab(chosen, {}, timeout=5)
    assert (probe.token_source, token) == (where, TOKEN)
    assert probe.token is not None and probe.token.status == 200  # the fake saw the token
    runners = GitLabRunners.from_settings(chosen, {}, timeout=5)
    assert f"token from {where}" in repr(runners)


def test_a_config_file_for_another_gitlab_is_refused_by_both_in_one_sentence(
    gitlab: GitLabFake, tmp_path: Path
) -> None:
    path = config(tmp_path, "https://gitlab.other.example")
    chosen = settings(gitlab.url, path)
    expected = (
        f"python-gitlab config file {path} is for https://gitlab.other.example, but the "
        f"inventory's gitlab.url is {gitlab.url}; refusing to send its token elsewhere"
    )
    with pytest.raises(GitLabRunnerError) as refused:
        GitLabRunners.from_settings(chosen, {})
    assert str(refused.value) == expected
    probe, token = probe_gitlab(chosen, {}, timeout=5)
    assert token is None  # not sent: only the anonymous version call was made
    assert [r.path for r in gitlab.requests] == ["/api/v4/version"]
    [blocker] = [
        c for c in evaluate_gitlab(chosen, probe, provisions_runners=True) if c.status == "blocker"
    ]
    assert (blocker.check, blocker.detail) == ("gitlab-token", expected)


def test_a_config_file_without_a_token_is_no_token_for_both(
    gitlab: GitLabFake, tmp_path: Path
) -> None:
    chosen = settings(gitlab.url, config(tmp_path, gitlab.url, token=None))
    found = find_token(chosen, {})
    assert found.missing and found.token is None
    with pytest.raises(GitLabRunnerError, match="has no private_token"):
        GitLabRunners.from_settings(chosen, {})
    probe, _ = probe_gitlab(chosen, {}, timeout=5)
    rows = {c.check: c for c in evaluate_gitlab(chosen, probe, provisions_runners=True)}
    assert rows["gitlab-token"].detail == NOT_CHECKED_NO_TOKEN
    assert rows["gitlab-token"].status == "warn"
