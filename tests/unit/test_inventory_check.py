"""inventory-check (issue 17 item 6): duplicate keys refused with both lines, key files that do
not exist, problems in file order, did-you-mean for arch aliases and misspelt keys, `--json`,
a description on every schema key; and the jenkins.address rule of item 8."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import archfleet
from toolkit.inventory import SCHEMA, InventoryError, Problem, load

JENKINS = "jenkins: {url: https://j.example.com, credentials_id: c}\n"
WHEEL = "https://x.example.com/archfleet-0.1.0-py3-none-any.whl"
ARCHFLEET = f"archfleet: {{version: '0.1.0', wheel: '{WHEEL}', sha256: '{'0' * 64}'}}\n"


def write(tmp_path: Path, text: str, *sections: str) -> Path:
    """`text` dedented, then `sections` (top-level lines) after it."""
    path = tmp_path / "fleet.yml"
    path.write_text(textwrap.dedent(text) + "".join(sections))
    return path


def problems_of(path: Path, **kwargs: Any) -> list[Problem]:
    with pytest.raises(InventoryError) as caught:
        load(path, **kwargs)
    return caught.value.items


def test_a_duplicate_key_is_refused_naming_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        ssh:
          user: ci
          port: 22
          user: root
        hosts: [{name: a, address: h, roles: [jenkins-agent]}]
        """,
        JENKINS,
    )
    [problem] = problems_of(path)
    assert (problem.line, problem.key) == (5, "ssh.user")
    assert "duplicate key 'user' (also on line 3)" in problem.message
    assert str(problem).startswith(f"{path}:5: ssh.user: duplicate key")


def test_duplicates_inside_a_host_and_a_flow_mapping_are_found_too(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hosts:
          - name: a
            address: h
            roles: [jenkins-agent]
            address: h2
          - {name: b, address: h3, roles: [jenkins-agent], name: c}
        """,
        JENKINS,
    )
    found = [(p.line, p.key) for p in problems_of(path)]
    assert found == [(6, "hosts[0].address"), (7, "hosts[1].name")]


def test_a_yaml_merge_key_is_no_duplicate(tmp_path: Path) -> None:
    """`<<` is YAML's own way of overriding (the explicit key wins): not a mistake."""
    path = write(
        tmp_path,
        """
        x-agent: &agent {roles: [jenkins-agent], arch: amd64}
        hosts:
          - {<<: *agent, name: a, address: h, arch: arm64}
        """,
        JENKINS,
    )
    # x-agent is an unknown top-level key; what matters is that no duplicate is reported.
    assert all("duplicate" not in p.message for p in problems_of(path))


def test_problems_come_out_in_file_order_across_kinds(tmp_path: Path) -> None:
    """Schema problems, duplicates and missing files interleave by line, not by kind."""
    path = write(
        tmp_path,
        f"""
        ssh:
          key: {tmp_path / "no-such-key"}
          user: ci
          user: root
        hosts:
          - name: a
            address: h
            arch: x86_64
            roles: [jenkins-agent]
          - name: b
            adress: h2
            roles: [jenkins-agent]
        """,
        JENKINS,
    )
    problems = problems_of(path, strict_files=True)
    lines = [p.line for p in problems]
    assert lines == sorted(lines) and len(problems) == 5, [str(p) for p in problems]
    assert [p.key for p in problems] == [
        "ssh.key",
        "ssh.user",
        "hosts[0].arch",
        "hosts[1]",  # its missing 'address'
        "hosts[1]",  # its unknown 'adress'
    ]


def test_a_missing_key_file_is_an_error_for_the_check_and_a_warning_for_tasks(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "keys" / "id_ed25519"
    path = write(
        tmp_path,
        f"""
        hosts:
          - name: a
            address: h
            roles: [jenkins-agent]
            ssh: {{key: {missing}}}
        """,
        JENKINS,
    )
    [problem] = problems_of(path, strict_files=True)
    assert (problem.line, problem.key, problem.severity) == (6, "hosts[0].ssh.key", "error")
    assert f"{missing} does not exist" in problem.message
    # Other tasks load it (a run --limit'ed to other hosts needs no key) and carry the warning.
    inventory = load(path)
    [warning] = inventory.warnings
    assert warning.severity == "warning" and warning.key == "hosts[0].ssh.key"
    missing.parent.mkdir()
    missing.write_text("")
    assert load(path, strict_files=True).warnings == ()


def test_a_missing_known_hosts_is_only_a_warning(tmp_path: Path) -> None:
    """--accept-new-host-keys creates it: not an error even for the check."""
    path = write(
        tmp_path,
        f"""
        ssh: {{known_hosts: {tmp_path / "known_hosts"}}}
        hosts: [{{name: a, address: h, roles: [jenkins-agent]}}]
        """,
        JENKINS,
    )
    [warning] = load(path, strict_files=True).warnings
    assert (warning.key, warning.severity) == ("ssh.known_hosts", "warning")


@pytest.mark.parametrize(
    ("arch", "suggestion"),
    [("x86_64", "amd64"), ("aarch64", "arm64"), ("armv7l", "arm-v7"), ("i686", "386")],
)
def test_a_uname_arch_gets_its_platform_name_suggested(
    tmp_path: Path, arch: str, suggestion: str
) -> None:
    path = write(
        tmp_path,
        f"""
        hosts: [{{name: a, address: h, arch: {arch}, roles: [jenkins-agent]}}]
        """,
        JENKINS,
    )
    [problem] = problems_of(path)
    assert problem.key == "hosts[0].arch"
    assert f"did you mean {suggestion}? ({arch} is the kernel's name" in problem.message


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ("gitlab: {url: https://g.example.com, group: g, exector: shell}", "gitlab", "'executor'"),
        ("ssh: {jumphost: b}", "ssh", "'jump_host'"),
        (
            "jenkins: {url: https://j.example.com, credentials_id: c, label: [x]}",
            "jenkins",
            "'labels'",
        ),
    ],
)
def test_a_misspelt_key_gets_the_likely_one(tmp_path: Path, text: str, key: str, hint: str) -> None:
    body = f"{text}\nhosts: [{{name: a, address: h, roles: [merge-tool]}}]\n"
    path = write(tmp_path, body)
    found = [p for p in problems_of(path) if p.key == key]
    assert found and f"did you mean {hint}?" in found[0].message, [str(p) for p in found]


