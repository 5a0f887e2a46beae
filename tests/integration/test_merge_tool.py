"""The merge-tool role on a REAL lab host (sshd in a Debian 12 amd64 root, logged in as a
non-root `ci` with `become: sudo`): provisioning installs the pinned archfleet, reports its
version as a fact, changes nothing on a second run, keeps it through a failed upgrade, and
upgrades it when the inventory's version changes.

Real here: sshd, sudo, apt-get (python3-venv from the root's Debian mirror), python3 -m venv,
pip in hash-checking mode, archfleet itself. The wheels are archfleet's own, built from this
checkout (tests/support/wheel.py); the "other version" is the same source with
toolkit/__init__.py's `__version__` patched (`<version>.post1`) — a real wheel of another
version, not a stand-in. The dependencies are the wheels of the lock archfleet ships, served
with the wheels over https on loopback by a PEP 503 index (tests/support/pyindex.py; the
host trusts its CA as it would a company CA): nothing comes from a public index.

amd64 only: archfleet and every locked dependency are pure-Python wheels (py3-none-any), so
an arm64 host installs the very same files; what differs per arch is python3 from Debian,
which the builder tests already exercise under QEMU at minutes per apt run.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import Lab, own_host
from tests.support.cli import Run, archfleet
from tests.support.https_files import trust_in_root
from tests.support.pyindex import PackageIndex, lock_wheelhouse, project_of, serve_index
from tests.support.wheel import WHEEL_FLAGS, build_wheel, builder_python, clean_env, source_copy
from toolkit import __version__
from toolkit.fleet.connect import connect, run_script
from toolkit.inventory import load, shipped_lock
from toolkit.lab.hosts import LabHost, LabUser, lab_keypair

pytestmark = pytest.mark.integration

ADDRESS = "127.0.0.171"
NEXT_VERSION = f"{__version__}.post1"


def build_wheel_of_version(work: Path, version: str) -> Path:
    """archfleet's wheel from a copy of the checkout whose toolkit/__init__.py says `version`
    (the one source of the package version: pyproject.toml reads it)."""
    source = source_copy(work / "src")
    init = source / "toolkit" / "__init__.py"
    text, count = re.subn(
        r'^__version__ = "[^"]*"$', f'__version__ = "{version}"', init.read_text(), flags=re.M
    )
    assert count == 1, "toolkit/__init__.py has no single __version__ line to patch"
    init.write_text(text)
    dist = work / "dist"
    subprocess.run(
        [str(builder_python()), "-m", "pip", "wheel", *WHEEL_FLAGS, "-w", str(dist), str(source)],
        env=clean_env(),
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = dist.glob("archfleet-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("merge-tool-wheels")
    first = build_wheel(work / "first")
    second = build_wheel_of_version(work / "second", NEXT_VERSION)
    assert first.name == f"archfleet-{__version__}-py3-none-any.whl"
    assert second.name == f"archfleet-{NEXT_VERSION}-py3-none-any.whl"
    return first, second


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[LabHost, Path, Path]]:
    """A fresh Debian 12 host of this test's own, login `ci` with passwordless sudo; (host,
    private key, known_hosts). The shared lab hosts are not needed, so not started."""
    key, public_key = lab_keypair(tmp_path)
    keys_only = Lab(tmp_path, key, public_key, tmp_path / "unused", {})
    with own_host(
        keys_only, tmp_path, "merge-tool-amd64", "amd64", ADDRESS, users=[LabUser("ci")]
    ) as (made, known_hosts):
        yield made, key, known_hosts


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Fleet:
    """The inventory of one merge-tool host and the archfleet commands run against it."""

    def __init__(self, host: LabHost, key: Path, known_hosts: Path, path: Path) -> None:
        self.host, self.key, self.known_hosts, self.path = host, key, known_hosts, path

    def write(self, version: str, wheel: str, sha: str, index_url: str) -> None:
        self.path.write_text(f"""
ssh: {{user: ci, become: sudo, key: {self.key}, known_hosts: {self.known_hosts},
       use_ssh_config: false}}
archfleet:
  version: "{version}"
  wheel: {json.dumps(wheel)}
  sha256: {sha}
  index_url: {index_url}
hosts:
  - {{name: {self.host.name}, address: {self.host.address}, arch: amd64,
      ssh: {{port: {self.host.port}}}, roles: [merge-tool]}}
