"""doctor's evaluations, pure: probe findings in, rows (check, target, status, detail, fix) out.
No host, no server: the findings are built here, the way the probes would report them."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from toolkit.doctor.answer import Answer
from toolkit.doctor.checks import NOT_CHECKED_NO_TOKEN, Check, exit_code, redacted
from toolkit.doctor.gitlab import GitLabProbe, evaluate_gitlab, parse_version
from toolkit.doctor.host import (
    SUDO_FRAGMENT,
    Hop,
    HostProbe,
    SshFailure,
    Sudo,
    evaluate_host,
    parse_sudo,
    ssh_fix,
)
from toolkit.doctor.jenkins import (
    PLUGINS,
    SSH_KEY_TYPE,
    JenkinsProbe,
    credential_path,
    evaluate_jenkins,
)
from toolkit.fleet.facts import HostFacts, parse_facts
from toolkit.inventory import Inventory, load

SHA = "3f0a1c5e9b7d2a4c6e8f0b1d3a5c7e9f1b3d5a7c9e1f3b5d7a9c1e3f5b7d9a1c"
URL_G = "https://gitlab.example.com"
URL_J = "https://jenkins.example.com"


@pytest.fixture
def fleet(tmp_path: Path) -> Inventory:
    key = tmp_path / "id_ed25519"
    key.write_text("not a key: the evaluations never read it\n")
    path = tmp_path / "fleet.yml"
    path.write_text(f"""
ssh: {{user: ci, become: sudo, key: {key}, use_ssh_config: false}}
builder: {{tool: buildah, install: false}}
gitlab: {{url: {URL_G}, group: platform}}
jenkins: {{url: {URL_J}, credentials_id: agents-ssh}}
archfleet:
  version: 0.1.0
  wheel: https://files.example.com/archfleet-0.1.0-py3-none-any.whl
  sha256: {SHA}
hosts:
  - {{name: b-amd64, address: 10.0.0.5, arch: amd64, roles: [gitlab-runner, merge-tool]}}
  - {{name: b-arm64, address: 10.0.1.7, arch: arm64, roles: [jenkins-agent],
      ssh: {{jump_host: "admin@bastion.example.com:2200"}}, jenkins: {{address: 10.0.1.7}}}}
  - {{name: m-only, address: 10.0.0.9, roles: [merge-tool]}}
