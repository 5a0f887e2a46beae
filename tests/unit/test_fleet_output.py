"""What the fleet tasks print: tables on stdout that keep host names and addresses whole at
any width (other columns wrap), live per-step progress lines on stderr, the "not checked"
state of a side a dry run could not ask, and ONE JSON shape for every fleet task. Reports are
built by hand here (no host is contacted); the real runs are tests/integration/."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from toolkit import report
from toolkit.fleet.facts import parse_facts
from toolkit.fleet.parallel import Outcome, for_each_host
from toolkit.fleet.provision import HostReport, Servers
from toolkit.inventory import Host, load
from toolkit.tasks import fleet

LONG_ERROR = (
    "cannot connect to jump host bastion-eu-west-provisioning (ci@203.0.113.250:2222, key "
    "/home/platform-team/.ssh/id_ed25519_provisioning): Connection refused"
)


@pytest.fixture
def hosts(tmp_path: Path) -> tuple[Host, ...]:
    path = tmp_path / "fleet.yml"
    path.write_text(
        "gitlab: {url: 'https://gitlab.invalid', group: platform}\n"
        "jenkins: {url: 'https://jenkins.invalid', credentials_id: agent-ssh}\n"
        "hosts:\n"
        "  - {name: build-arm64-eu-west-1, address: 127.0.0.114, arch: arm64,"
        " roles: [gitlab-runner, jenkins-agent]}\n"
        "  - {name: build-amd64-1, address: 127.0.0.115, arch: amd64, roles: [gitlab-runner]}\n"
    )
    return load(path).hosts


def summary(hosts: tuple[Host, ...]) -> list[Outcome[HostReport]]:
    planned = HostReport(
        "build-amd64-1",
        "amd64",
        "x86_64",
        planned=["install-builder: install buildah with skopeo from the OS packages"],
        not_checked={"gitlab": "no token"},
    )
    return [Outcome(hosts[0], None, LONG_ERROR), Outcome(hosts[1], planned)]


@pytest.mark.parametrize("columns", [None, "60", "100"])
def test_the_table_goes_to_stdout_and_keeps_names_whole(
    hosts: tuple[Host, ...],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    columns: str | None,
) -> None:
    """Into a pipe (no $COLUMNS: as wide as it needs) and at 60 or 100 columns: the host
    column is never cut, nothing ends in "…", and the error text is all there (wrapped)."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    report.fleet_summary("plan (dry run)", summary(hosts))
    captured = capsys.readouterr()
    assert captured.err == ""
    out = captured.out
    assert "…" not in out  # nothing cut: a long word folds onto the next line
    assert any("build-arm64-eu-west-1" in line for line in out.splitlines())
    letters = "".join(out.replace("│", "").split())
    assert len([c for c in letters if c.isalnum()]) >= len(
        [c for c in LONG_ERROR + "notchecked(notoken)" if c.isalnum()]
    )
    if columns is None:  # a pipe: the table as wide as it needs, each row on one line
        assert any(LONG_ERROR in line for line in out.splitlines())
        assert any("not checked (no token)" in line for line in out.splitlines())


