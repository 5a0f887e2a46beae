"""Pure planning: what provisioning would change, from facts and server state alone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from toolkit.fleet.facts import HostFacts, RegisteredRunner, parse_facts
from toolkit.fleet.jenkins_config import MANUAL_STRATEGY
from toolkit.fleet.plan import NodeState, PlanError, RunnerState, plan_host
from toolkit.inventory import Inventory, load

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def inventory() -> Inventory:
    return load(REPO / "examples" / "inventory.yml")


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtestkeytestkeytestkeytestkeytestkeytestkey"


def node_state(name: str, labels: tuple[str, ...], executors: int) -> NodeState:
    """A node as archfleet writes it: SSH launcher expecting the host key it verified."""
    return NodeState(
        name,
        labels,
        executors,
        "/var/lib/jenkins-agent",
        "jenkins-agent-ssh",
        host_key=HOST_KEY,
        host_key_strategy=MANUAL_STRATEGY,
    )


def facts(machine: str, **extra: object) -> HostFacts:
    # Debian 13 unless a test says otherwise: it has a Java 21 package for the agents, and
    # apt-get for python3-venv.
    base = parse_facts(
        f"machine={machine}\nos_id=debian\nos_version=13\napt_get=yes\nfacts=done\n", host="h"
    )
    return replace(base, **extra)  # type: ignore[arg-type]


# examples/inventory.yml's archfleet: section.
ARCHFLEET_SHA256 = "3f0a1c5e9b7d2a4c6e8f0b1d3a5c7e9f1b3d5a7c9e1f3b5d7a9c1e3f5b7d9a1c"
MERGE_TOOL_PROVISIONED = dict(
    archfleet="0.1.0",
    archfleet_venv=True,
    archfleet_wheel_sha256=ARCHFLEET_SHA256,
    archfleet_linked=True,
    python3="3.13.5",
    python3_venv=True,
)
PROVISIONED = dict(
    **MERGE_TOOL_PROVISIONED,
    buildah="1.28",
    skopeo="1.9.3",
    gitlab_runner="19.3.0",
    java="21.0.5",
    os_id="debian",
    os_version="13",
    runner_config_mode="600",
    runner_service="running",
    runner_user_groups=("gitlab-runner",),
    runner_user_subids=True,
    runner_concurrent=2,
)


def test_fresh_arm64_host_plans_everything(inventory: Inventory) -> None:
    host = inventory.hosts[1]
    plan = plan_host(inventory, host, facts("aarch64", os_id="debian", os_version="13"))
    kinds = [c.kind for c in plan.changes]
    assert kinds == [
        "install-builder",
        "install-runner",
        "ensure-runner-user",
        "install-runner-service",
        "create-runner",
        "register-runner",
        "set-runner-concurrent",
        "start-runner-service",
        "install-java",
        "create-node",
    ]
    assert plan.runner_tags == ("arm64", "native", "graviton")
    assert plan.agent_labels == ("arm64",)  # host tags are GitLab's; labels are Jenkins'
    install = plan.changes[1]
    assert install.arg("url") == (
        "https://gitlab-runner-downloads.s3.amazonaws.com/v19.3.0/binaries/gitlab-runner-linux-arm64"
    )
    assert install.arg("checksums_url").endswith("/v19.3.0/release.sha256")
    assert install.arg("binary") == "gitlab-runner-linux-arm64" and install.arg("sha256") == ""
    # buildah (rootless) needs subordinate ids for the job user; no docker group.
    user = plan.changes[2]
    assert (user.arg("groups"), user.arg("subids")) == ("", "yes")


@pytest.mark.parametrize(("machine", "binary"), [("armv7l", "arm"), ("armv6l", "arm")])
def test_arm_hosts_get_gitlabs_arm_binary(inventory: Inventory, machine: str, binary: str) -> None:
    """GitLab ships one `gitlab-runner-linux-arm` for arm/v6 and arm/v7."""
    host = replace(inventory.hosts[0], declared_arch=None)
    plan = plan_host(inventory, host, facts(machine))
    install = next(c for c in plan.changes if c.kind == "install-runner")
    assert install.arg("url").endswith(f"/binaries/gitlab-runner-linux-{binary}")


def test_a_stopped_service_is_started_and_an_old_runner_upgraded(inventory: Inventory) -> None:
    host = inventory.hosts[0]
    registered = (RegisteredRunner("1", host.name, "abc"),)
    runner = RunnerState(1, host.name, ("amd64", "native"), run_untagged=False, locked=True)
    node = node_state(host.name, ("amd64",), 2)
    stopped = facts("x86_64", runners=registered, **{**PROVISIONED, "runner_service": "stopped"})
    plan = plan_host(inventory, host, stopped, runner=runner, node=node, host_key=HOST_KEY)
    assert [c.kind for c in plan.changes] == ["start-runner-service"]
    old = facts("x86_64", runners=registered, **{**PROVISIONED, "gitlab_runner": "17.5.0"})
    plan = plan_host(inventory, host, old, runner=runner, node=node, host_key=HOST_KEY)
    assert [str(c) for c in plan.changes] == [
        "install-runner: upgrade gitlab-runner 17.5.0 -> 19.3.0 (gitlab-runner-linux-amd64, "
        "sha256 from the release's list)",
        "restart-runner-service: restart the gitlab-runner service (new binary)",
    ]
    loose = facts("x86_64", runners=registered, **{**PROVISIONED, "runner_concurrent": 1})
    plan = plan_host(inventory, host, loose, runner=runner, node=node, host_key=HOST_KEY)
    assert [str(c) for c in plan.changes] == [
        "set-runner-concurrent: config.toml concurrent 1 -> 2"
    ]


def test_docker_builds_put_the_job_user_not_the_login_in_the_docker_group(
    inventory: Inventory,
) -> None:
    docker = replace(inventory, builder=replace(inventory.builder, tool="docker"))
    host = docker.hosts[0]
    present = {**PROVISIONED, "docker": "27.1", "buildx": "0.16"}
    current = facts("x86_64", runners=(RegisteredRunner("1", host.name, "abc"),), **present)
    runner = RunnerState(1, host.name, ("amd64", "native"), run_untagged=False, locked=True)
    plan = plan_host(docker, host, current, runner=runner)
    user = next(c for c in plan.changes if c.kind == "ensure-runner-user")
    assert str(user) == "ensure-runner-user: update user gitlab-runner (groups docker)"
    assert (user.arg("groups"), user.arg("subids")) == ("docker", "")
    assert not [c for c in plan.changes if c.kind == "add-group"]


def test_a_runner_deleted_on_gitlab_is_dropped_from_the_host_then_recreated(
    inventory: Inventory,
) -> None:
    """config.toml holds runner #7, GitLab has no such runner any more: `unregister` would end
    in GitLab's 403 and a fatal exit; `verify --delete` drops the entry instead."""
    host = inventory.hosts[0]
    current = facts("x86_64", runners=(RegisteredRunner("7", host.name, "abc"),), **PROVISIONED)
    plan = plan_host(inventory, host, current, runner=None)
    assert [c.kind for c in plan.changes][:3] == [
        "verify-delete-runner",
        "create-runner",
        "register-runner",
    ]
    # GitLab lists ANOTHER runner (#9) by this host's name: the host's #7 is stale, #9 unusable
    # (its token is not on the host): both go, one new runner comes.
    other = RunnerState(9, host.name, ("amd64", "native"), run_untagged=False, locked=True)
    plan = plan_host(inventory, host, current, runner=other)
    assert [str(c) for c in plan.changes][:2] == [
        "verify-delete-runner: runner #7 in config.toml is not on GitLab: gitlab-runner verify "
        "--delete drops it",
        "delete-runner: delete runner #9 (its host entry is stale)",
    ]


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
    node = node_state(host.name, ("amd64",), 2)
    plan = plan_host(inventory, host, current, runner=runner, node=node, host_key=HOST_KEY)
    assert plan.no_change, plan.changes


