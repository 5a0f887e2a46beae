"""gitlab-runner on the REAL amd64 lab host (sshd on loopback), created on a local FAKE GitLab
(tests/support/gitlab_fake.py; there is no GitLab server here).

The binary is a STAND-IN (tests/support/runner_standin.py, a POSIX sh script that behaves like
`gitlab-runner --version/register/unregister/list` as documented): the real one cannot be
downloaded on these machines. The test serves it over loopback HTTP and installs it with the
toolkit's install script, exactly as the real binary would be installed.

The lab hosts are shared by the whole session: everything installed here is removed again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Lab
from tests.integration.test_fleet_facts import inventory_host
from tests.support.e2e import runner_downloads
from tests.support.gitlab_fake import GitLabFake
from tests.support.runner_standin import STANDIN_LOG, STANDIN_SCRIPT, STANDIN_VERSION
from toolkit.fleet.connect import CommandResult, connect, run_script
from toolkit.fleet.gather import gather_facts
from toolkit.fleet.gitlab_host import (
    CONFIG_FILE,
    RUNNER_BINARY,
    RunnerHostError,
    fix_config_mode,
    install_runner,
    unregister_runner,
)
from toolkit.fleet.gitlab_runner import GitLabRunnerError, GitLabRunners, create_and_register
from toolkit.inventory import GitLabSettings, Host

pytestmark = pytest.mark.integration

API_TOKEN = "glpat-host-test-93be10"
STANDIN = STANDIN_SCRIPT.encode()
STANDIN_SHA256 = hashlib.sha256(STANDIN).hexdigest()
BINARY = "gitlab-runner-linux-amd64"
CLEANUP = f"rm -rf {RUNNER_BINARY} {RUNNER_BINARY}.* /etc/gitlab-runner {STANDIN_LOG}"


class Shell:
    """Commands on one lab host; every result is kept for the final token scan."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.connection = connect(host)
        self.captured: list[str] = []

    def run(self, script: str) -> CommandResult:
        result = run_script(self.connection, script, timeout=60, host=self.host.name)
        self.keep(result)
        return result

    def keep(self, result: CommandResult) -> CommandResult:
        self.captured += [result.stdout, result.stderr]
        return result


@pytest.fixture
def amd64(lab: Lab) -> Iterator[Shell]:
    shell = Shell(inventory_host(lab, "amd64"))
    shell.run(CLEANUP)
    try:
        yield shell
    finally:
        shell.run(CLEANUP)
        shell.connection.close()


def test_runner_lifecycle_on_the_amd64_lab_host(
    amd64: Shell,
    lab: Lab,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    host, connection = amd64.host, amd64.connection
    errors: list[str] = []
    with GitLabFake(token=API_TOKEN, project="platform/builds") as fake:
        settings = GitLabSettings(
            url=fake.url, runner_type="instance_type", runner_sha256={"amd64": STANDIN_SHA256}
        )
        gitlab = GitLabRunners.from_settings(settings, {"GITLAB_TOKEN": API_TOKEN})

        # Registration fails (no gitlab-runner yet): the runner just created is deleted again.
        with pytest.raises(GitLabRunnerError) as half:
            create_and_register(gitlab, connection, host.name, settings, ["amd64"])
        errors.append(str(half.value))
        assert "gitlab-runner register failed (exit 127)" in errors[-1]
        assert "deleted on GitLab again" in errors[-1] and fake.runners == {}
        assert [r.method for r in fake.requests if r.path == "/api/v4/user/runners"] == ["POST"]

        with runner_downloads(STANDIN, "amd64", tmp_path, [lab.hosts["amd64"].root]) as served:
            url = served.url(f"/v{STANDIN_VERSION}/binaries/{BINARY}")
            # A wrong checksum is refused and leaves nothing behind.
            with pytest.raises(RunnerHostError) as refused:
                install_runner(connection, host.name, url, binary=BINARY, sha256="0" * 64)
            errors.append(str(refused.value))
            assert f"has sha256 {STANDIN_SHA256}, expected {'0' * 64}" in errors[-1]
            assert errors[-1].startswith(f"{host.name}: installing gitlab-runner from {url}")
            leftovers = amd64.run(f"ls -a {RUNNER_BINARY.rsplit('/', 1)[0]}")
            assert "gitlab-runner" not in leftovers.stdout
            amd64.keep(
                install_runner(connection, host.name, url, binary=BINARY, sha256=STANDIN_SHA256)
            )
        version = amd64.run("gitlab-runner --version")
        assert version.stdout.splitlines()[0] == f"Version:      {STANDIN_VERSION}"
        assert amd64.run(f"stat -c %a {RUNNER_BINARY}").stdout.strip() == "755"

        created = create_and_register(gitlab, connection, host.name, settings, ["amd64", "x"])
        assert list(fake.runners) == [created.id]
        assert fake.runners[created.id].tag_list == ["amd64", "x"]
        modes = amd64.run(f"stat -c %a /etc/gitlab-runner {CONFIG_FILE}").stdout.split()
        assert modes == ["700", "600"]

        facts = gather_facts(host)
        assert facts.gitlab_runner == STANDIN_VERSION and facts.runner_config_mode == "600"
        registered = facts.runner_named(host.name)
        assert registered is not None
        assert registered.token_hash == hashlib.sha256(created.token.encode()).hexdigest()[:16]

        # The real `list` prints tokens too: keep only the name column (after the `Runtime
        # platform` and `Listing configured runners` lines).
        listed = amd64.run("gitlab-runner list 2>&1 | awk 'NR > 2 {print $1}'")
        assert listed.stdout.split() == [host.name]

        # What gitlab-runner and its parent shell were called with: never the token.
        log = amd64.run(f"cat {STANDIN_LOG}").stdout
        assert "argv: [register] [--non-interactive]" in log and "parent: sh -c" in log

        # Mode drifted -> fixed.
        amd64.run(f"chmod 644 {CONFIG_FILE}")
        amd64.keep(fix_config_mode(connection, host.name))
        assert gather_facts(host).runner_config_mode == "600"

        amd64.keep(unregister_runner(connection, host.name, host.name))
        assert gather_facts(host).runner_named(host.name) is None
        again = amd64.keep(unregister_runner(connection, host.name, host.name))
        assert "nothing to unregister" in again.stdout
        assert gitlab.delete(created.id) is True

    out, err = capfd.readouterr()
    scanned = [*amd64.captured, *errors, caplog.text, out, err, log]
    # Both runner tokens (the failed and the good registration) start with glrt-.
    for token in (API_TOKEN, created.token, "glrt-"):
        assert not any(token in text for text in scanned), "a token leaked"


def test_install_on_the_arm64_lab_host(lab: Lab, tmp_path: Path) -> None:
    """The same install script on real arm64 code (GNU wget over https, arm64 sha256sum,
    QEMU), with the checksum taken from the release's release.sha256."""
    host = inventory_host(lab, "arm64")
    connection = connect(host)
    try:
        binary = "gitlab-runner-linux-arm64"
        with runner_downloads(STANDIN, "arm64", tmp_path, [lab.hosts["arm64"].root]) as served:
            install_runner(
                connection,
                host.name,
                served.url(f"/v{STANDIN_VERSION}/binaries/{binary}"),
                binary=binary,
                checksums_url=served.url(f"/v{STANDIN_VERSION}/release.sha256"),
            )
        facts = gather_facts(host)
        assert facts.arch == "arm64" and facts.gitlab_runner == STANDIN_VERSION
    finally:
        run_script(connection, CLEANUP, timeout=60, host=host.name)
        connection.close()