""")
    return load(path)


def host(fleet: Inventory, name: str):  # type: ignore[no-untyped-def]
    return next(h for h in fleet.hosts if h.name == name)


def facts(machine: str, **extra: object) -> HostFacts:
    base = parse_facts(
        f"machine={machine}\nuser=ci\nos_id=debian\nos_version=13\napt_get=yes\nfacts=done\n",
        host="h",
    )
    return replace(base, **extra)  # type: ignore[arg-type]


GOOD = dict(buildah="1.39.3", skopeo="1.18.0", archfleet="0.1.0", archfleet_linked=True)


def rows(checks: list[Check], name: str) -> list[Check]:
    return [c for c in checks if c.check == name]


def one(checks: list[Check], name: str) -> Check:
    [found] = rows(checks, name)
    return found


# --- the row ----------------------------------------------------------------------------------


def test_a_problem_without_a_fix_is_refused_and_blockers_decide_the_exit_code() -> None:
    with pytest.raises(ValueError, match="needs a fix"):
        Check("arch", "h", "blocker", "wrong")
    with pytest.raises(ValueError, match="expected one of"):
        Check("arch", "h", "error", "wrong", "fix")  # type: ignore[arg-type]
    fine = [Check("a", "h", "ok", "x"), Check("b", "h", "warn", "y", "do z")]
    assert exit_code(fine) == 0
    assert exit_code([*fine, Check("c", "h", "blocker", "w", "do v")]) == 1


def test_redacted_scrubs_every_secret_from_detail_and_fix() -> None:
    checks = [Check("gitlab-token", URL_G, "blocker", "sent glpat-SECRET", "rotate glpat-SECRET")]
    [clean] = redacted(checks, ["glpat-SECRET", ""])
    assert "glpat-SECRET" not in clean.detail + clean.fix
    assert clean.detail == "sent ***"


# --- hosts ------------------------------------------------------------------------------------


def test_a_healthy_host_is_all_ok(fleet: Inventory) -> None:
    probe = HostProbe(
        host(fleet, "b-amd64"),
        facts=facts("x86_64", **GOOD),
        sudo=Sudo("ok"),
        login=Hop("target", "10.0.0.5", 22, "ci"),
    )
    checks = evaluate_host(fleet, probe)
    assert [c.check for c in checks] == ["ssh", "sudo", "arch", "builder", "merge-tool"]
    assert {c.status for c in checks} == {"ok"}
    assert one(checks, "ssh").detail == "target 10.0.0.5:22 as ci"
    assert one(checks, "arch").detail == "amd64 (uname -m: x86_64)"


def test_a_failed_jump_host_is_named_with_user_and_key(fleet: Inventory) -> None:
    target = host(fleet, "b-arm64")
    jump = Hop("jump host", "bastion.example.com", 2200, "admin")
    failure = SshFailure(jump, "b-arm64: cannot connect (Connection refused)", target.ssh.key)
    [check] = evaluate_host(fleet, HostProbe(target, ssh=failure))
    assert check.status == "blocker" and check.check == "ssh"
    assert check.detail.startswith(
        f"jump host bastion.example.com:2200 (the jump host of this host) as admin with key "
        f"{target.ssh.key}: "
    )
    # What connect.py's message says already is not said twice.
    worded = replace(failure, error=f"cannot connect to admin@bastion:2200 (key {target.ssh.key})")
    [again] = evaluate_host(fleet, HostProbe(target, ssh=worded))
    assert again.detail == (
        "jump host bastion.example.com:2200 (the jump host of this host): " + worded.error
    )
    assert "check that the jump host bastion.example.com:2200 is up" in check.fix


def test_a_target_that_fails_behind_a_working_jump_host_says_so(fleet: Inventory) -> None:
    target = host(fleet, "b-arm64")
    jump = Hop("jump host", "bastion.example.com", 2200, "admin")
    failure = SshFailure(
        Hop("target", "10.0.1.7", 22, "ci"),
        "b-arm64: authentication failed (Authentication failed.)",
        target.ssh.key,
        via=jump,
    )
    [check] = evaluate_host(fleet, HostProbe(target, ssh=failure))
    assert check.detail.startswith(
        "target 10.0.1.7:22 (through jump host bastion.example.com:2200) as ci with key "
    )
    assert check.fix.startswith(
        f"let ci log in on the target 10.0.1.7:22 with key {target.ssh.key}"
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("h: unknown host key of [10.0.0.5]:22; add it", "ssh-keyscan -p 22 10.0.0.5"),
        ("h: host key mismatch (ssh-ed25519); the known_hosts entry differs", "reinstalled"),
        ("h: cannot connect (timed out)", "is up and its sshd listens there"),
        ("h: cannot read ssh config file /x (No such file)", "ssh.ssh_config_file"),
    ],
)
def test_each_kind_of_ssh_error_gets_its_own_fix(error: str, expected: str) -> None:
    assert expected in ssh_fix(error, Hop("target", "10.0.0.5", 22, "ci"), None)


def test_no_key_in_the_inventory_names_the_default_keys() -> None:
    fix = ssh_fix("authentication failed", Hop("target", "10.0.0.5", 22, "ci"), None)
    assert "the default keys (ssh agent, ~/.ssh/id_*)" in fix


def test_wrong_arch_is_a_blocker_with_the_line_to_change(fleet: Inventory) -> None:
    probe = HostProbe(host(fleet, "b-amd64"), facts=facts("aarch64", **GOOD), sudo=Sudo("ok"))
    check = one(evaluate_host(fleet, probe), "arch")
    assert check.status == "blocker"
    assert "declares amd64, the host is arm64 (uname -m: aarch64)" in check.detail
    assert check.fix.startswith(f"set arch: arm64 for b-amd64 in {fleet.path}")


def test_an_undeclared_arch_is_reported_not_refused(fleet: Inventory) -> None:
    probe = HostProbe(host(fleet, "m-only"), facts=facts("x86_64", **GOOD), sudo=Sudo("ok"))
    checks = evaluate_host(fleet, probe)
    assert one(checks, "arch").status == "ok"
    assert "declares none" in one(checks, "arch").detail
    assert not rows(checks, "builder")  # a merge-tool-only host builds nothing


def test_sudo_verdicts(fleet: Inventory) -> None:
    h = host(fleet, "b-amd64")
    refused = Sudo("refused", "sudo: a password is required")

    def sudo_row(f: HostFacts, s: Sudo, target=h) -> Check:  # type: ignore[no-untyped-def]
        return one(evaluate_host(fleet, HostProbe(target, facts=f, sudo=s)), "sudo")

    assert sudo_row(facts("x86_64", **GOOD, user="root"), Sudo(None)).status == "ok"
    row = sudo_row(facts("x86_64", **GOOD), refused)
    assert row.status == "blocker" and "(sudo: a password is required)" in row.detail
    assert "'ci ALL=(root) NOPASSWD: ALL' in /etc/sudoers.d/archfleet" in row.fix
    assert sudo_row(facts("x86_64", **GOOD), Sudo("missing")).fix.startswith("install sudo")
    no_become = replace(h, ssh=replace(h.ssh, become=None))
    row = sudo_row(facts("x86_64", **GOOD), Sudo("ok"), no_become)
    assert row.status == "blocker" and row.fix.startswith("set ssh.become: sudo for b-amd64")


def test_sudo_fragment_as_root_asks_nothing_and_parses(tmp_path: Path) -> None:
    """The fragment runs in the real sh here; as root (these machines) it prints nothing."""
    out = subprocess.run(["sh", "-c", SUDO_FRAGMENT], capture_output=True, text=True, check=True)
    expected = Sudo(None) if subprocess.check_output(["id", "-u"]).strip() == b"0" else None
    if expected is not None:
        assert out.stdout == "" and parse_sudo(out.stdout) == expected
    said = "doctor_sudo=refused\ndoctor_sudo_said=sudo: a password is required\n"
    assert parse_sudo(said) == Sudo("refused", "sudo: a password is required")
    assert parse_sudo("doctor_sudo=ok\n") == Sudo("ok")


@pytest.mark.parametrize(
    ("install", "extra", "status", "words"),
    [
        (False, {}, "blocker", "missing: buildah, skopeo, and builder.install is false"),
        (True, {}, "warn", "provision-runners installs buildah and skopeo"),
        (False, {"buildah": "1.39.3"}, "blocker", "missing: skopeo"),
    ],
)
def test_builder_verdicts(
    fleet: Inventory, install: bool, extra: dict[str, str], status: str, words: str
) -> None:
    inv = replace(fleet, builder=replace(fleet.builder, install=install))
    probe = HostProbe(
        host(inv, "b-amd64"),
        facts=facts("x86_64", archfleet="0.1.0", archfleet_linked=True, **extra),
        sudo=Sudo("ok"),
    )
    check = one(evaluate_host(inv, probe), "builder")
    assert check.status == status and words in check.detail


def test_docker_builder_on_debian_12_is_a_blocker_before_any_install(fleet: Inventory) -> None:
    inv = replace(fleet, builder=replace(fleet.builder, tool="docker", install=True))
    probe = HostProbe(
        host(inv, "b-amd64"),
        facts=facts("x86_64", os_version="12", archfleet="0.1.0", archfleet_linked=True),
        sudo=Sudo("ok"),
    )
    check = one(evaluate_host(inv, probe), "builder")
    assert check.status == "blocker" and "Debian 12 has no docker-buildx package" in check.detail
    assert check.fix.startswith("use builder.tool: buildah")


def test_merge_tool_verdicts(fleet: Inventory) -> None:
    h = host(fleet, "m-only")

    def row(**extra: object) -> Check:
        probe = HostProbe(h, facts=facts("x86_64", **extra), sudo=Sudo("ok"))
        return one(evaluate_host(fleet, probe), "merge-tool")

    assert row(archfleet="0.1.0", archfleet_linked=True).status == "ok"
    unlinked = row(archfleet="0.1.0")
    assert (
        unlinked.status == "warn" and "/usr/local/bin/archfleet does not point" in unlinked.detail
    )
    older = row(archfleet="0.0.9", archfleet_linked=True)
    assert older.status == "warn" and "archfleet 0.0.9 is installed" in older.detail
    stuck = row(apt_get=False)
    assert stuck.status == "blocker" and "no python3 and no apt-get" in stuck.detail
    assert row().fix == "run provision-runners --limit m-only (it installs archfleet 0.1.0)"


def test_a_host_behind_a_jump_host_says_which_way_it_was_reached(fleet: Inventory) -> None:
    probe = HostProbe(
        host(fleet, "b-arm64"),
        facts=facts("aarch64", **GOOD),
        sudo=Sudo("ok"),
        login=Hop("target", "10.0.1.7", 22, "ci"),
        jump=Hop("jump host", "bastion.example.com", 2200, "admin"),
    )
    checks = evaluate_host(fleet, probe)
    assert one(checks, "ssh").detail == (
        "target 10.0.1.7:22 as ci via jump host bastion.example.com:2200"
    )
    assert exit_code(checks) == 0


def test_an_agents_java_is_judged_as_the_plan_judges_it(fleet: Inventory) -> None:
    """jenkins.java_version 21 (the default): 21 is ok; none on Debian 13 (which ships 21)
    is installed by provisioning; none on Debian 12 (17 only) is the plan's refusal."""

    def java(**extra: object) -> Check:
        probe = HostProbe(host(fleet, "b-arm64"), facts=facts("aarch64", **GOOD, **extra))
        return one(evaluate_host(fleet, probe), "java")

    assert java(java="21.0.5").status == "ok"
    assert java(java="21.0.5").detail == "Java 21.0.5 (the agent needs 21+)"
    installs = java()
    assert installs.status == "warn"
    assert installs.detail == (
        "Java none; the agent needs 21+: provision-runners installs openjdk-21-jre-headless "
        "(apt-get)"
    )
    refused = java(os_version="12", java="17.0.13")
    assert refused.status == "blocker"
    assert refused.detail == (
        "the Jenkins agent needs Java 21 (jenkins.java_version; current Jenkins, 2.545+ and "
        "LTS 2.555.1+, refuses older agents) but it has Java 17.0.13 and debian 12 ships Java "
        "17 only"
    )
    assert refused.fix.startswith("Install a Java 21 runtime yourself")
    assert refused.fix.endswith("or set jenkins.java_version to what your Jenkins needs")
    no_agent = HostProbe(host(fleet, "b-amd64"), facts=facts("x86_64", **GOOD))
    assert "java" not in [c.check for c in evaluate_host(fleet, no_agent)]