def test_changed_tags_and_labels_are_updated_not_recreated(inventory: Inventory) -> None:
    host = inventory.hosts[0]
    current = facts("x86_64", runners=(RegisteredRunner("1", host.name, "abc"),), **PROVISIONED)
    runner = RunnerState(1, host.name, ("amd64",), run_untagged=False, locked=True)
    node = node_state(host.name, ("amd64", "old"), 4)
    plan = plan_host(inventory, host, current, runner=runner, node=node, host_key=HOST_KEY)
    assert [c.kind for c in plan.changes] == ["update-runner", "update-node"]
    assert plan.changes[0].arg("tags") == "amd64,native"


def test_rotate_token_and_lost_registration(inventory: Inventory) -> None:
    host = inventory.hosts[0]
    registered = facts("x86_64", runners=(RegisteredRunner("1", host.name, "abc"),), **PROVISIONED)
    runner = RunnerState(1, host.name, ("amd64", "native"), run_untagged=False, locked=True)
    node = node_state(host.name, ("amd64",), 2)
    rotated = plan_host(
        inventory, host, registered, runner=runner, node=node, rotate_token=True, host_key=HOST_KEY
    )
    assert [c.kind for c in rotated.changes] == [
        "unregister-runner",
        "delete-runner",
        "create-runner",
        "register-runner",
    ]
    # The host lost its config.toml: GitLab's runner is stale, replace it.
    lost = plan_host(
        inventory,
        host,
        facts("x86_64", **{**PROVISIONED, "runner_concurrent": None}),
        runner=runner,
        node=node,
        host_key=HOST_KEY,
    )
    assert [c.kind for c in lost.changes] == [
        "delete-runner",
        "create-runner",
        "register-runner",
        "set-runner-concurrent",
    ]


