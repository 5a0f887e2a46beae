"""The tool image check's pure evaluation (toolkit/doctor/tool_image.py) and the runner
platforms it compares with (toolkit/doctor/run.py); the I/O against a real registry is
tests/integration/test_doctor_tool_image.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.doctor.checks import exit_code
from toolkit.doctor.host import HostProbe
from toolkit.doctor.run import arch_platform, runner_platforms
from toolkit.doctor.tool_image import ToolImageProbe, evaluate_tool_image
from toolkit.fleet.facts import HostFacts
from toolkit.fleet.parallel import Outcome
from toolkit.inventory import GitLabSettings, InventoryError, parse
from toolkit.registry.manifest import Platform

REF = "registry.example.com/platform/ci/archfleet:0.9.0"
AMD64, ARM64 = Platform.parse("linux/amd64"), Platform.parse("linux/arm64")
PPC = Platform.parse("linux/ppc64le")
DOCKER = GitLabSettings(url="https://gitlab.example.com", executor="docker")
SHELL = GitLabSettings(url="https://gitlab.example.com")


def found(*platforms: Platform, index: bool = True) -> ToolImageProbe:
    return ToolImageProbe(
        REF, "registry.example.com", platforms=platforms, digest="sha256:" + "a" * 64, index=index
    )


def test_no_runner_platform_in_the_image_blocks() -> None:
    check = evaluate_tool_image(DOCKER, found(AMD64), {PPC: ["p1"]})
    assert check.status == "blocker"
    assert "no runner of this inventory can run it: linux/ppc64le (p1)" in check.detail
    assert "publish the tool image for linux/ppc64le" in check.fix
    assert exit_code([check]) == 1


def test_some_runner_platforms_missing_warns_with_the_pinning_tag() -> None:
    check = evaluate_tool_image(
        DOCKER, found(AMD64, ARM64), {AMD64: ["a1"], ARM64: ["b1"], PPC: ["p1", "p2"]}
    )
    assert check.status == "warn"
    assert "lacks linux/ppc64le (p1, p2)" in check.detail
    assert "merge_tags: [amd64]" in check.fix
    assert exit_code([check]) == 0


def test_attestation_platforms_are_no_platform() -> None:
    unknown = Platform("unknown", "unknown")
    check = evaluate_tool_image(DOCKER, found(AMD64, unknown), {AMD64: ["a1"]})
    assert check.status == "ok"
    assert "with linux/amd64:" in check.detail
    assert "unknown" not in check.detail


def test_a_single_platform_image_is_named_as_such() -> None:
    check = evaluate_tool_image(DOCKER, found(AMD64, index=False), {AMD64: ["a1"]})
    assert check.status == "ok"
    assert check.detail.startswith("single-platform image sha256:")


def test_shell_executor_reports_the_platforms_without_judging_them() -> None:
    check = evaluate_tool_image(SHELL, found(AMD64), {PPC: ["p1"]})
    assert check.status == "ok"
    assert "executor shell" in check.detail


def test_hosts_of_unknown_arch_are_named() -> None:
    check = evaluate_tool_image(DOCKER, found(AMD64), {AMD64: ["a1"]}, ["mystery"])
    assert "not compared for mystery" in check.detail


def test_a_bad_reference_names_the_inventory_key() -> None:
    probe = ToolImageProbe("Bad//ref", "", invalid="invalid image reference 'Bad//ref'")
    check = evaluate_tool_image(DOCKER, probe, {})
    assert check.status == "blocker"
    assert check.detail.startswith("gitlab.tool_image: invalid image reference")


def test_an_answer_that_is_no_image_blocks() -> None:
    probe = ToolImageProbe(REF, "registry.example.com", broken="unsupported manifest media type")
    check = evaluate_tool_image(DOCKER, probe, {AMD64: ["a1"]})
    assert check.status == "blocker"
    assert "answered, but not with an image" in check.detail


def test_rejected_credentials_are_named_once() -> None:
    source = "/home/ci/.docker/config.json auths['registry.example.com']"
    probe = ToolImageProbe(
        REF,
        "registry.example.com",
        credentials=source,
        refused=f"credentials for user 'ci' (from {source}) were rejected",
    )
    check = evaluate_tool_image(DOCKER, probe, {})
    assert check.detail.count(source) == 1
    assert check.fix.startswith(f"correct the credentials in {source}")


def test_arch_platform_reads_inventory_arches() -> None:
    assert arch_platform("amd64") == AMD64
    assert arch_platform("arm-v7") == Platform.parse("linux/arm/v7")
    assert arch_platform("sparc") is None


def test_runner_platforms_take_the_declared_arch_else_the_probed_one(tmp_path: Path) -> None:
    fleet = parse(
        {
            "gitlab": {"url": "https://gitlab.example.com", "group": "g"},
            "hosts": [
                {"name": "a", "address": "a.example", "arch": "amd64", "roles": ["gitlab-runner"]},
                {"name": "b", "address": "b.example", "roles": ["gitlab-runner"]},
                {"name": "c", "address": "c.example", "arch": "arm64", "roles": ["gitlab-runner"]},
                {"name": "d", "address": "d.example", "roles": ["gitlab-runner"]},
                {"name": "j", "address": "j", "arch": "ppc64le", "roles": ["jenkins-agent"]},
            ],
            "jenkins": {"url": "https://jenkins.example.com", "credentials_id": "ssh"},
        },
        tmp_path / "fleet.yml",
    )
    # b's probe failed (no facts): its arch is unknown; d declares none, its probe found
    # arm64; j is no runner.
    facts = {"d": HostFacts("aarch64", ARM64)}
    outcomes = [Outcome(h, HostProbe(h, facts=facts.get(h.name))) for h in fleet.hosts]
    runners, unknown = runner_platforms(fleet, outcomes)
    assert runners == {AMD64: ["a"], ARM64: ["c", "d"]}
    assert unknown == ["b"]


def test_the_inventory_refuses_a_tool_image_without_a_registry(tmp_path: Path) -> None:
    data = {
        "gitlab": {"url": "https://gitlab.example.com", "group": "g", "tool_image": "archfleet:1"},
        "hosts": [{"name": "a", "address": "a.example", "roles": ["gitlab-runner"]}],
    }
    with pytest.raises(InventoryError) as caught:
        parse(data, tmp_path / "fleet.yml")
    assert "gitlab.tool_image" in str(caught.value.problems)
    data["gitlab"]["tool_image"] = REF
    assert parse(data, tmp_path / "fleet.yml").gitlab == GitLabSettings(
        url="https://gitlab.example.com", group="g", runner_type="group_type", tool_image=REF
    )
