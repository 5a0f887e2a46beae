"""Lab SSH hosts, for real: debootstrapped amd64 and arm64 roots, each with its own sshd on a
127.0.0.x address; the arm64 one runs arm64 binaries under qemu-user (no faked `uname`).

On an empty cache the first fixture set-up builds both roots (measured here, 2 cores: amd64
47 s, arm64 3 min 15 s); later runs extract the cached tarballs and start in 1-5 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import fabric
import paramiko
import pytest

from tests.conftest import Lab, free_port
from toolkit.lab.hosts import (
    HostStartError,
    LabHost,
    load_hosts,
    start_host,
    write_known_hosts,
)
from toolkit.lab.rootfs import apt_source_entries, build_rootfs, debian_mirror, mounts_under
from toolkit.lab.sshkeys import fingerprint

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts need root (chroot, mount)"),
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in ("debootstrap", "qemu-aarch64-static", "ssh")),
        reason="needs debootstrap, qemu-user-static and openssh-client (see GUIDE section 3)",
    ),
]

UNAME = {"amd64": "x86_64", "arm64": "aarch64"}
# ELF e_machine of the root's own sshd: what its binaries really are.
ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7}
# What `lab.down` does in a process of its own, knowing only the state file.
STOP_FROM_STATE_FILE = (
    "import pathlib, sys; from toolkit.lab.hosts import LabHost; "
    "LabHost.load(pathlib.Path(sys.argv[1])).stop()"
)


def connect(host: LabHost, key: Path, known_hosts: Path) -> fabric.Connection:
    """A Fabric connection that checks host keys strictly (Fabric's default accepts any)."""
    connection = fabric.Connection(
        host.address,
        user="root",
        port=host.port,
        connect_timeout=30,
        connect_kwargs={"key_filename": str(key), "look_for_keys": False, "allow_agent": False},
    )
    connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    connection.client.load_host_keys(str(known_hosts))
    # pytest owns our stdin; remote commands here read none.
    connection.config.run.in_stream = False
    return connection


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_fabric_sees_the_hosts_real_arch(lab: Lab, arch: str) -> None:
    host = lab.hosts[arch]
    with connect(host, lab.key, lab.known_hosts) as connection:
        result = connection.run("uname -m; hostname", hide=True)
    assert result.stdout.split() == [UNAME[arch], host.name]


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_binaries_in_the_root_are_that_arch(lab: Lab, arch: str) -> None:
    header = (lab.hosts[arch].root / "usr" / "sbin" / "sshd").read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[18:20], "little") == ELF_MACHINE[arch]


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_openssh_client_with_strict_host_key_checking(lab: Lab, arch: str) -> None:
    host = lab.hosts[arch]
    done = subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(lab.key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={lab.known_hosts}",
            "-p",
            str(host.port),
            f"root@{host.address}",
            "uname -m",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == UNAME[arch]


def test_known_hosts_entries_are_openssh_format(lab: Lab) -> None:
    for host in lab.hosts.values():
        found = subprocess.run(
            ["ssh-keygen", "-F", f"[{host.address}]:{host.port}", "-f", str(lab.known_hosts)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert found.returncode == 0, f"{host.name} not in {lab.known_hosts}"
        assert host.host_public_key.split()[1] in found.stdout
        listed = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(host.root / "etc/ssh/ssh_host_ed25519_key.pub")],
            capture_output=True,
            text=True,
            check=True,
        )
        assert listed.stdout.split()[1] == host.host_key_fingerprint
    # Every host has its own key, although all came from one cached tarball.
    assert len({host.host_key_fingerprint for host in lab.hosts.values()}) == len(lab.hosts)


def test_unknown_host_key_is_rejected(lab: Lab, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with (
        pytest.raises(paramiko.SSHException, match="not found in known_hosts"),
        connect(lab.hosts["amd64"], lab.key, empty) as connection,
    ):
        connection.run("true", hide=True)


def test_changed_host_key_is_rejected(lab: Lab, tmp_path: Path) -> None:
    amd64, arm64 = lab.hosts["amd64"], lab.hosts["arm64"]
    # arm64's key recorded for amd64's address: what a replaced (or spoofed) host looks like.
    impostor = LabHost.load(amd64.state_path)
    impostor.host_public_key = arm64.host_public_key
    known_hosts = write_known_hosts(tmp_path / "known_hosts", [impostor])
    with (
        pytest.raises(paramiko.BadHostKeyException),
        connect(amd64, lab.key, known_hosts) as connection,
    ):
        connection.run("true", hide=True)


def test_state_file_rebuilds_the_hosts(lab: Lab) -> None:
    loaded = {host.arch: host for host in load_hosts(lab.workdir)}
    assert set(loaded) == set(lab.hosts)
    for arch, host in lab.hosts.items():
        assert loaded[arch] == host
        assert loaded[arch].running
        assert loaded[arch].pid in loaded[arch].processes()


def test_root_tarballs_are_cached(lab: Lab) -> None:
    for arch in lab.hosts:
        tarball = build_rootfs(arch)
        before = tarball.stat().st_mtime_ns
        started = time.monotonic()
        assert build_rootfs(arch) == tarball
        assert tarball.stat().st_mtime_ns == before
        assert time.monotonic() - started < 1.0


def test_start_refuses_what_it_must(lab: Lab, tmp_path: Path) -> None:
    host = lab.hosts["amd64"]
    with pytest.raises(ValueError, match=r"not in 127\.0\.0\.0/8"):
        start_host("x", "amd64", "10.0.0.1", 2222, tmp_path, authorized_keys=[lab.public_key])
    with pytest.raises(ValueError, match="no authorized key"):
        start_host("x", "amd64", "127.0.0.43", 2222, tmp_path, authorized_keys=[])
    with pytest.raises(ValueError, match="must match"):
        start_host("../x", "amd64", "127.0.0.43", 2222, tmp_path, authorized_keys=[lab.public_key])
    with pytest.raises(HostStartError, match="already running"):
        start_host(
            host.name,
            "amd64",
            host.address,
            host.port,
            lab.workdir,
            authorized_keys=[lab.public_key],
        )
    with pytest.raises(HostStartError, match=f"cannot listen on {host.address}:{host.port}"):
        start_host(
            "other", "amd64", host.address, host.port, tmp_path, authorized_keys=[lab.public_key]
        )
    assert not mounts_under(tmp_path)


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_stop_from_another_process_leaves_nothing(lab: Lab, arch: str, tmp_path: Path) -> None:
    address = "127.0.0.43"
    host = start_host(
        "doomed", arch, address, free_port(address), tmp_path, authorized_keys=[lab.public_key]
    )
    try:
        known_hosts = write_known_hosts(tmp_path / "known_hosts", [host])
        with connect(host, lab.key, known_hosts) as connection:
            # A daemon started over SSH outlives its session; stop() must still find it.
            connection.run("setsid sleep 600 </dev/null >/dev/null 2>&1 &", hide=True)
            assert connection.run("uname -m", hide=True).stdout.strip() == UNAME[arch]
        assert len(host.processes()) >= 2
        assert mounts_under(host.root)
        stop = [sys.executable, "-c", STOP_FROM_STATE_FILE, str(host.state_path)]
        subprocess.run(stop, check=True, timeout=120)
        assert not host.running
        assert not Path(f"/proc/{host.pid}").exists()
        assert host.processes() == []
        assert not any(
            str(host.root) in line for line in Path("/proc/mounts").read_text().splitlines()
        )
        host.stop()
        LabHost.load(host.state_path).stop()
        assert not mounts_under(host.root)

        # Started again on the same workdir: same root, same host key, known_hosts still good.
        again = start_host(
            "doomed", arch, address, free_port(address), tmp_path, authorized_keys=[lab.public_key]
        )
        try:
            assert again.host_key_fingerprint == host.host_key_fingerprint
            assert again.known_hosts_line.split()[1:] == host.known_hosts_line.split()[1:]
            known_hosts = write_known_hosts(tmp_path / "known_hosts", [again])
            with connect(again, lab.key, known_hosts) as connection:
                assert connection.run("uname -m", hide=True).stdout.strip() == UNAME[arch]
        finally:
            again.stop()
        assert again.processes() == []
        assert not mounts_under(again.root)
    finally:
        host.remove()
    assert not host.state_path.parent.exists()
    host.remove()


def test_sshd_failing_to_start_says_why_and_leaves_nothing(lab: Lab, tmp_path: Path) -> None:
    address = "127.0.0.44"
    host = start_host(
        "broken", "amd64", address, free_port(address), tmp_path, authorized_keys=[lab.public_key]
    )
    try:
        host.stop()
        with (host.root / "etc/ssh/sshd_config").open("a") as config:
            config.write("NoSuchOption yes\n")
        with pytest.raises(HostStartError, match=r"(?s)exited with status.*NoSuchOption"):
            start_host(
                "broken",
                "amd64",
                address,
                free_port(address),
                tmp_path,
                authorized_keys=[lab.public_key],
            )
        assert host.processes() == []
        assert not mounts_under(host.root)
    finally:
        host.remove()


def test_mirror_comes_from_apt_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARCHFLEET_DEBIAN_MIRROR", raising=False)
    sources_dir = tmp_path / "sources.list.d"
    sources_dir.mkdir()
    (sources_dir / "debian.sources").write_text(
        "Types: deb deb-src\n"
        "# a comment\n"
        "URIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "URIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "Enabled: no\n"
        "URIs: http://disabled.example/debian\n"
        "Suites: bookworm\n"
    )
    sources_list = tmp_path / "sources.list"
    sources_list.write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb cdrom:[Debian 12]/ bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://list.example/debian trixie main\n"
    )
    assert apt_source_entries(sources_dir, sources_list) == [
        ("http://list.example/debian", ["trixie"]),
        ("http://mirror.example/debian", ["bookworm", "bookworm-updates"]),
        ("http://mirror.example/debian-security", ["bookworm-security"]),
    ]
    assert debian_mirror(sources_dir, sources_list) == "http://mirror.example/debian"
    # An entry naming the suite wins for that suite (trixie roots on a bookworm machine).
    assert debian_mirror(sources_dir, sources_list, suite="trixie") == "http://list.example/debian"
    # A machine on another release: its Debian archive serves bookworm too.
    (sources_dir / "debian.sources").unlink()
    assert debian_mirror(sources_dir, sources_list) == "http://list.example/debian"
    monkeypatch.setenv("ARCHFLEET_DEBIAN_MIRROR", "http://env.example/debian")
    assert debian_mirror(sources_dir, sources_list) == "http://env.example/debian"


def test_fingerprint_matches_ssh_keygen(lab: Lab) -> None:
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{lab.key}.pub"], capture_output=True, text=True, check=True
    )
    assert fingerprint(lab.public_key) == listed.stdout.split()[1]
