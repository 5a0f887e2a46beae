"""The CLI's flags cannot surprise (issue 17 item 3): one short flag means one long flag in
every task, and only the conventions in toolkit/tasks/flags.py have one; deprovision-runners
asks before it deletes; runners-status tells the truth per arch and per host (item 5).

No server is involved: the task bodies run in-process with `_run_with_servers` replaced by
canned host reports, and the server side by `OnlineBy`, a stand-in for the two lookups the
task calls (toolkit/fleet/gitlab_runner.py GitLabRunners.online_by_tag,
toolkit/fleet/jenkins_agent.py JenkinsNodes.online_by_label) with the same return shapes.
"""

from __future__ import annotations

import copy
import io
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task

from toolkit.cli import program
from toolkit.fleet.parallel import Outcome
from toolkit.fleet.provision import HostReport, Servers
from toolkit.inventory import load
from toolkit.report import agent_state, runner_state
from toolkit.tasks import fleet, namespace
from toolkit.tasks.flags import SHORT_FLAGS

REPO = Path(__file__).resolve().parents[2]


def every_task(collection: Collection, prefix: str = "") -> list[tuple[str, Task[Any]]]:
    found = [(prefix + name, task) for name, task in collection.tasks.items()]
    for name, sub in collection.collections.items():
        found += every_task(sub, f"{prefix}{name}.")
    return found


def flags_of(task: Task[Any]) -> list[tuple[str, ...]]:
    """Each argument's names, long first. On a copy: Invoke pops `help` while it builds them."""
    probe = copy.copy(task)
    probe.help = dict(task.help)
    return [tuple(arg.names) for arg in probe.get_arguments()]


def test_a_short_flag_means_one_long_flag_across_every_task() -> None:
    tasks = every_task(namespace)
    assert len(tasks) >= 15  # the walk reached the sub-collection (lab.*) too
    meaning: dict[str, set[str]] = {}
    for name, task in tasks:
        for names in flags_of(task):
            long, shorts = names[0], names[1:]
            assert len(long) > 1 and long[0].isalpha(), f"{name}: odd flag name {names}"
            for short in shorts:
                meaning.setdefault(short, set()).add(long)
    clashes = {short: longs for short, longs in meaning.items() if len(longs) > 1}
    assert not clashes, f"one short flag, several long flags: {clashes}"
    # Only the conventions have a short flag, each the one the table gives.
    assert {short: longs.pop() for short, longs in meaning.items()} == {
        short: long for long, short in SHORT_FLAGS.items() if short in meaning
    }
    assert set(meaning) == {"n", "j", "y"}


def test_no_task_short_flag_is_also_a_core_flag() -> None:
    """`archfleet -d TASK` is Invoke's --debug: a task's -d would mean another thing."""
    core = {name for arg in program.core_args() for name in arg.names if len(name) == 1}
    assert {"d", "h", "l", "R"} <= core
    assert not set(SHORT_FLAGS.values()) & core


def test_destructive_and_dry_run_flags_are_where_they_belong() -> None:
    shorts = {
        name: dict((n[0], n[1:]) for n in flags_of(task)) for name, task in every_task(namespace)
    }
    assert shorts["deprovision-runners"]["dry-run"] == ("n",)
    assert shorts["deprovision-runners"]["yes"] == ("y",)
    assert shorts["deprovision-runners"]["no-gitlab"] == ()  # was -n
    assert shorts["publish-jenkins-library"]["jenkins"] == ()  # was -j
    assert shorts["publish-jenkins-library"]["json"] == ("j",)  # was -n
    assert shorts["merge-manifest"]["dry-run"] == ("n",)  # was -d
    assert shorts["lab.up"]["dir"] == ()  # was -d