def test_facts_that_fail_are_a_blocker_after_a_working_ssh(fleet: Inventory) -> None:
    checks = evaluate_host(fleet, HostProbe(host(fleet, "m-only"), error="exit 2: sh: oops"))
    assert [(c.check, c.status) for c in checks] == [("ssh", "ok"), ("facts", "blocker")]


# --- GitLab -----------------------------------------------------------------------------------


def gitlab_rows(fleet: Inventory, probe: GitLabProbe, *, runners: bool = True) -> list[Check]:
    assert fleet.gitlab is not None
    return evaluate_gitlab(fleet.gitlab, probe, provisions_runners=runners)


def token_answer(*scopes: str, **extra: object) -> Answer:
    return Answer(200, {"name": "ci", "scopes": list(scopes), "active": True, **extra})


VERSION_OK = Answer(200, {"version": "17.11.2-ee", "revision": "abc"})


def test_gitlab_unreachable_is_one_blocker(fleet: Inventory) -> None:
    [check] = gitlab_rows(fleet, GitLabProbe(URL_G, unreachable="no connection within 10 s"))
    assert check.status == "blocker" and "no connection within 10 s" in check.detail


def test_gitlab_without_a_token_is_reachable_and_not_checked(fleet: Inventory) -> None:
    checks = gitlab_rows(fleet, GitLabProbe(URL_G, version=Answer(401, {"message": "401"})))
    assert one(checks, "gitlab").status == "ok"
    for name in ("gitlab-version", "gitlab-token"):
        row = one(checks, name)
        assert row.status == "warn" and row.detail == NOT_CHECKED_NO_TOKEN
        assert "$GITLAB_TOKEN" in row.fix
    assert exit_code(checks) == 0


