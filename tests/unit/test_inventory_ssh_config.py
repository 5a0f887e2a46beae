"""The inventory's ssh config settings: `ssh_config_file` (like `ssh -F`) and which SSH
settings the inventory really gave (the others give way to the ssh config)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from toolkit.inventory import SCHEMA, InventoryError, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_ssh_config_file_is_a_path_and_given_keys_are_recorded(tmp_path: Path) -> None:
    inventory = load(
        write(
            tmp_path,
            """
            ssh:
              ssh_config_file: ~/fleet_ssh_config
              user: ci
            hosts:
              - {name: a, address: alias-a, roles: [gitlab-runner]}
              - {name: b, address: alias-b, roles: [gitlab-runner], ssh: {port: 2222}}
            gitlab: {url: 'https://gitlab.example.com', group: g}
            """,
        )
    )
    a, b = inventory.hosts
    assert a.ssh.ssh_config_file == Path(os.path.expanduser("~/fleet_ssh_config"))
    assert a.ssh.given == {"ssh_config_file", "user"}
    assert b.ssh.given == {"ssh_config_file", "user", "port"}
    assert (a.ssh.port, b.ssh.port) == (22, 2222)
    assert "ssh_config_file" in SCHEMA["properties"]["ssh"]["properties"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """
            ssh: {use_ssh_config: false, ssh_config_file: ./ssh_config}
            hosts:
              - {name: a, address: 10.0.0.1, roles: [gitlab-runner]}
            gitlab: {url: 'https://gitlab.example.com', group: g}
            """,
            "fleet.yml:2: ssh.ssh_config_file: ssh_config_file is set but use_ssh_config is "
            "false: the file would not be read",
        ),
        (
            """
            ssh: {ssh_config_file: ./ssh_config}
            hosts:
              - name: a
                address: 10.0.0.1
                roles: [gitlab-runner]
                ssh:
                  use_ssh_config: false
            gitlab: {url: 'https://gitlab.example.com', group: g}
            """,
            "fleet.yml:8: hosts[0].ssh.use_ssh_config: ssh_config_file is set but "
            "use_ssh_config is false: the file would not be read",
        ),
        (
            """
            hosts:
              - {name: a, address: 10.0.0.1, roles: [gitlab-runner], ssh: {ssh_config_file: 3}}
            gitlab: {url: 'https://gitlab.example.com', group: g}
            """,
            "fleet.yml:3: hosts[0].ssh.ssh_config_file: expected a string; got 3",
        ),
    ],
    ids=["top-level-conflict", "per-host-conflict", "not-a-string"],
)
def test_ssh_config_file_mistakes(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(InventoryError) as caught:
        load(write(tmp_path, text))
    assert [p.replace(f"{tmp_path}/", "") for p in caught.value.problems] == [expected]
