"""Two merges of different images into one tag, against a REAL registry (Debian's
docker-registry). The interleavings that used to end with both exiting 0, or with the tag
holding one merge's index while the child tags pointed at the other's images, are forced with
a gate in a loopback proxy (tests/support/proxy.py, a test stand-in for a slow network): one
merge is held at a chosen request while the other runs from start to end. A free-running
round of pairs of whole processes checks the invariant whatever the scheduling was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LabImages
from tests.support.cli import archfleet
from tests.support.proxy import Gate, ReverseProxy, Rule, gate, status
from tests.support.registry_http import get_manifest, head_digest, put_manifest
from toolkit.registry.client import RegistryClient
from toolkit.registry.engine import MergeOptions, MergeResult, merge_manifest
from toolkit.registry.merge import SourceSpec
from toolkit.registry.reference import parse_reference
from toolkit.registry.transaction import ConcurrentWriteError, PartialWriteError

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


class Held:
    """A merge run in a thread, held at the request the gate `held` stands in front of."""

    def __init__(self, run: Callable[[], MergeResult], held: Gate) -> None:
        self.held = held
        self.result: MergeResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(run,), daemon=True)
        self._thread.start()
        assert held.arrived.wait(60), "the held merge never reached its gate"

    def _main(self, run: Callable[[], MergeResult]) -> None:
        try:
            self.result = run()
        except BaseException as exc:  # reported to the test below
            self.error = exc

    def finish(self) -> None:
        self.held.release.set()
        self._thread.join(60)
        assert not self._thread.is_alive()


def merge_in(proxy: ReverseProxy, tag: str, digests: list[str]) -> Callable[[], MergeResult]:
    def run() -> MergeResult:
        client = RegistryClient(proxy.address, insecure=True, use_env_credentials=False)
        target = parse_reference(f"{proxy.address}/src:{tag}")
        specs = [SourceSpec.parse(f"@{d}", target=target) for d in digests]
        return merge_manifest(client, [target], specs, MergeOptions())

    return run


def cli_merge(lab_images: LabImages, tag: str, digests: list[str], *flags: str) -> str:
    """`archfleet merge-manifest` of `@digest` sources into `src:<tag>`; the index digest."""
    args = ["merge-manifest", "--insecure", *flags]
    args += ["--target", f"{lab_images.registry.address}/src:{tag}"]
    for digest in digests:
        args += ["--source", f"@{digest}"]
    run = archfleet(*args)
    assert run.code == 0, run.stderr
    return run.stdout.strip()


def children_by_tag(lab_images: LabImages, tag: str) -> dict[str, str]:
    """`{child tag: digest}` as the index under `tag` lists its children (linux only here)."""
    index = json.loads(get_manifest(lab_images.registry.url, "src", tag)[0])
    found = {}
    for entry in index["manifests"]:
        platform = entry["platform"]
        suffix = "-".join(p for p in (platform["architecture"], platform.get("variant")) if p)
        found[f"{tag}-{suffix}"] = entry["digest"]
    return found


def assert_child_tags_agree(lab_images: LabImages, tag: str) -> None:
    for child_tag, digest in children_by_tag(lab_images, tag).items():
        assert head_digest(lab_images.registry.url, "src", child_tag) == digest, child_tag


def writes_of(proxy: ReverseProxy) -> list[tuple[str, str]]:
    """(method, tag) of every write that went through the proxy, in the order they arrived."""
    return [
        (r.method, r.path.rsplit("/", 1)[-1])
        for r in proxy.records
        if r.method in ("PUT", "POST", "DELETE")
    ]


def test_merge_whose_target_another_writer_took_fails_naming_both_indexes(
    lab_images: LabImages, unique_tag: str
) -> None:
    """A writes its index and child tags; held before its read-back, B runs from start to end;
    A's read-back finds B's index: A fails, names the tag and both digests, and leaves B's
    index alone (no rollback over another writer). B's child-tag PUTs came after A's, so they
    already agree with B's index; A's repair only re-states them."""
    reg = lab_images.registry
    a_images = [lab_images.amd64.digest, lab_images.arm64.digest]
    b_images = [lab_images.docker_amd64.digest, lab_images.arm64.digest]
    a_digest = cli_merge(lab_images, unique_tag, a_images, "--dry-run")
    with ReverseProxy(reg.address) as proxy:
        held = gate()
        # The snapshot reads the target with GET; the first HEAD of it is the read-back.
        proxy.set_rules([Rule("HEAD", rf"/manifests/{unique_tag}$", 1, held)])
        a = Held(merge_in(proxy, unique_tag, a_images), held)
        b_digest = cli_merge(lab_images, unique_tag, b_images)
        a.finish()
        address = proxy.address
        a_writes = writes_of(proxy)
    assert isinstance(a.error, ConcurrentWriteError), a.error
    assert (
        f"target {address}/src:{unique_tag} holds {b_digest}, not this merge's {a_digest}"
        in str(a.error)
    )
    assert [(c.tag, c.expected, c.found) for c in a.error.conflicts] == [
        (unique_tag, a_digest, b_digest)
    ]
    # B's result stands, and its child tags agree with it.
    assert head_digest(reg.url, "src", unique_tag) == b_digest
    assert head_digest(reg.url, "src", f"{unique_tag}-amd64") == lab_images.docker_amd64.digest
    assert_child_tags_agree(lab_images, unique_tag)
    # A wrote its index first, then its child tags; after the gate only the repair of the one
    # child tag where B's index lists another image (-arm64 is the same image in both).
    assert a_writes[0] == ("PUT", unique_tag)
    assert sorted(a_writes[1:3]) == [("PUT", f"{unique_tag}-amd64"), ("PUT", f"{unique_tag}-arm64")]
    assert a_writes[3:] == [("PUT", f"{unique_tag}-amd64")]
    assert (
        f"child tag {unique_tag}-amd64 repaired: it points at {lab_images.docker_amd64.digest}"
        in (str(a.error))
    )


def test_loser_whose_child_tag_put_lands_late_repairs_it_towards_the_winner(
    lab_images: LabImages, unique_tag: str
) -> None:
    """A writes its index and is held at its `-amd64` PUT; B runs from start to end: its index
    lands after A's, its child tags, its read-back finds its own index, exit 0. Then A's held
    PUT lands, moving `-amd64` to A's image under B's index. A's read-back finds B's index: A
    puts `-amd64` to the image B's index lists, reads the tag again (still B's), and fails
    naming B's index. The winner never reads its child tags back: the loser repairs."""
    reg = lab_images.registry
    a_images = [lab_images.amd64.digest, lab_images.arm64.digest]
    b_images = [lab_images.docker_amd64.digest, lab_images.arm64.digest]
    with ReverseProxy(reg.address) as proxy:
        held = gate()
        proxy.set_rules([Rule("PUT", rf"/manifests/{unique_tag}-amd64$", 1, held)])
        a = Held(merge_in(proxy, unique_tag, a_images), held)
        b_digest = cli_merge(lab_images, unique_tag, b_images)
        assert_child_tags_agree(lab_images, unique_tag)
        a.finish()
        a_writes = writes_of(proxy)
    assert isinstance(a.error, ConcurrentWriteError), a.error
    assert [(c.tag, c.found) for c in a.error.conflicts] == [(unique_tag, b_digest)]
    assert head_digest(reg.url, "src", unique_tag) == b_digest
    assert head_digest(reg.url, "src", f"{unique_tag}-amd64") == lab_images.docker_amd64.digest
    assert_child_tags_agree(lab_images, unique_tag)
    # A's own -amd64 PUT (after B's), then the repair.
    assert a_writes.count(("PUT", f"{unique_tag}-amd64")) == 2
    assert a_writes[-1] == ("PUT", f"{unique_tag}-amd64")


