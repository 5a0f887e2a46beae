"""Shared by the provisioning end-to-end tests: the server sections of an inventory pointing at
the local GitLab/Jenkins fakes and the gitlab-runner stand-in, and a runner for archfleet
commands that keeps every output for the final token scan and counts the servers' writes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cli import Run, archfleet
from tests.support.gitlab_fake import GitLabFake
from tests.support.jenkins_fake import FakeJenkins

# Only the variables' names go into an inventory; their values stay in the environment.
ENV_NAMES = ("E2E_GITLAB_TOKEN", "E2E_JENKINS_USER", "E2E_JENKINS_TOKEN")


def server_sections(
    gitlab: GitLabFake,
    jenkins: FakeJenkins,
    runner_url: str,
    *,
    arch: str,
    standin: bytes,
    tags: str = "native",
) -> str:
    """The inventory's `gitlab:` and `jenkins:` sections; the stand-in is served at
    `runner_url` (the `gitlab-runner-linux-<arch>` download name) with its checksum."""
    base = runner_url.rsplit("/", 1)[0]
    return f"""gitlab:
  url: {gitlab.url}
  token_env: {ENV_NAMES[0]}
  runner_type: instance_type
  tags: [{tags}]
  runner_url: "{base}/gitlab-runner-linux-{{arch}}"
  runner_sha256: {{{arch}: {hashlib.sha256(standin).hexdigest()}}}
jenkins:
  url: {jenkins.url}
  user_env: {ENV_NAMES[1]}
  token_env: {ENV_NAMES[2]}
  credentials_id: lab-ssh
"""


@dataclass
class FleetCommands:
    inventory: Path
    gitlab: GitLabFake
    jenkins: FakeJenkins
    api_token: str
    jenkins_token: str
    timeout: float = 900
    # Every stdout and stderr so far: the test scans them for tokens at the end.
    seen: list[str] = field(default_factory=list)

    def run(self, task: str, *args: str, as_json: bool = True, columns: int = 200) -> Run:
        env = dict(zip(ENV_NAMES, (self.api_token, "admin", self.jenkins_token), strict=True))
        result = archfleet(
            task,
            "--inventory",
            str(self.inventory),
            *(["--json"] if as_json else []),
            *args,
            env={**env, "COLUMNS": str(columns)},
            timeout=self.timeout,
        )
        self.seen.extend([result.stdout, result.stderr])
        return result

    def writes(self) -> int:
        """Requests that change something on either server."""
        gitlab_writes = [r for r in self.gitlab.requests if r.method != "GET"]
        return len(gitlab_writes) + len(self.jenkins.writes())

    def assert_no_token_leaked(self) -> None:
        for text in self.seen:
            assert self.api_token not in text and self.jenkins_token not in text
            assert "glrt-" not in text
