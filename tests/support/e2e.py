"""Shared by the provisioning end-to-end tests: the server sections of an inventory pointing at
the local GitLab/Jenkins fakes and the gitlab-runner stand-in, and a runner for archfleet
commands that keeps every output for the final token scan and counts the servers' writes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cli import Run, archfleet
from tests.support.gitlab_fake import GitLabFake
from tests.support.https_files import HttpsFiles, serve_https, trust_in_root
from tests.support.jenkins_fake import FakeJenkins
from tests.support.runner_standin import STANDIN_VERSION
from toolkit.lab.hosts import LabHost

# Only the variables' names go into an inventory; their values stay in the environment.
ENV_NAMES = ("E2E_GITLAB_TOKEN", "E2E_JENKINS_USER", "E2E_JENKINS_TOKEN")


@contextmanager
def runner_downloads(
    standin: bytes, arch: str, workdir: Path, roots: Iterable[Path] = ()
) -> Iterator[HttpsFiles]:
    """The gitlab-runner stand-in served over https as GitLab's download bucket lays it out
    (gitlab-runner docs/install/bleeding-edge.md "Download any other tagged release":
    `/v<version>/binaries/gitlab-runner-linux-<arch>`, here ONLY under that arch's name; and
    `.gitlab/ci/postrelease.gitlab-ci.yml`'s `release.sha256` beside it, sha256sum lines), with
    the test CA trusted in each host root in `roots`. A path not served is a 404."""
    name = f"gitlab-runner-linux-{arch}"
    sums = f"{hashlib.sha256(standin).hexdigest()}  binaries/{name}\n".encode()
    files = {
        f"/v{STANDIN_VERSION}/binaries/{name}": standin,
        f"/v{STANDIN_VERSION}/release.sha256": sums,
    }
    with serve_https(files, workdir) as served:
        for root in roots:
            trust_in_root(root, served.ca_file)
        yield served


def server_sections(
    gitlab: GitLabFake,
    jenkins: FakeJenkins,
    downloads: HttpsFiles,
    *,
    tags: str = "native",
    concurrent: int = 2,
    agent_key: str = "",
) -> str:
    """The inventory's `gitlab:` and `jenkins:` sections for the fakes (plain http on
    loopback, so `allow_http`), a group runner of the fake's group, and the pinned stand-in
    downloaded from `downloads` with its checksum from the served release.sha256."""
    return f"""gitlab:
  url: {gitlab.url}
  allow_http: true
  token_env: {ENV_NAMES[0]}
  group: {gitlab.group}
  tags: [{tags}]
  concurrent: {concurrent}
  runner_version: "{STANDIN_VERSION}"
  runner_url: "{downloads.base}/v{{version}}/binaries/gitlab-runner-linux-{{arch}}"
  runner_checksums_url: "{downloads.base}/v{{version}}/release.sha256"
jenkins:
  url: {jenkins.url}
  allow_http: true
  user_env: {ENV_NAMES[1]}
  token_env: {ENV_NAMES[2]}
  credentials_id: lab-ssh
""" + (f"  agent_authorized_key: {json.dumps(agent_key.strip())}\n" if agent_key else "")


def runner_processes(host: LabHost) -> list[str]:
    """Command lines of the `gitlab-runner run` processes inside the host's root."""
    found = []
    for pid in host.processes():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        text = " ".join(a.decode(errors="replace") for a in argv if a)
        if "gitlab-runner" in text and " run " in f"{text} ":
            found.append(text)
    return found


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
        # A runner's own calls (verify at registration, job polls) are not provisioning's.
        return len(self.gitlab.client_writes()) + len(self.jenkins.writes())

    def assert_no_token_leaked(self) -> None:
        for text in self.seen:
            assert self.api_token not in text and self.jenkins_token not in text
            assert "glrt-" not in text