def test_merge_whose_index_lands_last_wins_without_repairs(
    lab_images: LabImages, unique_tag: str
) -> None:
    """A is held at its index PUT; B runs from start to end. A's index lands last, then A's
    child tags (after B's), and A's read-back finds its own index: A exits 0 having made
    exactly 4N + 3 requests, and the child tags agree with A's index. (B had finished, and
    read its own index back, before A's index landed: B ran first, A second.)"""
    reg = lab_images.registry
    a_images = [lab_images.amd64.digest, lab_images.arm64.digest]
    b_images = [lab_images.docker_amd64.digest, lab_images.arm64.digest]
    with ReverseProxy(reg.address) as proxy:
        held = gate()
        proxy.set_rules([Rule("PUT", rf"/manifests/{unique_tag}$", 1, held)])
        a = Held(merge_in(proxy, unique_tag, a_images), held)
        cli_merge(lab_images, unique_tag, b_images)
        assert head_digest(reg.url, "src", f"{unique_tag}-amd64") == lab_images.docker_amd64.digest
        assert_child_tags_agree(lab_images, unique_tag)
        a.finish()
    assert a.error is None, a.error
    assert a.result is not None
    assert a.result.registry_requests == 4 * 2 + 3
    assert head_digest(reg.url, "src", unique_tag) == a.result.plan.digest
    assert head_digest(reg.url, "src", f"{unique_tag}-amd64") == lab_images.amd64.digest
    assert_child_tags_agree(lab_images, unique_tag)