def test_a_healthy_gitlab(fleet: Inventory) -> None:
    probe = GitLabProbe(
        URL_G,
        token_source="$GITLAB_TOKEN",
        version=VERSION_OK,
        token=token_answer("create_runner", "manage_runner", "read_api"),
        user=Answer(200, {"id": 9, "username": "ci-bot"}),  # no is_admin: no administrator
        member=Answer(200, {"id": 9, "username": "ci-bot", "access_level": 50}),
    )
    checks = gitlab_rows(fleet, probe)
    assert {c.status for c in checks} == {"ok"}
    assert "GitLab 17.11.2-ee (>= 16.11" in one(checks, "gitlab-version").detail
    assert one(checks, "gitlab-runner-rights").detail.startswith("ci-bot is Owner in group ")


def test_an_old_gitlab_is_a_blocker_that_says_why(fleet: Inventory) -> None:
    probe = GitLabProbe(
        URL_G,
        token_source="$GITLAB_TOKEN",
        version=Answer(200, {"version": "16.10.4"}),
        token=token_answer("api"),
    )
    check = one(gitlab_rows(fleet, probe), "gitlab-version")
    assert check.status == "blocker"
    assert "array inputs" in check.detail and "16.11 or later" in check.detail
    assert parse_version("16.11.0-ee") == (16, 11) and parse_version("x") is None