def test_loose_config_mode_is_fixed(inventory: Inventory) -> None:
    host = inventory.hosts[0]
    current = facts(
        "x86_64",
        runners=(RegisteredRunner("1", host.name, "abc"),),
        **{**PROVISIONED, "runner_config_mode": "644"},
    )
    runner = RunnerState(1, host.name, ("amd64", "native"), run_untagged=False, locked=True)
    node = node_state(host.name, ("amd64",), 2)
    plan = plan_host(inventory, host, current, runner=runner, node=node, host_key=HOST_KEY)
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


def test_a_side_not_checked_plans_the_host_part_and_says_what_it_could_not_ask(
    inventory: Inventory,
) -> None:
    """A dry run without tokens: gitlab-runner's binary, user and service and the agent's Java
    are the host's and are planned; the runner and node are the servers' — one line each."""
    host = inventory.hosts[1]
    plan = plan_host(
        inventory,
        host,
        facts("aarch64", os_id="debian", os_version="13"),
        unchecked={"gitlab": "no token", "jenkins": "unreachable"},
    )
    assert [c.kind for c in plan.changes] == [
        "install-builder",
        "install-runner",
        "ensure-runner-user",
        "install-runner-service",
        "gitlab-not-checked",
        "install-java",
        "jenkins-not-checked",
    ]
    gitlab = plan.changes[4]
    assert str(gitlab).startswith("gitlab-not-checked: GitLab not checked (no token): ")
    assert str(plan.changes[6]).startswith("jenkins-not-checked: Jenkins not checked (unreachable)")
    assert plan.runner_tags == ("arm64", "native", "graviton")  # from the facts, as always


def test_a_moved_launcher_endpoint_is_an_update_node(inventory: Inventory) -> None:
    """A node whose SSH launcher points elsewhere than the host's jenkins endpoint (e.g. the
    inventory now gives `jenkins.address` for an agent behind a bastion) is updated; the same
    endpoint, or one a listing did not read (""), plans nothing."""
    host = inventory.hosts[0]
    current = facts("x86_64", runners=(RegisteredRunner("1", host.name, "abc"),), **PROVISIONED)
    runner = RunnerState(1, host.name, ("amd64", "native"), run_untagged=False, locked=True)
    same = node_state(host.name, ("amd64",), 2)
    address, port = host.jenkins_endpoint
    for node in (same, replace(same, launcher_host=address, launcher_port=port)):
        plan = plan_host(inventory, host, current, runner=runner, node=node, host_key=HOST_KEY)
        assert [c.kind for c in plan.changes] == []
    moved = replace(same, launcher_host="10.99.0.1", launcher_port=port)
    plan = plan_host(inventory, host, current, runner=runner, node=moved, host_key=HOST_KEY)
    assert [c.kind for c in plan.changes] == ["update-node"]
    assert f"launcher 10.99.0.1:{port} -> {address}:{port}" in plan.changes[0].detail
