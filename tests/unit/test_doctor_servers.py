"""doctor's server probes over real HTTP against the FAKES of GitLab and Jenkins
(tests/support/gitlab_fake.py, tests/support/jenkins_fake.py: loopback servers written from
GitLab's doc/api and lib/api, and Jenkins core's and the credentials plugin's source; not
GitLab, not Jenkins), and the fakes' new endpoints themselves, with their failure answers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.gitlab_fake import GitLabFake
from tests.support.jenkins_fake import SSH_KEY_TYPE, FakeJenkins
from toolkit.doctor.checks import exit_code
from toolkit.doctor.gitlab import evaluate_gitlab
from toolkit.doctor.jenkins import evaluate_jenkins
from toolkit.doctor.probe import probe_gitlab, probe_jenkins
from toolkit.inventory import GitLabSettings, JenkinsSettings

GL_TOKEN = "glpat-doctor-servers-5e1f"
J_TOKEN = "11doctor-servers-jenkins-T"


@pytest.fixture
def gitlab() -> Iterator[GitLabFake]:
    with GitLabFake(token=GL_TOKEN, project="platform/builds") as fake:
        yield fake


@pytest.fixture
def jenkins(tmp_path: Path) -> Iterator[FakeJenkins]:
    with FakeJenkins(
        tmp_path / "jenkins",
        "admin",
        J_TOKEN,
        console=False,
        credentials={"agents-ssh": SSH_KEY_TYPE},
    ) as fake:
        yield fake


# --- the fakes' endpoints, as GitLab and Jenkins answer them ------------------------------------


def fetch(url: str, **kwargs: object) -> requests.Response:
    return requests.get(url, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_gitlab_fake_version_and_token_self(gitlab: GitLabFake) -> None:
    def get(path: str, token: str = GL_TOKEN) -> requests.Response:
        return fetch(f"{gitlab.url}/api/v4/{path}", headers={"PRIVATE-TOKEN": token})

    assert get("version").json()["version"] == gitlab.version
    assert get("version", "glpat-wrong").status_code == 401
    assert get("personal_access_tokens/self").json()["scopes"] == ["api"]
    assert get("personal_access_tokens/self", "glpat-wrong").status_code == 401
    gitlab.scopes = {"create_runner"}
    refused = get("version")
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
    # Any scope may read its own token (allow_access_with_scope all_available_scopes).
    assert get("personal_access_tokens/self").json()["scopes"] == ["create_runner"]
    gitlab.token_type = "OAuthAccessToken"
    other = get("personal_access_tokens/self")
    assert other.status_code == 400 and "requires token type" in other.json()["message"]


def test_jenkins_fake_version_plugins_and_credentials(jenkins: FakeJenkins) -> None:
    auth = ("admin", J_TOKEN)
    anonymous = fetch(f"{jenkins.url}/api/json")
    assert anonymous.status_code == 403 and anonymous.headers["X-Jenkins"] == jenkins.version
    wrong = fetch(f"{jenkins.url}/api/json", auth=("admin", "nope"))
    assert wrong.status_code == 401
    plugins = fetch(f"{jenkins.url}/pluginManager/api/json?depth=1", auth=auth).json()
    names = {p["shortName"] for p in plugins["plugins"] if p["active"]}
    assert {"ssh-slaves", "pipeline-groovy-lib", "docker-workflow"} <= names
    base = f"{jenkins.url}/credentials/store/system/domain/_/credential"
    found = fetch(f"{base}/agents-ssh/api/json", auth=auth).json()
    assert found["typeName"] == SSH_KEY_TYPE and found["id"] == "agents-ssh"
    assert fetch(f"{base}/nope/api/json", auth=auth).status_code == 404
    jenkins.denied = {"SystemRead", "CredentialsView"}
    listing = fetch(f"{jenkins.url}/pluginManager/api/json", auth=auth)
    assert listing.status_code == 403 and "Overall/SystemRead" in listing.text
    creds = fetch(f"{base}/agents-ssh/api/json", auth=auth)
    assert creds.status_code == 403 and "Credentials/View" in creds.text


# --- the probes against them --------------------------------------------------------------------


def gitlab_settings(url: str) -> GitLabSettings:
    return GitLabSettings(url=url, allow_http=True, group="platform")


def jenkins_settings(url: str) -> JenkinsSettings:
    return JenkinsSettings(url=url, credentials_id="agents-ssh", allow_http=True)


def test_probe_gitlab_healthy_then_short_of_scopes(gitlab: GitLabFake) -> None:
    settings = gitlab_settings(gitlab.url)
    env = {"GITLAB_TOKEN": GL_TOKEN}
    probe, token = probe_gitlab(settings, env, timeout=5)
    assert token == GL_TOKEN and probe.token_source == "$GITLAB_TOKEN"
    assert exit_code(evaluate_gitlab(settings, probe, provisions_runners=True)) == 0
    gitlab.scopes = {"create_runner", "read_api"}
    probe, _ = probe_gitlab(settings, env, timeout=5)
    checks = evaluate_gitlab(settings, probe, provisions_runners=True)
    [blocking] = [c for c in checks if c.status == "blocker"]
    assert "needs manage_runner" in blocking.detail
    assert all(GL_TOKEN not in c.detail + c.fix for c in checks)


def test_probe_gitlab_without_a_token_only_asks_anonymously(gitlab: GitLabFake) -> None:
    settings = gitlab_settings(gitlab.url)
    probe, token = probe_gitlab(settings, {}, timeout=5)
    assert token is None and probe.version is not None and probe.version.status == 401
    assert [r.path for r in gitlab.requests] == ["/api/v4/version"]
    assert exit_code(evaluate_gitlab(settings, probe, provisions_runners=True)) == 0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def test_probe_of_a_server_that_is_not_there_is_one_line() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    probe, _ = probe_gitlab(gitlab_settings(url), {"GITLAB_TOKEN": GL_TOKEN}, timeout=2)
    assert probe.unreachable is not None and "Connection refused" in probe.unreachable
    assert "\n" not in probe.unreachable
    jprobe, _ = probe_jenkins(jenkins_settings(url), {}, timeout=2, has_agents=True)
    assert jprobe.unreachable is not None


def test_probe_jenkins_healthy_then_missing_a_plugin(jenkins: FakeJenkins) -> None:
    settings = jenkins_settings(jenkins.url)
    env = {"JENKINS_USER": "admin", "JENKINS_API_TOKEN": J_TOKEN}
    probe, _ = probe_jenkins(settings, env, timeout=5, has_agents=True)
    checks = evaluate_jenkins(settings, probe, has_agents=True)
    assert exit_code(checks) == 0, [c for c in checks if c.status != "ok"]
    del jenkins.plugins["ssh-slaves"]
    probe, _ = probe_jenkins(settings, env, timeout=5, has_agents=True)
    checks = evaluate_jenkins(settings, probe, has_agents=True)
    [blocking] = [c for c in checks if c.status == "blocker"]
    assert "SSH Build Agents (ssh-slaves) is not installed" in blocking.detail


def test_a_server_that_accepts_but_never_answers_is_bounded_by_the_timeout() -> None:
    """A listening socket nobody reads from: TCP connects, no HTTP answer ever comes."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        url = f"http://127.0.0.1:{mute.getsockname()[1]}"
        probe, _ = probe_gitlab(gitlab_settings(url), {"GITLAB_TOKEN": GL_TOKEN}, timeout=1)
    assert probe.unreachable == "connected, but no answer within 1 s"
    [check] = evaluate_gitlab(gitlab_settings(url), probe, provisions_runners=True)
    assert check.status == "blocker" and "no answer within 1 s" in check.detail