def test_publish_jenkins_library_help_has_no_broken_flag() -> None:
    """Its --job-script-path had only taken letters, so Invoke gave it the short flag `-`."""
    done = subprocess.run(
        [sys.executable, "-m", "toolkit", "publish-jenkins-library", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--job-script-path=STRING" in done.stdout
    assert "--=" not in done.stdout and "  --, " not in done.stdout


# --- deprovision-runners asks first ---------------------------------------------------------


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yml"
    path.write_text(
        "gitlab: {url: 'https://gitlab.invalid', group: platform}\n"
        "jenkins: {url: 'https://jenkins.invalid', credentials_id: agent-ssh}\n"
        "hosts:\n"
        "  - {name: build-a, address: 127.0.0.1, arch: amd64, roles: [gitlab-runner]}\n"
        "  - {name: build-b, address: 127.0.0.1, arch: arm64, roles: [jenkins-agent]}\n"
    )
    return path


class Terminal(io.StringIO):
    """stdin as a person at a terminal: isatty() is true, and they type `answer`."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether deprovision-runners got as far as the hosts (no host is really contacted)."""
    calls: list[bool] = []

    def run_with_servers(*args: Any, **kwargs: Any) -> tuple[list[Any], Servers]:
        calls.append(True)
        return [], Servers(None, None)

    monkeypatch.setattr(fleet, "_run_with_servers", run_with_servers)
    return calls


def deprovision(inventory: Path, **flags: bool) -> None:
    fleet.deprovision_runners.body(Context(), inventory=str(inventory), json=True, **flags)


def test_deprovision_without_a_terminal_needs_yes(
    inventory: Path, ran: list[bool], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # not a terminal: "y" is not read
    with pytest.raises(Exit) as stopped:
        deprovision(inventory)
    assert stopped.value.code == 1 and ran == []
    err = capsys.readouterr().err
    assert "pass --yes to go ahead, or --dry-run" in err
    assert "GitLab runners and Jenkins nodes of build-a, build-b" in err

    deprovision(inventory, yes=True)
    assert ran == [True]
    deprovision(inventory, dry_run=True)
    assert ran == [True, True]


@pytest.mark.parametrize(
    ("answer", "goes_ahead"),
    [("y\n", True), ("yes\n", True), ("\n", False), ("n\n", False), ("", False)],
)
def test_deprovision_on_a_terminal_asks(
    inventory: Path,
    ran: list[bool],
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    answer: str,
    goes_ahead: bool,
) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    if goes_ahead:
        deprovision(inventory)
    else:
        with pytest.raises(Exit) as stopped:
            deprovision(inventory)
        assert stopped.value.code == 1
    assert ran == ([True] if goes_ahead else [])
    err = capsys.readouterr().err
    assert "of build-a, build-b? [y/N]" in err
    assert ("nothing removed" in err) is not goes_ahead


def test_deprovision_as_a_process_with_stdin_from_nowhere_and_from_a_real_terminal(
    inventory: Path,
) -> None:
    """The whole program: stdin /dev/null refuses without --yes; a pty (a real terminal) gets
    the question, and "n" stops it before any host is contacted (none is named)."""
    command = [
        sys.executable,
        "-m",
        "toolkit",
        "deprovision-runners",
        "--inventory",
        str(inventory),
    ]
    refused = subprocess.run(
        command, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert "stdin is not a terminal" in refused.stderr and "--yes" in refused.stderr
    assert "build-a:" not in refused.stderr  # no host was worked on

    leader, follower = pty.openpty()
    try:
        os.write(leader, b"n\n")
        asked = subprocess.run(
            command, cwd=REPO, stdin=follower, capture_output=True, text=True, timeout=60
        )
    finally:
        os.close(leader)
        os.close(follower)
    assert asked.returncode == 1
    assert "[y/N]" in asked.stderr and "note: nothing removed" in asked.stderr
    assert "build-a:" not in asked.stderr


# --- runners-status: honest per arch and per host ------------------------------------------


def outcome(host: Any, report: HostReport | None, error: str | None = None) -> Outcome[HostReport]:
    return Outcome(host, report, error)


def test_arch_readiness_no_runner_at_all_is_not_the_side_being_off(inventory: Path) -> None:
    hosts = load(inventory).hosts
    arches = {"build-a": "amd64", "build-b": "arm64"}
    # GitLab asked for every arch tag and has no runner: False, not missing (online_by_tag
    # returns every asked tag, False when no runner carries it).
    assert fleet.arch_readiness(hosts, arches, {"amd64": False, "arm64": False}, {}) == {
        "amd64": {"gitlab": False, "jenkins": None},  # no jenkins-agent host of amd64
        "arm64": {"gitlab": None, "jenkins": False},  # Jenkins has no node with the label
    }
    # A side that is off is None everywhere: nothing was asked.
    assert fleet.arch_readiness(hosts, arches, None, None) == {
        "amd64": {"gitlab": None, "jenkins": None},
        "arm64": {"gitlab": None, "jenkins": None},
    }
    assert fleet.arch_readiness(hosts, arches, {"amd64": True}, {"arm64": True}) == {
        "amd64": {"gitlab": True, "jenkins": None},
        "arm64": {"gitlab": None, "jenkins": True},
    }


class OnlineBy:
    """Stand-in for GitLabRunners.online_by_tag / JenkinsNodes.online_by_label (see module
    docstring): the asked tags, then every tag an existing runner/node carries."""

    def __init__(self, online: dict[str, bool]) -> None:
        self.online = online
        self.asked: list[list[str]] = []

    def online_by_tag(self, tags: list[str] = []) -> dict[str, bool]:  # noqa: B006
        self.asked.append(list(tags))
        return {**dict.fromkeys(tags, False), **self.online}

    def online_by_label(self) -> dict[str, bool]:
        return dict(self.online)


def status(
    inventory: Path,
    monkeypatch: pytest.MonkeyPatch,
    outcomes: list[Outcome[HostReport]],
    servers: Servers,
) -> int:
    monkeypatch.setattr(fleet, "_run_with_servers", lambda *a, **k: (outcomes, servers))
    try:
        fleet.runners_status.body(Context(), inventory=str(inventory), json=True)
    except Exit as exit:
        return int(exit.code)
    return 0


def test_runners_status_exits_1_when_an_arch_has_no_online_runner(
    inventory: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import json

    hosts = load(inventory).hosts
    missing = HostReport(
        "build-a",
        "amd64",
        "x86_64",
        planned=["create-runner: create group_type runner"],
        runner_online=False,
        runner_service="absent",
    )
    agent = HostReport("build-b", "arm64", "aarch64", agent_online=True)
    gitlab = OnlineBy({})  # GitLab has no runner at all
    code = status(
        inventory,
        monkeypatch,
        [outcome(hosts[0], missing), outcome(hosts[1], agent)],
        Servers(gitlab, OnlineBy({"arm64": True})),  # type: ignore[arg-type]
    )
    assert code == 1
    data = json.loads(capsys.readouterr().out)
    assert data["arches"] == {
        "amd64": {"gitlab": False, "jenkins": None},
        "arm64": {"gitlab": None, "jenkins": True},
    }
    assert gitlab.asked == [["amd64", "arm64"]]
    assert [(h["host"], h["runner"], h["agent"]) for h in data["hosts"]] == [
        ("build-a", "not-registered", None),
        ("build-b", None, "online"),
    ]
    assert data["ok"] is True  # every host answered; the arch is what is missing

    # The same with the runner there and online: exit 0.
    online = HostReport("build-a", "amd64", "x86_64", runner_online=True, runner_service="running")
    code = status(
        inventory,
        monkeypatch,
        [outcome(hosts[0], online), outcome(hosts[1], agent)],
        Servers(OnlineBy({"amd64": True}), OnlineBy({"arm64": True})),  # type: ignore[arg-type]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["hosts"][0]["runner"] == "online"


def test_runners_status_an_unreachable_host_still_counts_its_declared_arch(
    inventory: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import json

    hosts = load(inventory).hosts
    agent = HostReport("build-b", "arm64", "aarch64", agent_online=True)
    code = status(
        inventory,
        monkeypatch,
        [outcome(hosts[0], None, "build-a: cannot connect"), outcome(hosts[1], agent)],
        Servers(OnlineBy({}), OnlineBy({"arm64": True})),  # type: ignore[arg-type]
    )
    assert code == 1
    assert json.loads(capsys.readouterr().out)["arches"]["amd64"] == {
        "gitlab": False,
        "jenkins": None,
    }


def test_runners_status_with_the_sides_off_is_not_a_failure(
    inventory: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import json

    hosts = load(inventory).hosts
    reports = [HostReport("build-a", "amd64", "x86_64"), HostReport("build-b", "arm64", "aarch64")]
    code = status(
        inventory,
        monkeypatch,
        [outcome(h, r) for h, r in zip(hosts, reports, strict=True)],
        Servers(None, None),
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [(h["runner"], h["agent"]) for h in data["hosts"]] == [("off", None), (None, "off")]


def test_host_states_offline_not_registered_off(inventory: Path) -> None:
    host_a, host_b = load(inventory).hosts
    offline = HostReport("build-a", "amd64", runner_online=False, runner_service="running")
    assert runner_state(outcome(host_a, offline)) == "offline"
    unregistered = HostReport("build-a", "amd64", planned=["create-runner: x"], runner_online=False)
    assert runner_state(outcome(host_a, unregistered)) == "not registered"
    assert runner_state(outcome(host_a, HostReport("build-a"))) == "off"
    assert runner_state(outcome(host_b, HostReport("build-b"))) is None  # no such role
    no_node = HostReport(
        "build-b", planned=["create-node: create node build-b"], agent_online=False
    )
    assert agent_state(outcome(host_b, no_node)) == "not registered"
    assert agent_state(outcome(host_b, HostReport("build-b", agent_online=False))) == "offline"


def test_the_table_shows_the_gitlab_column_with_no_runner_and_says_off_apart(
    inventory: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    hosts = load(inventory).hosts
    missing = HostReport(
        "build-a", "amd64", "x86_64", planned=["create-runner: x"], runner_online=False
    )
    monkeypatch.setenv("COLUMNS", "200")
    from toolkit import report

    report._console.cache_clear()
    try:
        report.fleet_summary(
            "status",
            [
                outcome(hosts[0], missing),
                outcome(hosts[1], HostReport("build-b", "arm64", "aarch64")),
            ],
            {
                "amd64": {"gitlab": False, "jenkins": None},
                "arm64": {"gitlab": None, "jenkins": None},
            },
        )
    finally:
        report._console.cache_clear()
    err = capsys.readouterr().out  # the table is on stdout, where `| less` sees it
    assert "gitlab runner" in err and "not registered" in err
    assert "amd64: gitlab: NO online runner, jenkins: not checked" in err
    assert "arm64: gitlab: not checked, jenkins: not checked" in err
    build_b = next(line for line in err.splitlines() if "build-b" in line)
    assert " off " in build_b  # Jenkins side off for build-b, not "offline"
