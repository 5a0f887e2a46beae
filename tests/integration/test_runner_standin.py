"""The gitlab-runner STAND-IN (tests/support/runner_standin.py) run as root on a REAL lab host
(its own amd64 Debian bookworm root with sshd on 127.0.0.121) against the GitLab FAKE
(tests/support/gitlab_fake.py). Neither is the real program: these tests pin down that the two
behave as gitlab-runner 19.x and GitLab do (read from their source) for the calls the toolkit
makes, so a provisioning bug shows here rather than on real hosts (issue 14): the service is
installed and started through the host's own System V tools (`service`, start-stop-daemon,
/lib/lsb/init-functions), `run` polls GitLab with each runner's own token, and unregistering
a runner GitLab already deleted fails and leaves config.toml alone.
"""

from __future__ import annotations

import hashlib
import io
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Lab, own_host
from tests.support.gitlab_fake import PROJECT_ID, GitLabFake
from tests.support.runner_standin import (
    STANDIN_LOG,
    STANDIN_SCRIPT,
    STANDIN_SYSLOG,
    STANDIN_VERSION,
    serve_file,
)
from toolkit.fleet.connect import CommandResult, connect, run_script
from toolkit.inventory import Host, SshSettings
from toolkit.lab.hosts import lab_keypair

pytestmark = pytest.mark.integration

ADDRESS = "127.0.0.121"
API_TOKEN = "glpat-standin-test-5d1c"
BINARY = "/usr/local/bin/gitlab-runner"
CONFIG = "/etc/gitlab-runner/config.toml"
INIT = "/etc/init.d/gitlab-runner"
INSTALL = (
    "gitlab-runner install --user gitlab-runner --working-directory /home/gitlab-runner "
    f"--config {CONFIG}"
)


@dataclass
class Remote:
    host: Host
    connection: Any
    captured: list[str]

    def run(self, script: str, *, stdin: str | None = None) -> CommandResult:
        """A script as root on the host; `stdin` (a token) never becomes an argument."""
        if stdin is None:
            result = run_script(self.connection, script, timeout=60, host=self.host.name)
        else:
            raw = self.connection.run(
                f"sh -c {shlex.quote(script)}", in_stream=io.StringIO(stdin), timeout=60
            )
            result = CommandResult(raw.exited, raw.stdout, raw.stderr)
        self.captured += [result.stdout, result.stderr]
        return result


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    """One fresh amd64 lab host for the module, the stand-in installed as the real binary
    would be (downloaded over loopback HTTP, checked, mode 755), the service user created."""
    workdir = tmp_path_factory.mktemp("standin-host")
    key, public_key = lab_keypair(workdir)
    lab = Lab(workdir, key, public_key, workdir / "unused_known_hosts", {})
    with own_host(lab, workdir, "standin-amd64", "amd64", ADDRESS) as (made, known_hosts):
        ssh = SshSettings(
            user="root",
            port=made.port,
            key=key,
            known_hosts=known_hosts,
            connect_timeout=10,
            use_ssh_config=False,
        )
        host = Host(name=made.name, address=made.address, roles=("gitlab-runner",), ssh=ssh)
        connection = connect(host)
        shell = Remote(host, connection, [])
        try:
            data = STANDIN_SCRIPT.encode()
            with serve_file(data) as url:
                got = shell.run(
                    f"busybox wget -q -O {BINARY} {shlex.quote(url)} && chmod 755 {BINARY} && "
                    f"sha256sum {BINARY}"
                )
            assert got.ok, got.stderr
            assert got.stdout.split()[0] == hashlib.sha256(data).hexdigest()
            made_user = shell.run(
                "useradd --comment 'GitLab Runner' --create-home gitlab-runner --shell /bin/bash"
            )
            assert made_user.ok, made_user.stderr
            yield shell
        finally:
            connection.close()


def register(remote: Remote, fake: GitLabFake, name: str, token: str) -> CommandResult:
    """What the toolkit runs: the token read from stdin into CI_SERVER_TOKEN."""
    script = (
        "IFS= read -r CI_SERVER_TOKEN; export CI_SERVER_TOKEN; "
        f"gitlab-runner register --non-interactive --config {CONFIG} "
        f"--url {shlex.quote(fake.url)} --executor shell --description {shlex.quote(name)}"
    )
    return remote.run(script, stdin=token + "\n")