def test_a_token_lacking_scopes_names_the_missing_ones(fleet: Inventory) -> None:
    probe = GitLabProbe(
        URL_G,
        token_source="$GITLAB_TOKEN",
        version=Answer(403, {"error": "insufficient_scope", "scope": "api read_api read_user"}),
        token=token_answer("create_runner"),
    )
    checks = gitlab_rows(fleet, probe)
    token = one(checks, "gitlab-token")
    assert token.status == "blocker"
    assert "scopes create_runner; provisioning runners needs manage_runner, read_api" in (
        token.detail
    )
    assert "create_runner, manage_runner, read_api (or api)" in token.fix
    assert one(checks, "gitlab-version").status == "warn"
    # The same token is enough for a fleet that provisions no runner.
    assert one(gitlab_rows(fleet, probe, runners=False), "gitlab-token").status == "ok"


def test_a_refused_token_is_one_blocker(fleet: Inventory) -> None:
    probe = GitLabProbe(
        URL_G,
        token_source="$GITLAB_TOKEN",
        version=Answer(401, {"message": "401 Unauthorized"}),
        token=Answer(401, {"message": "401 Unauthorized"}),
    )
    checks = gitlab_rows(fleet, probe)
    assert [c.status for c in checks].count("blocker") == 1
    assert "HTTP 401" in one(checks, "gitlab-token").detail


@pytest.mark.parametrize("status", [400, 404])
def test_a_token_that_is_no_pat_is_a_warning(fleet: Inventory, status: int) -> None:
    body = {"message": "400 Bad request - This endpoint requires token type to be a personal"}
    probe = GitLabProbe(
        URL_G, token_source="$GITLAB_TOKEN", version=VERSION_OK, token=Answer(status, body)
    )
    check = one(gitlab_rows(fleet, probe), "gitlab-token")
    assert check.status == "warn" and "scopes cannot be read" in check.detail


def test_a_revoked_token_is_a_blocker(fleet: Inventory) -> None:
    probe = GitLabProbe(
        URL_G,
        token_source="$GITLAB_TOKEN",
        version=VERSION_OK,
        token=token_answer("api", revoked=True, active=False),
    )
    assert one(gitlab_rows(fleet, probe), "gitlab-token").status == "blocker"


# --- Jenkins ----------------------------------------------------------------------------------

ALL_PLUGINS = {
    "plugins": [
        {"shortName": name, "version": "1.0", "active": True, "enabled": True}
        for need in PLUGINS
        for name in need.names[:1]
    ]
}
ROOT = Answer(200, {"mode": "NORMAL"}, {"x-jenkins": "2.516.3"})


def jenkins_rows(fleet: Inventory, probe: JenkinsProbe, *, agents: bool = True) -> list[Check]:
    assert fleet.jenkins is not None
    return evaluate_jenkins(fleet.jenkins, probe, has_agents=agents)


def healthy_jenkins(**changes: object) -> JenkinsProbe:
    probe = JenkinsProbe(
        URL_J,
        authenticated=True,
        root=ROOT,
        plugins=Answer(200, ALL_PLUGINS),
        credential=Answer(200, {"id": "agents-ssh", "typeName": SSH_KEY_TYPE}),
    )
    return replace(probe, **changes)  # type: ignore[arg-type]


def without(*names: str) -> Answer:
    kept = [p for p in ALL_PLUGINS["plugins"] if p["shortName"] not in names]
    return Answer(200, {"plugins": kept})


def test_a_healthy_jenkins(fleet: Inventory) -> None:
    checks = jenkins_rows(fleet, healthy_jenkins())
    assert {c.status for c in checks} == {"ok"}
    assert one(checks, "jenkins-version").detail == "Jenkins 2.516.3"
    assert not rows(checks, "jenkins-plugin")  # a row of its own only for a problem
    listed = one(checks, "jenkins-plugins").detail
    assert listed.startswith(f"{len(PLUGINS)} of {len(PLUGINS)} needed: ssh-slaves 1.0, ")
    assert (
        credential_path("a b/c")
        == "/credentials/store/system/domain/_/credential/a%20b%2Fc/api/json"
    )


