"""Pure planning: what provisioning would change, from facts and server state alone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from toolkit.fleet.facts import HostFacts, RegisteredRunner, parse_facts
from toolkit.fleet.plan import NodeState, PlanError, RunnerState, plan_host
from toolkit.inventory import Inventory, load

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def inventory() -> Inventory:
    return load(REPO / "examples" / "inventory.yml")


def facts(machine: str, **extra: object) -> HostFacts:
    base = parse_facts(f"machine={machine}\nfacts=done\n", host="h")
    return replace(base, **extra)  # type: ignore[arg-type]


PROVISIONED = dict(
    buildah="1.28", skopeo="1.9.3", gitlab_runner="17.5.0", java="17", runner_config_mode="600"
)


def test_fresh_arm64_host_plans_everything(inventory: Inventory) -> None:
    host = inventory.hosts[1]
    plan = plan_host(inventory, host, facts("aarch64"))
    kinds = [c.kind for c in plan.changes]
    assert kinds == [
        "install-builder",
        "install-runner",
        "create-runner",
        "register-runner",
        "install-java",
        "create-node",
    ]
    assert plan.runner_tags == ("arm64", "native", "graviton")
    assert plan.agent_labels == ("arm64",)  # host tags are GitLab's; labels are Jenkins'
    install = plan.changes[1]
    assert install.arg("url").endswith("gitlab-runner-linux-arm64")


def test_declared_arch_differs_from_detected_is_refused(inventory: Inventory) -> None:
    with pytest.raises(PlanError) as info:
        plan_host(inventory, inventory.hosts[1], facts("x86_64"))
    message = str(info.value)
    assert "build-arm64-1" in message and "declared arch arm64" in message
    assert "host is amd64" in message and "x86_64" in message


def test_provisioned_host_plans_no_change(inventory: Inventory) -> None:
    host = inventory.hosts[0]
    current = facts("x86_64", runners=(RegisteredRunner("1", host.name, "abc"),), **PROVISIONED)
    runner = RunnerState(1, host.name, ("amd64", "native"), run_untagged=False, locked=True)
    node = NodeState(host.name, ("amd64",), 2, "/var/lib/jenkins-agent", "jenkins-agent-ssh")
    plan = plan_host(inventory, host, current, runner=runner, node=node)
    assert plan.no_change, plan.changes


def test_changed_tags_and_labels_are_updated_not_recreated(inventory: Inventory) -> None:
    host = inventory.hosts[0]
    current = facts("x86_64", runners=(RegisteredRunner("1", host.name, "abc"),), **PROVISIONED)
    runner = RunnerState(1, host.name, ("amd64",), run_untagged=False, locked=True)
    node = NodeState(host.name, ("amd64", "old"), 4, "/var/lib/jenkins-agent", "jenkins-agent-ssh")
    plan = plan_host(inventory, host, current, runner=runner, node=node)
    assert [c.kind for c in plan.changes] == ["update-runner", "update-node"]
    assert plan.changes[0].arg("tags") == "amd64,native"


def test_rotate_token_and_lost_registration(inventory: Inventory) -> None:
    host = inventory.hosts[0]
    registered = facts("x86_64", runners=(RegisteredRunner("1", host.name, "abc"),), **PROVISIONED)
    runner = RunnerState(1, host.name, ("amd64", "native"), run_untagged=False, locked=True)
    node = NodeState(host.name, ("amd64",), 2, "/var/lib/jenkins-agent", "jenkins-agent-ssh")
    rotated = plan_host(inventory, host, registered, runner=runner, node=node, rotate_token=True)
    assert [c.kind for c in rotated.changes] == [
        "unregister-runner",
        "delete-runner",
        "create-runner",
        "register-runner",
    ]
    # The host lost its config.toml: GitLab's runner is stale, replace it.
    lost = plan_host(inventory, host, facts("x86_64", **PROVISIONED), runner=runner, node=node)
    assert [c.kind for c in lost.changes] == ["delete-runner", "create-runner", "register-runner"]


def test_loose_config_mode_is_fixed(inventory: Inventory) -> None:
    host = inventory.hosts[0]
    current = facts(
        "x86_64",
        runners=(RegisteredRunner("1", host.name, "abc"),),
        **{**PROVISIONED, "runner_config_mode": "644"},
    )
    runner = RunnerState(1, host.name, ("amd64", "native"), run_untagged=False, locked=True)
    node = NodeState(host.name, ("amd64",), 2, "/var/lib/jenkins-agent", "jenkins-agent-ssh")
    plan = plan_host(inventory, host, current, runner=runner, node=node)
    assert [c.kind for c in plan.changes] == ["fix-runner-config-mode"]


@pytest.mark.parametrize(
    ("tool", "present", "expected"),
    [
        ("buildah", {"buildah": "1.28"}, "install buildah with skopeo from the OS packages"),
        ("umoci", {"skopeo": "1.9.3"}, "install umoci with skopeo from the OS packages"),
        ("umoci", {"umoci": "0.4.7"}, "install umoci with skopeo from the OS packages"),
        ("umoci", {"umoci": "0.4.7", "skopeo": "1.9.3"}, None),
    ],
)
def test_daemonless_builders_need_skopeo_beside_them(
    inventory: Inventory, tool: str, present: dict[str, str], expected: str | None
) -> None:
    """skopeo is what pushes by digest for buildah and umoci: without it the builder is missing."""
    chosen = replace(inventory, builder=replace(inventory.builder, tool=tool))
    plan = plan_host(chosen, chosen.hosts[0], facts("x86_64", **present))
    builder_changes = [c for c in plan.changes if c.kind == "install-builder"]
    if expected is None:
        assert builder_changes == []
    else:
        assert [c.detail for c in builder_changes] == [expected]
        assert builder_changes[0].arg("tool") == tool
    refused = replace(chosen, builder=replace(chosen.builder, install=False))
    if expected is not None:
        with pytest.raises(PlanError, match=f"{tool} with skopeo is missing"):
            plan_host(refused, refused.hosts[0], facts("x86_64", **present))
