"""ConnectError carries the hop it failed at (toolkit/fleet/connect.py FailedHop), and the
doctor reads it from there: one connection attempt per host, no second one to the jump host
to find out which hop it was. Real TCP on loopback addresses where nothing listens
(127.0.0.25 and .26: "Connection refused" at once); no sshd is needed for these two hops.
A target that fails behind a WORKING jump host is in tests/integration/test_doctor.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import free_port
from toolkit.doctor import probe
from toolkit.doctor.host import Hop, SshFailure
from toolkit.fleet.connect import ConnectError, FailedHop, connect
from toolkit.inventory import Host, SshSettings, load
from toolkit.lab.sshkeys import generate_ed25519

TARGET, JUMP = "127.0.0.25", "127.0.0.26"  # ours alone; nothing listens on these ports


def host_of(tmp_path: Path, host_ssh: str) -> Host:
    key = tmp_path / "id_ed25519"
    generate_ed25519(key, comment="hops")
    inventory = tmp_path / "fleet.yml"
    inventory.write_text(f"""
ssh: {{key: {key}, user: builder, use_ssh_config: false, connect_timeout: 5}}
gitlab: {{url: 'http://127.0.0.1:9', allow_http: true, group: lab}}
hosts:
  - {{name: build-1, address: '{TARGET}', roles: [gitlab-runner], ssh: {{{host_ssh}}}}}
""")
    (host,) = load(inventory).hosts
    return host


def counted_connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def counting(host: Host, **kwargs: object) -> object:
        calls.append(host.name)
        return connect(host, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(probe, "connect", counting)
    return calls


def test_a_direct_target_that_refuses_is_the_failed_hop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port(TARGET)
    host = host_of(tmp_path, f"port: {port}")
    with pytest.raises(ConnectError) as caught:
        connect(host)
    assert caught.value.hop == FailedHop("target", TARGET, port, "builder")
    calls = counted_connects(monkeypatch)
    found = probe.probe_host(host)
    assert calls == ["build-1"]
    assert found.ssh == SshFailure(
        Hop("target", TARGET, port, "builder"),
        f"cannot connect to builder@{TARGET}:{port} (key {host.ssh.key}): Connection refused",
        host.ssh.key,
    )


def test_a_jump_host_that_refuses_is_named_from_the_error_without_a_second_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jump_port = free_port(JUMP)
    host = host_of(tmp_path, f"port: 22, jump_host: 'root@{JUMP}:{jump_port}'")
    with pytest.raises(ConnectError) as caught:
        connect(host)
    assert caught.value.hop == FailedHop("jump host", JUMP, jump_port, "root")
    calls = counted_connects(monkeypatch)
    found = probe.probe_host(host)
    assert calls == ["build-1"]  # the doctor asked once; the jump host was not dialled again
    assert found.ssh is not None
    assert found.ssh.failed == Hop("jump host", JUMP, jump_port, "root")
    assert found.ssh.via is None
    assert found.ssh.error == (
        f"cannot connect to jump host root@{JUMP}:{jump_port} (key {host.ssh.key}): "
        "Connection refused"
    )


def test_an_error_before_any_hop_names_the_target() -> None:
    host = Host(name="build-1", address=TARGET, roles=("gitlab-runner",), ssh=SshSettings())
    failure = probe.locate_failure(
        host, ConnectError("build-1: known_hosts file /x does not exist")
    )
    assert failure.failed == Hop("target", TARGET, 22, "root")
    assert failure.error == "known_hosts file /x does not exist"


def test_a_target_behind_a_jump_host_carries_the_jump_host_as_via() -> None:
    """The value as connect() builds it for a target dialled through a jump host."""
    jump = FailedHop("jump host", JUMP, 2222, "root")
    failure = probe.locate_failure(
        Host(name="b", address=TARGET, roles=("gitlab-runner",), ssh=SshSettings()),
        ConnectError(
            "b: jump host root@x cannot reach builder@y",
            FailedHop("target", TARGET, 22, "builder", jump),
        ),
    )
    assert failure.failed == Hop("target", TARGET, 22, "builder")
    assert failure.via == Hop("jump host", JUMP, 2222, "root")