def test_without_a_token_jenkins_still_tells_its_version(fleet: Inventory) -> None:
    anonymous = Answer(403, None, {"x-jenkins": "2.516.3"}, "Authentication required")
    checks = jenkins_rows(fleet, JenkinsProbe(URL_J, root=anonymous))
    assert one(checks, "jenkins-version").detail == "Jenkins 2.516.3"
    assert one(checks, "jenkins-plugins").detail == NOT_CHECKED_NO_TOKEN
    assert one(checks, "jenkins-credentials").detail == NOT_CHECKED_NO_TOKEN
    assert exit_code(checks) == 0


def test_a_refused_user_is_a_blocker_and_nothing_else_is_asked(fleet: Inventory) -> None:
    probe = JenkinsProbe(URL_J, authenticated=True, root=Answer(401, None, {"x-jenkins": "2.5"}))
    checks = jenkins_rows(fleet, probe)
    auth = one(checks, "jenkins-auth")
    assert auth.status == "blocker" and "$JENKINS_USER / $JENKINS_API_TOKEN" in auth.detail
    assert not rows(checks, "jenkins-plugin")


def test_a_missing_required_plugin_is_a_blocker_with_its_install_line(fleet: Inventory) -> None:
    checks = jenkins_rows(
        fleet, healthy_jenkins(plugins=without("ssh-slaves", "lockable-resources"))
    )
    [ssh] = [c for c in checks if "ssh-slaves" in c.detail]
    assert ssh.status == "blocker"
    assert ssh.detail.startswith("SSH Build Agents (ssh-slaves) is not installed")
    assert "jenkins-plugin-cli --plugins ssh-slaves" in ssh.fix
    [lock] = [c for c in checks if "lockable-resources" in c.detail]
    assert lock.status == "warn"


def test_the_old_name_of_the_library_plugin_counts_and_an_inactive_one_does_not(
    fleet: Inventory,
) -> None:
    renamed = without("pipeline-groovy-lib").body["plugins"] + [
        {"shortName": "workflow-cps-global-lib", "version": "612", "active": True}
    ]
    checks = jenkins_rows(fleet, healthy_jenkins(plugins=Answer(200, {"plugins": renamed})))
    assert exit_code(checks) == 0
    inactive = [
        {**p, "active": False, "enabled": False} if p["shortName"] == "git" else p
        for p in ALL_PLUGINS["plugins"]
    ]
    checks = jenkins_rows(fleet, healthy_jenkins(plugins=Answer(200, {"plugins": inactive})))
    [git] = [c for c in checks if c.status == "blocker"]
    assert "installed but not active (disabled)" in git.detail and git.fix.startswith("enable git")


def test_no_agents_no_ssh_plugin_or_credentials_rows(fleet: Inventory) -> None:
    checks = jenkins_rows(fleet, healthy_jenkins(plugins=without("ssh-slaves")), agents=False)
    assert exit_code(checks) == 0
    assert not rows(checks, "jenkins-credentials")
    assert not [c for c in checks if "ssh-slaves" in c.detail]


def test_credentials_verdicts(fleet: Inventory) -> None:
    missing = one(
        jenkins_rows(fleet, healthy_jenkins(credential=Answer(404))), "jenkins-credentials"
    )
    assert missing.status == "blocker" and "no credentials with ID agents-ssh" in missing.detail
    assert f"'{SSH_KEY_TYPE}' credential with ID agents-ssh (user jenkins" in missing.fix
    wrong = healthy_jenkins(credential=Answer(200, {"typeName": "Username with password"}))
    assert one(jenkins_rows(fleet, wrong), "jenkins-credentials").status == "blocker"


def test_current_jenkins_with_agents_on_java_17_is_a_blocker(fleet: Inventory) -> None:
    assert fleet.jenkins is not None
    settings = replace(fleet.jenkins, java_version=17)
    probe = healthy_jenkins(root=Answer(200, {}, {"x-jenkins": "2.545"}))
    check = one(evaluate_jenkins(settings, probe, has_agents=True), "jenkins-version")
    assert check.status == "blocker" and "jenkins.java_version: 21" in check.fix


def test_plugins_not_readable_is_a_warning(fleet: Inventory) -> None:
    checks = jenkins_rows(fleet, healthy_jenkins(plugins=Answer(403)))
    check = one(checks, "jenkins-plugins")
    assert check.status == "warn" and "Overall/SystemRead" in check.detail