""")

    def run(self, task: str, *args: str) -> Run:
        return archfleet(task, "--inventory", str(self.path), "--json", *args, timeout=900)

    def provision(self, *args: str) -> dict[str, object]:
        run = self.run("provision-runners", *args)
        assert run.code == 0, run.stdout + run.stderr
        report: dict[str, object] = run.json()["hosts"][0]
        return report

    def as_login(self, command: str) -> str:
        """`command` over SSH as `ci` WITHOUT sudo: what an agent user gets."""
        (target,) = load(self.path).hosts
        plain = replace(target, ssh=replace(target.ssh, become=None))
        connection = connect(plain)
        try:
            result = run_script(connection, command, timeout=120, host=plain.name)
        finally:
            connection.close()
        assert result.ok, result.stderr
        return result.stdout.strip()


def kinds(report: dict[str, object], key: str = "planned") -> list[str]:
    changes = report[key]
    assert isinstance(changes, list)
    return [str(c).split(":")[0] for c in changes]


def versions_dir(host: LabHost) -> list[str]:
    """The virtualenvs under /opt/archfleet-versions (not its .lock)."""
    found = (host.root / "opt" / "archfleet-versions").iterdir()
    return sorted(p.name for p in found if not p.name.startswith("."))


def served_paths(index: PackageIndex) -> set[str]:
    return set(index.requests)


def test_merge_tool_is_installed_pinned_kept_through_a_failed_upgrade_and_upgraded(
    host: tuple[LabHost, Path, Path], wheels: tuple[Path, Path], tmp_path: Path
) -> None:
    lab_host, key, known_hosts = host
    first, second = wheels
    lock_wheels = lock_wheelhouse(shipped_lock())
    # An index that lacks one locked package: pip must fail after the new venv is made.
    missing = lock_wheels[-1]
    partial = [w for w in lock_wheels if w != missing]
    with serve_index(
        {"simple": lock_wheels, "partial": partial},
        tmp_path,
        files={f"/wheels/{w.name}": w.read_bytes() for w in wheels},
    ) as index:
        trust_in_root(lab_host.root, index.ca_file)
        fleet = Fleet(lab_host, key, known_hosts, tmp_path / "fleet.yml")
        first_url = index.url(f"/wheels/{first.name}")
        fleet.write(__version__, first_url, sha256(first), index.index_url())

        # Before: no archfleet; the plan is python3 + venv, then archfleet; dry run changes nothing.
        status = fleet.run("runners-status")
        assert status.code == 0, status.stderr
        before = status.json()["hosts"][0]
        assert before["archfleet"] is None
        assert kinds(before) == ["install-python-venv", "install-merge-tool"]
        planned = fleet.provision("--dry-run")
        assert planned["applied"] == [] and kinds(planned) == kinds(before)
        assert f"install archfleet {__version__} into /opt/archfleet" in str(planned["planned"])
        assert not (lab_host.root / "opt" / "archfleet").exists()
        assert index.requests == []

        applied = fleet.provision()
        assert kinds(applied, "applied") == ["install-python-venv", "install-merge-tool"]
        # A non-root login finds it on PATH and can run it: root's, world-readable.
        assert fleet.as_login("archfleet --version") == f"archfleet {__version__}"
        link = lab_host.root / "opt" / "archfleet"
        target = Path(str(lab_host.root) + str(link.readlink()))
        assert link.is_symlink() and target.parent.name == "archfleet-versions"
        assert (target.stat().st_uid, target.stat().st_mode & 0o777) == (0, 0o755)
        on_path = lab_host.root / "usr" / "local" / "bin" / "archfleet"
        assert str(on_path.readlink()) == "/opt/archfleet/bin/archfleet"
        assert (target / "archfleet-wheel.sha256").read_text().strip() == sha256(first)
        # The wheel and the lock's packages, each from the index, nothing else asked for.
        projects = {project_of(w) for w in lock_wheels}
        expected = {f"/wheels/{first.name}"} | {f"/simple/{p}/" for p in projects}
        expected |= {f"/files/{w.name}" for w in lock_wheels}
        assert served_paths(index) == expected
        assert not list((lab_host.root / "tmp").glob("tmp.*")), "a temp dir was left behind"

        # The fact, and a second run that plans and changes nothing.
        again = fleet.provision()
        assert again["noChange"] is True and again["archfleet"] == __version__, again
        status = fleet.run("runners-status").json()["hosts"][0]
        assert status["archfleet"] == __version__ and status["noChange"] is True

        # A failed upgrade (a locked package the index does not have) changes nothing.
        index.requests.clear()
        fleet.write(
            NEXT_VERSION,
            index.url(f"/wheels/{second.name}"),
            sha256(second),
            index.index_url("partial"),
        )
        failed = fleet.run("provision-runners")
        assert failed.code == 1
        error = failed.json()["hosts"][0]["error"]
        assert "pip could not install archfleet" in error and "unchanged" in error, error
        assert f"/partial/{project_of(missing)}/" in index.requests
        assert fleet.as_login("archfleet --version") == f"archfleet {__version__}"
        assert versions_dir(lab_host) == [target.name], "the failed venv was left behind"

        # The upgrade: the second wheel from a file here, uploaded over SFTP as `ci`.
        fleet.write(NEXT_VERSION, str(second), sha256(second), index.index_url())
        planned = fleet.provision("--dry-run")
        (change,) = planned["planned"]  # type: ignore[misc]
        assert str(change).startswith(
            f"install-merge-tool: upgrade archfleet {__version__} -> {NEXT_VERSION}"
        )
        upgraded = fleet.provision()
        assert kinds(upgraded, "applied") == ["install-merge-tool"]
        assert fleet.as_login("archfleet --version") == f"archfleet {NEXT_VERSION}"
        # The replaced version stays (a job may still run from it); the upload is gone.
        new_target = Path(str(lab_host.root) + str(link.readlink()))
        assert versions_dir(lab_host) == sorted([target.name, new_target.name])
        assert not list((lab_host.root / "home" / "ci").glob(".archfleet-upload-*"))
        final = fleet.provision()
        assert final["noChange"] is True and final["archfleet"] == NEXT_VERSION
