"""The README's first command, `invoke demo`, end to end on real parts (registry, buildah with
an arm64 RUN step under QEMU, the merger, skopeo), and it leaves no registry behind."""

from __future__ import annotations

import os

import pytest

from tests.support.cli import archfleet

pytestmark = pytest.mark.integration


def test_demo_end_to_end_and_cleans_up() -> None:
    run = archfleet("demo", "--json", timeout=600)
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["ok"] is True and result["kept"] is False
    assert [b["platform"] for b in result["builds"]] == ["linux/amd64", "linux/arm64"]
    assert [c["ok"] for c in result["clients"]] == [True, True]
    binaries = {p["platform"]: p["binaryArchitecture"] for p in result["verify"]["platforms"]}
    assert binaries == {"linux/amd64": "amd64", "linux/arm64": "arm64"}
    assert result["mergeRequests"] == 3 * 2 + 2
    # The registry it started is gone (its pid is printed in the progress lines).
    pid_line = next(line for line in run.stderr.splitlines() if "registry stopped (pid" in line)
    pid = int(pid_line.rsplit("pid ", 1)[1].rstrip(")"))
    assert not os.path.exists(f"/proc/{pid}")