def wait_for(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


def test_version_and_install_write_what_the_real_service_install_writes(remote: Remote) -> None:
    """Uses the stand-in: `install` refuses root without --user (commands/service.go), then
    writes helpers/service/scripts.go's Debian init script (the lab root has
    /lib/lsb/init-functions and /sbin/start-stop-daemon) and a fresh config.toml."""
    version = remote.run("gitlab-runner --version")
    assert version.stdout.splitlines()[0] == f"Version:      {STANDIN_VERSION}"

    refused = remote.run(f"gitlab-runner install --config {CONFIG}")
    assert refused.exit_code == 1
    assert "FATAL: Please specify user that will run gitlab-runner service" in refused.stderr
    assert remote.run(f"test -e {INIT}").exit_code == 1

    installed = remote.run(INSTALL)
    assert installed.ok, installed.stderr
    script = remote.run(f"cat {INIT}").stdout
    assert script.startswith("#! /bin/bash\n")
    assert '--chdir "/home/gitlab-runner"' in script and "--chuid" not in script
    assert (
        f'--exec {BINARY} --  "run" "--config" "{CONFIG}" "--working-directory" '
        '"/home/gitlab-runner" "--service" "gitlab-runner" "--syslog" "--user" "gitlab-runner"'
    ) in script
    modes = remote.run(f"stat -c %a {INIT} /etc/gitlab-runner {CONFIG}").stdout.split()
    assert modes == ["755", "700", "600"]
    assert remote.run(f"cat {CONFIG}").stdout.startswith("concurrent = 1\ncheck_interval = 0\n")
    assert remote.run("readlink /etc/rc2.d/S50gitlab-runner").stdout.strip() == INIT

    again = remote.run(INSTALL)
    assert again.exit_code == 1
    assert f"Failed to install gitlab-runner: Init already exists: {INIT}" in again.stderr


def test_started_service_polls_gitlab_with_its_own_token(remote: Remote) -> None:
    """Uses the stand-in and the GitLab fake: register -> POST /runners/verify, `start` ->
    `service gitlab-runner start` -> start-stop-daemon runs `gitlab-runner run`, which polls
    POST /jobs/request with THIS runner's token; the fake marks the runner online. `status`
    answers as kardianos' sysv Status does with the Debian init script: never "running"."""
    with GitLabFake(token=API_TOKEN, project="platform/builds") as fake:
        runner_id = fake.add_runner(
            "project_type", "standin-amd64", ["amd64"], project_id=PROJECT_ID
        )
        other_id = fake.add_runner("project_type", "elsewhere", ["amd64"], project_id=PROJECT_ID)
        token = fake.runners[runner_id].token
        assert fake.runners[runner_id].status == "never_contacted"

        registered = register(remote, fake, "standin-amd64", token)
        assert registered.ok, registered.stderr
        assert "Verifying runner... is valid" in registered.stderr
        config = remote.run(f"cat {CONFIG}").stdout
        assert f"  id = {runner_id}\n" in config and '  name = "standin-amd64"\n' in config
        system_id = remote.run("cat /etc/gitlab-runner/.runner_system_id").stdout.strip()
        assert system_id.startswith("r_") and len(system_id) == 14
        assert list(fake.runners[runner_id].managers) == [system_id]

        # Polls every second, so the test need not wait the default 3 s (multi.go).
        remote.run(f"sed -i 's/^check_interval = 0$/check_interval = 1/' {CONFIG}")
        before = remote.run("gitlab-runner status")
        assert before.exit_code == 1 and before.stdout == ""
        assert "gitlab-runner: the service is not installed" in before.stderr

        started = remote.run("gitlab-runner start")
        assert started.ok, started.stderr
        try:
            assert wait_for(lambda: len(fake.polls_of(runner_id)) >= 2), fake.polls
            polls = fake.polls_of(runner_id)
            assert {p.system_id for p in polls} == {system_id}
            assert {p.token_sha256 for p in polls} == {
                hashlib.sha256(token.encode()).hexdigest()[:16]
            }
            assert all(p.status == 204 for p in polls)
            assert fake.polls_of(other_id) == []
            assert fake.runners[runner_id].status == "online"
            assert fake.runners[other_id].status == "never_contacted"

            daemon = remote.run("cat /var/run/gitlab-runner.pid")
            pid = daemon.stdout.strip()
            cmdline = remote.run(f"tr '\\0' ' ' </proc/{pid}/cmdline").stdout
            assert (
                f"{BINARY} run --config {CONFIG}" in cmdline and "--user gitlab-runner" in cmdline
            )
            # The Debian script's own answer, and what gitlab-runner makes of it: the
            # template passes an empty "$DAEMON" to status_of_proc, which bookworm's
            # init-functions refuse ("invalid arguments"), and the script still exits 0.
            own = remote.run("service gitlab-runner status")
            assert own.ok and "could not access PID file for GitLab Runner" in own.stdout
            # What a facts script can use instead (start-stop-daemon(8): 0 = running).
            ssd = remote.run("start-stop-daemon --status --pidfile /var/run/gitlab-runner.pid")
            assert ssd.exit_code == 0
            running = remote.run("gitlab-runner status")
            assert running.exit_code == 1 and running.stdout == ""
            assert "gitlab-runner: the service is not installed" in running.stderr
            assert "Checking for jobs... no content" in remote.run(f"cat {STANDIN_SYSLOG}").stdout
        finally:
            stopped = remote.run("gitlab-runner stop")
        assert stopped.ok, stopped.stderr
        assert wait_for(lambda: remote.run(f"kill -0 {pid}").exit_code != 0, 10)
        count = len(fake.polls_of(runner_id))
        time.sleep(2.5)
        assert len(fake.polls_of(runner_id)) == count

        # Unregister while GitLab still has the runner: 204, the entry goes.
        gone = remote.run(f"gitlab-runner unregister --config {CONFIG} --name standin-amd64")
        assert gone.ok, gone.stderr
        assert "Unregistering runner manager from GitLab succeeded" in gone.stderr
        assert "standin-amd64" not in remote.run(f"cat {CONFIG}").stdout
        assert fake.runners[runner_id].managers == {}

    # What gitlab-runner printed and logged (argv, parents, service log): never the token.
    log = remote.run(f"cat {STANDIN_LOG} {STANDIN_SYSLOG}").stdout
    said = [r.stdout + r.stderr for r in (registered, before, started, running, stopped, gone)]
    assert not any(token in text for text in [*said, log]), "a token leaked"
    assert "glrt-" not in log


def test_runner_deleted_on_gitlab_cannot_be_unregistered_but_verify_drops_it(
    remote: Remote,
) -> None:
    """Uses the stand-in and the GitLab fake, the case of issue 14: the runner was deleted on
    GitLab first. `unregister` gets 403 from DELETE /runners/managers and exits 1 with
    config.toml as it was (commands/unregister.go); `verify --delete` removes the entry
    (commands/verify.go: only a 403 counts as gone), keeping a runner GitLab still has."""
    with GitLabFake(token=API_TOKEN, project="platform/builds") as fake:
        doomed = fake.add_runner("project_type", "doomed", ["amd64"], project_id=PROJECT_ID)
        kept = fake.add_runner("project_type", "kept", ["amd64"], project_id=PROJECT_ID)
        for runner_id, name in ((doomed, "doomed"), (kept, "kept")):
            done = register(remote, fake, name, fake.runners[runner_id].token)
            assert done.ok, done.stderr
        fake.delete_runner(doomed)
        before = remote.run(f"cat {CONFIG}").stdout

        refused = remote.run(f"gitlab-runner unregister --config {CONFIG} --name doomed")
        assert refused.exit_code == 1
        assert "ERROR: Unregistering runner manager from GitLab forbidden" in refused.stderr
        assert "status=403 Forbidden" in refused.stderr
        assert "FATAL: failed to unregister runner" in refused.stderr
        assert remote.run(f"cat {CONFIG}").stdout == before

        # Without --delete a gone runner is an error and nothing changes.
        strict = remote.run(f"gitlab-runner verify --config {CONFIG}")
        assert strict.exit_code == 1 and "FATAL: Failed to verify runners" in strict.stderr
        assert remote.run(f"cat {CONFIG}").stdout == before

        none = remote.run(f"gitlab-runner verify --delete --config {CONFIG} --name nobody")
        assert none.exit_code == 1
        assert "no runner matches the filtering parameters" in none.stderr

        dropped = remote.run(f"gitlab-runner verify --delete --config {CONFIG}")
        assert dropped.ok, dropped.stderr
        assert "Verifying runner... is not valid" in dropped.stderr
        assert f"Updated {CONFIG}" in dropped.stderr
        after = remote.run(f"cat {CONFIG}").stdout
        assert 'name = "doomed"' not in after and 'name = "kept"' in after
        assert after.startswith("concurrent = 1\n")

        # A re-registration attempt with the deleted token fails before touching config.toml.
        token = fake.runners[kept].token[:-4] + "dead"
        again = register(remote, fake, "ghost", token)
        assert again.exit_code == 1 and "PANIC: Failed to verify the runner." in again.stderr
        assert remote.run(f"cat {CONFIG}").stdout == after


def test_a_runner_token_refuses_server_side_flags(remote: Remote) -> None:
    """Uses the stand-in and the GitLab fake: a glrt- token with --tag-list is refused before
    any request (register.go ensureServerConfigArgsEmpty), nothing written."""
    with GitLabFake(token=API_TOKEN, project="platform/builds") as fake:
        runner_id = fake.add_runner("project_type", "flags", ["amd64"], project_id=PROJECT_ID)
        mark = fake.mark()
        script = (
            "IFS= read -r CI_SERVER_TOKEN; export CI_SERVER_TOKEN; "
            "gitlab-runner register --non-interactive --config /tmp/flags/config.toml "
            f"--url {shlex.quote(fake.url)} --executor shell --tag-list amd64"
        )
        refused = remote.run(script, stdin=fake.runners[runner_id].token + "\n")
        assert refused.exit_code == 1 and "is reserved" in refused.stderr
        assert fake.since(mark) == []
        assert remote.run("test -e /tmp/flags/config.toml").exit_code == 1
