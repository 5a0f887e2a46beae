"""Facts over REAL SSH (lab sshd hosts on loopback): the arm64 host's binaries are arm64,
run under qemu-user, so its detection is tested on real arm64 code, not a faked uname."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Lab, write_inventory
from tests.support.cli import archfleet
from toolkit.fleet.connect import ConnectError
from toolkit.fleet.gather import gather_facts
from toolkit.fleet.parallel import for_each_host
from toolkit.inventory import Host, SshSettings

pytestmark = pytest.mark.integration


def inventory_host(
    lab: Lab, arch: str, *, known_hosts: Path | None = None, **extra: object
) -> Host:
    host = lab.hosts[arch]
    ssh = SshSettings(
        user="root",
        port=host.port,
        key=lab.key,
        known_hosts=known_hosts or lab.known_hosts,
        connect_timeout=10,
        use_ssh_config=False,
    )
    return Host(name=host.name, address=host.address, roles=("gitlab-runner",), ssh=ssh, **extra)  # type: ignore[arg-type]


def test_each_host_reports_the_arch_it_really_is(lab: Lab) -> None:
    hosts = [inventory_host(lab, "amd64"), inventory_host(lab, "arm64")]
    outcomes = for_each_host(hosts, gather_facts, workers=2)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    facts = {o.host.name: o.value for o in outcomes}
    amd, arm = facts[hosts[0].name], facts[hosts[1].name]
    assert amd is not None and arm is not None
    assert (amd.machine, amd.arch) == ("x86_64", "amd64")
    assert (arm.machine, arm.arch) == ("aarch64", "arm64")
    assert arm.os_id == "debian" and arm.os_version == "12"
    assert arm.user == "root" and arm.disk_free_kb > 0
    # Nothing installed yet in a fresh lab root.
    assert arm.gitlab_runner is None and arm.java is None and arm.buildah is None


def test_unknown_host_key_is_refused_and_others_go_on(lab: Lab, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    hosts = [inventory_host(lab, "amd64", known_hosts=empty), inventory_host(lab, "arm64")]
    outcomes = for_each_host(hosts, gather_facts, expected=(ConnectError,))
    assert outcomes[0].error is not None and "unknown host key" in outcomes[0].error
    assert outcomes[1].ok and outcomes[1].value is not None


def test_host_down_is_one_clear_error(lab: Lab) -> None:
    down = Host(
        name="down",
        address="127.0.0.99",
        roles=("gitlab-runner",),
        ssh=SshSettings(
            port=1,
            key=lab.key,
            known_hosts=lab.known_hosts,
            connect_timeout=3,
            use_ssh_config=False,
        ),
    )
    outcomes = for_each_host(
        [down, inventory_host(lab, "amd64")], gather_facts, expected=(ConnectError,)
    )
    assert outcomes[0].error is not None and outcomes[0].error.startswith("cannot connect to ")
    assert outcomes[1].ok


def test_fleet_facts_task_on_the_lab_inventory(lab: Lab, tmp_path: Path) -> None:
    inventory = write_inventory(lab, tmp_path / "lab.yml")
    run = archfleet("fleet-facts", "--inventory", str(inventory), "--json")
    assert run.code == 0, run.stderr
    assert {f["host"]: f["arch"] for f in run.json()["hosts"]} == {
        lab.hosts["amd64"].name: "amd64",
        lab.hosts["arm64"].name: "arm64",
    }
    limited = archfleet("fleet-facts", "--inventory", str(inventory), "--limit", "nope")
    assert limited.code == 1 and "--limit nope matches no host (hosts: " in limited.stderr
