"""--accept-new-host-keys' file side: how a new host key is appended to known_hosts, on real
files and paramiko's own key and known_hosts types (no SSH server; the end-to-end side, on a
real sshd, is tests/integration/test_host_keys.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paramiko
import pytest

from toolkit.fleet.connect import AcceptNewHostKeys, ConnectError, record_host_key
from toolkit.inventory import NewHostKey
from toolkit.lab.sshkeys import fingerprint

SERVER = "[10.0.0.5]:2222"


def ecdsa_key() -> paramiko.ECDSAKey:
    return paramiko.ECDSAKey.generate()


def line_of(server: str, key: paramiko.PKey) -> str:
    return f"{server} {key.get_name()} {key.get_base64()}\n"


def test_a_new_key_creates_the_file_with_one_openssh_line(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    key = ecdsa_key()
    assert record_host_key(known_hosts, SERVER, key, label="h")
    assert known_hosts.read_text() == line_of(SERVER, key)
    # paramiko (and so the next connection) reads it back as that host's key.
    assert paramiko.HostKeys(str(known_hosts)).lookup(SERVER) == {key.get_name(): key}


def test_the_same_key_again_is_not_added_twice(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    key = ecdsa_key()
    known_hosts.write_text("# fleet\n" + line_of(SERVER, key))
    before = known_hosts.read_bytes()
    assert not record_host_key(known_hosts, SERVER, key, label="h")
    assert known_hosts.read_bytes() == before


def test_a_hashed_entry_counts_as_known(tmp_path: Path) -> None:
    """`ssh-keygen -H` hides the names; the entry is still that host's."""
    known_hosts = tmp_path / "known_hosts"
    key = ecdsa_key()
    known_hosts.write_text(line_of(paramiko.HostKeys.hash_host(SERVER), key))
    before = known_hosts.read_bytes()
    assert not record_host_key(known_hosts, SERVER, key, label="h")
    assert known_hosts.read_bytes() == before


@pytest.mark.parametrize("recorded_type", ["same type", "other type"])
def test_another_key_for_the_host_is_refused_and_never_overwritten(
    tmp_path: Path, recorded_type: str
) -> None:
    known_hosts = tmp_path / "known_hosts"
    recorded: paramiko.PKey = (
        ecdsa_key() if recorded_type == "same type" else paramiko.RSAKey.generate(1024)
    )
    known_hosts.write_text(line_of(SERVER, recorded))
    before = known_hosts.read_bytes()
    with pytest.raises(paramiko.BadHostKeyException):
        record_host_key(known_hosts, SERVER, ecdsa_key(), label="h")
    assert known_hosts.read_bytes() == before


def test_other_hosts_and_ports_are_other_entries(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    first, second = ecdsa_key(), ecdsa_key()
    known_hosts.write_text(line_of("[10.0.0.5]:22", first))
    assert record_host_key(known_hosts, SERVER, second, label="h")
    assert known_hosts.read_text() == line_of("[10.0.0.5]:22", first) + line_of(SERVER, second)


def test_a_last_line_without_newline_keeps_its_own_line(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    other, key = ecdsa_key(), ecdsa_key()
    known_hosts.write_text(line_of("10.0.0.9", other).rstrip("\n"))
    assert record_host_key(known_hosts, SERVER, key, label="h")
    assert known_hosts.read_text() == line_of("10.0.0.9", other) + line_of(SERVER, key)


def test_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match=r"^h: cannot record the host key of \[10\.0\.0\.5\]"):
        record_host_key(tmp_path / "missing-dir" / "known_hosts", SERVER, ecdsa_key(), label="h")


def test_parallel_records_neither_interleave_nor_repeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """24 threads at once: 8 servers, each recorded by 3 threads (three inventory names for one
    machine). Reading known_hosts is slowed down, so that without the lock every thread of a
    server would find no entry and append its own: the file must still end with one whole
    line per server."""
    real_host_keys = paramiko.HostKeys

    def slow_host_keys(*args: Any) -> paramiko.HostKeys:
        keys = real_host_keys(*args)
        time.sleep(0.05)  # widens the read-then-append window; asserts nothing about time
        return keys

    monkeypatch.setattr(paramiko, "HostKeys", slow_host_keys)
    known_hosts = tmp_path / "known_hosts"
    keys = {f"[127.0.0.{n}]:2222": ecdsa_key() for n in range(8)}
    jobs = [(server, key) for server, key in keys.items() for _ in range(3)]
    start = threading.Barrier(len(jobs))
    appended: list[bool] = []
    errors: list[BaseException] = []

    def record(server: str, key: paramiko.PKey) -> None:
        start.wait()
        try:
            appended.append(record_host_key(known_hosts, server, key, label=server))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=record, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(appended) == [False] * 16 + [True] * 8
    lines = known_hosts.read_text().splitlines(keepends=True)
    assert sorted(lines) == sorted(line_of(server, key) for server, key in keys.items())


def test_the_policy_records_and_reports_each_new_key_once(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    key = ecdsa_key()
    seen: list[NewHostKey] = []
    policy = AcceptNewHostKeys(known_hosts, label="build-1", on_recorded=seen.append)
    client = paramiko.SSHClient()
    policy.missing_host_key(client, SERVER, key)
    # Another client of the same run, or a retried connection, meeting the same key.
    policy.missing_host_key(client, SERVER, key)
    assert seen == [
        NewHostKey(
            host="build-1",
            server=SERVER,
            key_type=key.get_name(),
            # What `ssh-keygen -l` shows for that public key.
            fingerprint=fingerprint(f"{key.get_name()} {key.get_base64()}"),
            known_hosts=known_hosts,
        )
    ]
    assert known_hosts.read_text() == line_of(SERVER, key)