def test_progress_is_one_whole_line_per_step_on_stderr(
    hosts: tuple[Host, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    """Many hosts' threads at once: every line is one host's one step, never interleaved."""
    barrier = threading.Barrier(len(hosts))

    def work(host: Host) -> None:
        say = report.step_printer(host.name)
        barrier.wait()
        for n in range(200):
            say(f"install-builder: step {n}")

    for_each_host(hosts, work, workers=len(hosts))
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 400
    names = {h.name for h in hosts}
    for line in lines:
        host, _, rest = line.partition(": ")
        assert host in names and rest.startswith("install-builder: step ") and rest.endswith("…")


def test_an_outcome_does_not_repeat_the_host_name(hosts: tuple[Host, ...]) -> None:
    def fail(host: Host) -> None:
        raise ValueError(f"{host.name}: cannot connect to root@{host.address}:22 (key k): no")

    (outcome, _) = for_each_host(hosts, fail, expected=(ValueError,))
    assert outcome.error == "cannot connect to root@127.0.0.114:22 (key k): no"


def test_every_fleet_task_prints_one_json_shape(
    hosts: tuple[Host, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """fleet-facts and provision-runners (the same _finish as runners-status and
    deprovision-runners): command, ok, hosts[] each with host/ok/error."""
    inventory = tmp_path / "fleet.yml"
    inventory.write_text(
        "gitlab: {url: 'https://gitlab.invalid', group: platform}\n"
        "hosts:\n"
        "  - {name: build-amd64-1, address: 127.0.0.115, arch: amd64, roles: [gitlab-runner]}\n"
        "  - {name: down, address: 127.0.0.116, roles: [gitlab-runner]}\n"
    )
    fleet_hosts = load(inventory).hosts
    facts = parse_facts("machine=x86_64\nos_id=debian\nos_version=12\nfacts=done\n", host="h")
    monkeypatch.setattr(
        fleet,
        "_run_hosts",
        lambda *a, **k: [
            Outcome(fleet_hosts[0], facts),
            Outcome(fleet_hosts[1], None, "cannot connect to root@127.0.0.116:22 (key k): no"),
        ],
    )
    with pytest.raises(Exit):  # one host failed: exit 1
        fleet.fleet_facts.body(Context(), inventory=str(inventory), json=True)
    facts_data = json.loads(capsys.readouterr().out)

    planned = HostReport("build-amd64-1", "amd64", "x86_64", planned=["install-builder: x"])
    monkeypatch.setattr(
        fleet,
        "_run_with_servers",
        lambda *a, **k: (
            [
                Outcome(fleet_hosts[0], planned),
                Outcome(fleet_hosts[1], None, "cannot connect to root@127.0.0.116:22 (key k): no"),
            ],
            Servers(None, None, (("gitlab", "no token"),)),
        ),
    )
    with pytest.raises(Exit):
        fleet.provision_runners.body(Context(), inventory=str(inventory), json=True, dry_run=True)
    plan_data = json.loads(capsys.readouterr().out)

    for data, command in ((facts_data, "fleet-facts"), (plan_data, "provision-runners")):
        assert list(data)[:3] == ["command", "ok", "hosts"]
        assert data["command"] == command and data["ok"] is False
        good, bad = data["hosts"]
        assert (good["host"], good["ok"], good["error"]) == ("build-amd64-1", True, None)
        assert bad == {
            "host": "down",
            "ok": False,
            "error": "cannot connect to root@127.0.0.116:22 (key k): no",
        }
    assert plan_data["servers"] == {
        "gitlab": "not-checked",
        "jenkins": "off",
        "notChecked": {"gitlab": "no token"},
    }


def test_provision_reports_each_step_as_it_starts(
    hosts: tuple[Host, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """provision_host's `progress`: connecting, reading facts, then each change before it is
    applied. The SSH side is replaced (no host here): connect, the facts and the builder
    install are stand-ins that record the order."""
    from toolkit.fleet import provision

    host = replace(hosts[1], roles=("merge-tool",))
    inventory = load_example()
    events: list[str] = []

    class Connection:
        def close(self) -> None:
            events.append("closed")

    facts = parse_facts(
        "machine=x86_64\nos_id=debian\nos_version=13\napt_get=yes\nfacts=done\n", host="h"
    )
    monkeypatch.setattr(provision, "connect", lambda h: Connection())
    monkeypatch.setattr(provision, "read_facts", lambda c, h: facts)
    monkeypatch.setattr(provision, "host_key_of", lambda c: None)
    appliers = {
        kind: (lambda step: events.append(f"applied {step.change.kind}"))
        for kind in ("install-python-venv", "install-merge-tool")
    }
    monkeypatch.setattr(provision, "_APPLIERS", appliers)
    result = provision.provision_host(
        inventory, host, Servers(), progress=lambda m: events.append(m.split(" (")[0])
    )
    assert result.applied and events == [
        "connecting",
        "reading facts",
        "install-python-venv: install python3 python3-venv",
        "applied install-python-venv",
        "install-merge-tool: install archfleet 0.1.0 into /opt/archfleet",
        "applied install-merge-tool",
        "closed",
    ]


def load_example() -> Any:
    return load(Path(__file__).resolve().parents[2] / "examples" / "inventory.yml")