def test_a_key_like_nothing_known_gets_no_guess(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts: [{name: a, address: h, roles: [merge-tool], zzqx: 1}]\n")
    assert all("did you mean" not in p.message for p in problems_of(path))


def test_a_misspelt_role_gets_the_likely_one(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts: [{name: a, address: h, roles: [jenkins_agent]}]\n" + JENKINS)
    [problem] = problems_of(path)
    assert problem.message.endswith("did you mean jenkins-agent?")


def test_every_schema_key_has_a_description() -> None:
    described: dict[str, bool] = {}

    def walk(schema: dict[str, Any], where: str) -> None:
        for key, sub in schema.get("properties", {}).items():
            described[f"{where}{key}"] = bool(str(sub.get("description", "")).strip())
            walk(sub, f"{where}{key}.")
        if isinstance(schema.get("items"), dict):
            walk(schema["items"], f"{where}[].")

    walk(SCHEMA, "")
    # The ones the issue names are among those walked, and no key lacks a description.
    named = {"gitlab.executor", "gitlab.runner_type", "hosts.[].roles", "hosts.[].tags"}
    assert named | {"jenkins.labels", "hosts.[].jenkins.address"} <= set(described)
    assert [key for key, ok in described.items() if not ok] == []


# ---------------------------------------------------------------- jenkins.address (item 8)


def test_a_jump_host_agent_without_a_jenkins_address_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hosts:
          - name: arm
            address: 10.1.0.5
            roles: [jenkins-agent]
            ssh: {jump_host: ci@bastion.example.com}
        """,
        JENKINS,
    )
    [problem] = problems_of(path)
    assert (problem.line, problem.key) == (6, "hosts[0].ssh.jump_host")
    assert "controller connects to its agents directly and cannot use the jump host" in (
        problem.message
    )
    assert "set hosts[0].jenkins.address" in problem.message


def test_a_top_level_jump_host_counts_too_and_an_address_settles_it(tmp_path: Path) -> None:
    text = """
        ssh: {jump_host: bastion.example.com}
        hosts:
          - {name: arm, address: 10.1.0.5, roles: [jenkins-agent]%s}
        """
    path = write(tmp_path, text % "", JENKINS)
    [problem] = problems_of(path)
    assert problem.key == "hosts[0]" and "(the top-level ssh.jump_host)" in problem.message
    path = write(
        tmp_path, text % ", jenkins: {address: arm.agents.example.com, port: 2200}", JENKINS
    )
    host = load(path).hosts[0]
    assert (host.jenkins_address, host.jenkins_port, host.address) == (
        "arm.agents.example.com",
        2200,
        "10.1.0.5",
    )


def test_a_jenkins_address_is_checked_and_needs_the_agent_role(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hosts:
          - {name: a, address: h, roles: [merge-tool], jenkins: {address: ok.example.com}}
          - {name: b, address: h2, roles: [jenkins-agent], jenkins: {address: "1.2.3.999"}}
        """,
        ARCHFLEET,
        JENKINS,
    )
    found = {p.key: p.message for p in problems_of(path)}
    assert "no jenkins-agent role" in found["hosts[0].jenkins"]
    assert "not an IPv4 address" in found["hosts[1].jenkins.address"]


# ---------------------------------------------------------------- the task, as a process


def test_the_task_prints_json_problems_in_file_order_and_exits_1(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hosts:
          - name: a
            name: b
            address: h
            arch: aarch64
            roles: [jenkins-agent]
        """,
        JENKINS,
    )
    run = archfleet("inventory-check", "--inventory", str(path), "--json")
    assert run.code == 1, run.stderr
    data = run.json()
    assert [(p["line"], p["key"], p["severity"]) for p in data] == [
        (4, "hosts[0].name", "error"),
        (6, "hosts[0].arch", "error"),
    ]
    assert all(set(p) == {"file", "line", "key", "message", "severity"} for p in data)
    assert data[0]["file"] == str(path) and "also on line 3" in data[0]["message"]


def test_the_task_passes_a_sound_file_with_an_empty_json_list(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts: [{name: a, address: h, roles: [jenkins-agent]}]\n" + JENKINS)
    run = archfleet("inventory-check", "--inventory", str(path), "-j")
    assert (run.code, run.json()) == (0, []), run.stderr
    human = archfleet("inventory-check", "--inventory", str(path))
    assert human.code == 0 and "error" not in human.stdout + human.stderr
