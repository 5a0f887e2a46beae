"""The README's first command, `invoke demo`, end to end on real parts: a lab fleet (registry,
an amd64 sshd host, an arm64 sshd host whose binaries run under QEMU), provision-runners on
it (GitLab/Jenkins sides off: there are no servers here), the sample app built ON each host
for its own arch with umoci + skopeo and pushed by digest, one merge, verify with the ELF
check, skopeo as an amd64 and an arm64 client. Then a re-run (no change to provision),
`--keep`, and a teardown that leaves no process or mount behind.

Not real here: an arm64 CPU. The arm64 host is emulated; that is the only difference from a
fleet, and the native guards of the templates and the Jenkins step would refuse it in
production unless told to allow emulation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.integration.test_lab_fleet import alive, processes_under
from tests.support.cli import archfleet
from toolkit.lab.rootfs import mounts_under

pytestmark = pytest.mark.integration


def demo(directory: Path, port: int, *args: str) -> tuple[int, dict[str, Any], str]:
    run = archfleet(
        "demo",
        "--json",
        "--dir",
        str(directory),
        "--first-address",
        "127.0.0.97",
        "--port",
        str(port),
        *args,
        timeout=1200,
    )
    return run.code, (run.json() if run.stdout.strip() else {}), run.stderr


def check_story(result: dict[str, Any]) -> None:
    assert result["ok"] is True
    hosts = {h["host"]: h for h in result["hosts"]}
    assert {(h["arch"], h["machine"]) for h in hosts.values()} == {
        ("amd64", "x86_64"),
        ("arm64", "aarch64"),
    }
    # Each image was built on the host of its arch: what uname -m said where it ran.
    built = {b["platform"]: (b["host"], b["machine"]) for b in result["builds"]}
    assert built == {
        "linux/amd64": ("lab-amd64", "x86_64"),
        "linux/arm64": ("lab-arm64", "aarch64"),
    }
    # The merged tag: each client gets the digest its host pushed; each entrypoint (a #!/bin/sh
    # script) resolves to a busybox of the right ELF machine.
    digests = {b["platform"]: b["digest"] for b in result["builds"]}
    assert {c["platform"]: c["resolved"] for c in result["clients"]} == digests
    binaries = {p["platform"]: p["binaryArchitecture"] for p in result["verify"]["platforms"]}
    assert binaries == {"linux/amd64": "amd64", "linux/arm64": "arm64"}
    # 4N + 3: N manifests, N configs, N child-tag HEADs, N child-tag PUTs, and the target's GET,
    # the index PUT and one read-back HEAD of the target (README, merge-manifest).
    assert result["mergeRequests"] == 4 * 2 + 3


def test_demo_end_to_end_rerun_keep_and_clean_teardown(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    port = free_port("127.0.0.97")

    code, first, stderr = demo(directory, port)
    assert code == 0, stderr
    check_story(first)
    assert first["kept"] is False
    # A fresh root has no builder: provisioning installed it, through the OS packages.
    assert all(
        h["applied"] == ["install-builder: install umoci with skopeo from the OS packages"]
        for h in first["hosts"]
    )
    assert "--no-gitlab --no-jenkins" in stderr and "no GitLab or Jenkins server" in stderr
    assert processes_under(directory) == [] and mounts_under(directory) == []

    # Again, keeping the lab: the hosts' roots were kept, so provisioning has nothing to do.
    code, second, stderr = demo(directory, port, "--keep")
    assert code == 0, stderr
    check_story(second)
    assert second["kept"] is True
    assert all(h["applied"] == [] and h["planned"] == [] for h in second["hosts"])
    status = archfleet("lab.status", "--dir", str(directory), "--json")
    assert status.code == 0 and status.json()["up"] is True
    pids = [int(p["detail"].rsplit("pid ", 1)[1].rstrip(")")) for p in status.json()["parts"]]

    down = archfleet("lab.down", "--dir", str(directory))
    assert down.code == 0, down.stderr
    assert not any(alive(pid) for pid in pids)
    assert processes_under(directory) == [] and mounts_under(directory) == []


def test_an_app_the_lab_cannot_build_is_refused_before_anything_starts(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "Containerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN make install\n")
    directory = tmp_path / "lab"
    code, _, stderr = demo(directory, free_port("127.0.0.97"), "--app", str(app))
    assert code == 1
    assert f"{app / 'Containerfile'}:3: RUN is not supported" in stderr
    assert "Traceback" not in stderr
    assert not (directory / "lab.json").exists() and processes_under(directory) == []
