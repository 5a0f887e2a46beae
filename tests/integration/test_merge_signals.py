"""A merge process stopped by SIGTERM (GitLab's job cancel, Jenkins' abort) or SIGINT in the
middle of its writes, against a REAL registry (Debian's docker-registry): the signal becomes an
exception inside the write phase (toolkit/registry/signals.py), the transaction rolls back,
and the process exits 143 / 130 as a shell reports a process ended by that signal.

The write is held mid-way by a gate in a loopback proxy (tests/support/proxy.py, a test
stand-in for a slow network): the index has landed, one child-tag PUT is on the wire."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import LabImages
from tests.support.cli import archfleet
from tests.support.proxy import ReverseProxy, Rule, gate
from tests.support.registry_http import head_digest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def seed_with_child_tags(lab_images: LabImages, tag: str) -> str:
    run = archfleet(
        "merge-manifest",
        "--insecure",
        "--target",
        f"{lab_images.registry.address}/src:{tag}",
        "--source",
        f"@{lab_images.amd64.digest}",
        "--source",
        f"@{lab_images.arm64.digest}",
    )
    assert run.code == 0, run.stderr
    return run.stdout.strip()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_write_rolls_back_and_exits_128_plus_signal(
    lab_images: LabImages, unique_tag: str, signum: signal.Signals, code: int
) -> None:
    reg = lab_images.registry
    before = seed_with_child_tags(lab_images, unique_tag)
    with ReverseProxy(reg.address) as proxy:
        held = gate()
        proxy.set_rules([Rule("PUT", rf"/manifests/{unique_tag}-amd64$", 1, held)])
        args = [sys.executable, "-m", "toolkit.registry", "merge-manifest", "--insecure"]
        args += ["--target", f"{proxy.address}/src:{unique_tag}"]
        args += ["--source", f"@{lab_images.docker_amd64.digest}"]
        args += ["--source", f"@{lab_images.arm64.digest}"]
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "COLUMNS": "200"},
        )
        try:
            assert held.arrived.wait(60), "the merge never reached its child-tag PUT"
            # The new index is in place: the moment a killed merge would leave it half-written.
            assert head_digest(reg.url, "src", unique_tag) != before
            proc.send_signal(signum)
            # Ordering, not timing: let the signal be handled while the PUT is still held, so
            # the merge is interrupted in its write round (the PUT then lands, as it would).
            time.sleep(1)
            held.release.set()
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            held.release.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        writes = [(r.method, r.path.rsplit("/", 1)[-1]) for r in proxy.records if r.method == "PUT"]
    assert proc.returncode == code, stderr
    assert stdout == ""
    assert "Traceback" not in stderr
    assert f"interrupted by {signum.name} while writing" in stderr
    assert "it was rolled back; every tag is as it was before" in stderr
    assert f"{unique_tag}: put back to {before}" in stderr
    assert f"{unique_tag}-amd64: put back to {lab_images.amd64.digest}" in stderr
    # Every tag as the earlier merge left it.
    assert head_digest(reg.url, "src", unique_tag) == before
    assert head_digest(reg.url, "src", f"{unique_tag}-amd64") == lab_images.amd64.digest
    assert head_digest(reg.url, "src", f"{unique_tag}-arm64") == lab_images.arm64.digest
    # The index first, the child tags, then the rollback's PUTs: the index before its children.
    assert writes[0] == ("PUT", unique_tag)
    assert writes[-2:] == [("PUT", unique_tag), ("PUT", f"{unique_tag}-amd64")]


def test_signal_before_any_write_changes_nothing(lab_images: LabImages, unique_tag: str) -> None:
    """Outside the write phase the signal keeps its default: the process ends at once, and as
    nothing was written, nothing needs undoing."""
    reg = lab_images.registry
    before = seed_with_child_tags(lab_images, unique_tag)
    with ReverseProxy(reg.address) as proxy:
        held = gate()
        # The snapshot's GET of the target: the last read before the first write.
        proxy.set_rules([Rule("GET", rf"/manifests/{unique_tag}$", 1, held)])
        args = [sys.executable, "-m", "toolkit.registry", "merge-manifest", "--insecure"]
        args += ["--target", f"{proxy.address}/src:{unique_tag}"]
        args += ["--source", f"@{lab_images.docker_amd64.digest}"]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT)
        try:
            assert held.arrived.wait(60)
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=120)
        finally:
            held.release.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        writes = [r for r in proxy.records if r.method in ("PUT", "POST", "DELETE")]
    assert proc.returncode == -signal.SIGTERM
    assert writes == []
    assert head_digest(reg.url, "src", unique_tag) == before