def test_failed_merge_that_lost_its_target_repairs_instead_of_rolling_back(
    lab_images: LabImages, unique_tag: str
) -> None:
    """A's index lands; its `-amd64` PUT is held and its `-arm64` PUT fails for good. B runs from
    start to end meanwhile. A's rollback finds B's index under the tag: it puts nothing back
    over another writer, and makes the child tag it moved under B's index (`-amd64`, released
    after B's) agree with B's index instead."""
    reg = lab_images.registry
    a_images = [lab_images.amd64.digest, lab_images.arm64.digest]
    # Not the same arm64 image: A's retried PUT would find B's and take it for its own.
    b_images = [lab_images.docker_amd64.digest, lab_images.docker_arm64.digest]
    with ReverseProxy(reg.address) as proxy:
        held = gate()
        proxy.set_rules(
            [
                Rule("PUT", rf"/manifests/{unique_tag}-amd64$", 1, held),
                Rule("PUT", rf"/manifests/{unique_tag}-arm64$", 50, status(500)),
            ]
        )
        a = Held(merge_in(proxy, unique_tag, a_images), held)
        b_digest = cli_merge(lab_images, unique_tag, b_images)
        a.finish()
    assert isinstance(a.error, PartialWriteError), a.error
    message = str(a.error)
    assert f"{unique_tag}: NOT rolled back: another writer moved it to {b_digest}" in message
    assert (
        f"child tag {unique_tag}-amd64 repaired: it points at {lab_images.docker_amd64.digest}"
        in message
    )
    assert head_digest(reg.url, "src", unique_tag) == b_digest
    assert head_digest(reg.url, "src", f"{unique_tag}-amd64") == lab_images.docker_amd64.digest
    assert_child_tags_agree(lab_images, unique_tag)


def test_loser_to_a_single_image_leaves_its_child_tags_and_says_so(
    lab_images: LabImages, unique_tag: str
) -> None:
    """A writes its index and child tags; held before its read-back, someone pushes a single
    image (not an index) to the tag. There are no children to agree with: A fails naming the
    image the tag holds, and says its child tags were left as they are."""
    reg = lab_images.registry
    a_images = [lab_images.amd64.digest, lab_images.arm64.digest]
    with ReverseProxy(reg.address) as proxy:
        held = gate()
        proxy.set_rules([Rule("HEAD", rf"/manifests/{unique_tag}$", 1, held)])
        a = Held(merge_in(proxy, unique_tag, a_images), held)
        image = json.loads(get_manifest(reg.url, "src", lab_images.docker_amd64.digest)[0])
        pushed = put_manifest(reg.url, "src", unique_tag, image)
        a.finish()
        after_gate = writes_of(proxy)[3:]
    assert isinstance(a.error, ConcurrentWriteError), a.error
    assert [(c.tag, c.found) for c in a.error.conflicts] == [(unique_tag, pushed)]
    assert "which is not an index whose children map to child tags" in str(a.error)
    assert f"{unique_tag}-amd64, {unique_tag}-arm64 left as they are" in str(a.error)
    assert after_gate == []
    assert head_digest(reg.url, "src", unique_tag) == pushed


def _start(lab_images: LabImages, tag: str, digests: list[str]) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "toolkit.registry", "merge-manifest", "--insecure"]
    args += ["--target", f"{lab_images.registry.address}/src:{tag}"]
    for digest in digests:
        args += ["--source", f"@{digest}"]
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_free_running_pairs_of_merges_keep_tag_and_child_tags_in_agreement(
    lab_images: LabImages, unique_tag: str
) -> None:
    """Pairs of whole `merge-manifest` processes started together, each pair on a fresh tag,
    both platforms contended. Whatever the scheduling: the child tags agree with the index the
    tag holds, the merge whose index it holds exited 0, and a merge that exited non-zero says
    another writer moved its tag. (Which rounds race is up to the machine; the interleavings
    themselves are forced in the two tests above.)"""
    pairs = {
        "p": [lab_images.amd64.digest, lab_images.arm64.digest],
        "q": [lab_images.docker_amd64.digest, lab_images.docker_arm64.digest],
    }
    outcomes: list[dict[str, Any]] = []
    for round_ in range(8):
        tag = f"{unique_tag}-{round_}"
        running = {name: _start(lab_images, tag, digests) for name, digests in pairs.items()}
        done = {}
        for name, proc in running.items():
            stdout, stderr = proc.communicate(timeout=120)
            done[name] = (proc.returncode, stdout, stderr)
        holder = head_digest(lab_images.registry.url, "src", tag)
        assert_child_tags_agree(lab_images, tag)
        for name, (code, stdout, stderr) in done.items():
            assert "Traceback" not in stderr, stderr
            if code == 0:
                assert stdout.strip().startswith("sha256:")
            else:
                assert code == 1 and "another writer changed tags of this merge" in stderr, stderr
            if stdout.strip() == holder:
                assert code == 0, f"{name} holds {tag} but exited {code}: {stderr}"
        assert holder in {out.strip() for _, out, _ in done.values()}
        outcomes.append({name: code for name, (code, _, _) in done.items()})
    assert len(outcomes) == 8
