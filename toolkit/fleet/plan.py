"""Pure planning: (desired host, its facts, what the servers know) -> the ordered changes.

No I/O here. `--dry-run` prints these; apply runs these same objects, so what is shown is
what is done, and an unchanged fleet plans nothing ("no change"), as in pyinfra.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..archmap import runner_tag
from ..inventory import GitLabSettings, Host, Inventory, JenkinsSettings
from .facts import HostFacts


class PlanError(ValueError):
    """The host must not be provisioned as asked (e.g. it is not the arch it is declared)."""


@dataclass(frozen=True)
class RunnerState:
    """What GitLab knows about this host's runner (found by description = host name)."""

    id: int
    description: str
    tags: tuple[str, ...]
    run_untagged: bool
    locked: bool
    online: bool = False


@dataclass(frozen=True)
class NodeState:
    """What Jenkins knows about this host's node."""

    name: str
    labels: tuple[str, ...]
    executors: int
    remote_root: str
    credentials_id: str
    online: bool = False


@dataclass(frozen=True)
class Change:
    """One idempotent step. `kind` picks the code that applies it; `detail` is for humans."""

    kind: str
    detail: str
    args: tuple[tuple[str, str], ...] = field(default=())

    def arg(self, name: str) -> str:
        return dict(self.args)[name]

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class HostPlan:
    host: Host
    facts: HostFacts
    changes: tuple[Change, ...]
    runner_tags: tuple[str, ...] = ()
    agent_labels: tuple[str, ...] = ()

    @property
    def no_change(self) -> bool:
        return not self.changes


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def desired_runner_tags(host: Host, facts: HostFacts, gitlab: GitLabSettings) -> tuple[str, ...]:
    """Always the DETECTED arch first (archmap spelling), then the inventory's extras."""
    return _unique([runner_tag(facts.platform), *gitlab.tags, *host.tags])


def desired_agent_labels(host: Host, facts: HostFacts, jenkins: JenkinsSettings) -> tuple[str, ...]:
    return _unique([runner_tag(facts.platform), *jenkins.labels, *host.labels])


def check_native(host: Host, facts: HostFacts) -> None:
    if host.declared_arch and host.declared_arch != facts.arch:
        raise PlanError(
            f"{host.name}: declared arch {host.declared_arch} but the host is {facts.arch} "
            f"(uname -m: {facts.machine}); refusing to tag or register it — native or nothing"
        )


def plan_builder(inventory: Inventory, facts: HostFacts) -> list[Change]:
    builder = inventory.builder
    daemonless = {
        # buildah pushes by digest through skopeo; so does umoci.
        "buildah": ("buildah with skopeo", facts.buildah and facts.skopeo),
        "umoci": ("umoci with skopeo", facts.umoci and facts.skopeo),
    }
    if builder.tool in daemonless:
        what, present = daemonless[builder.tool]
        if present:
            return []
        if not builder.install:
            raise PlanError(f"{what} is missing and builder.install is false")
        return [
            Change(
                "install-builder", f"install {what} from the OS packages", (("tool", builder.tool),)
            )
        ]
    changes: list[Change] = []
    if not facts.docker or not facts.buildx:
        if not builder.install:
            raise PlanError("docker with buildx is missing and builder.install is false")
        changes.append(
            Change(
                "install-builder",
                "install docker with buildx from the OS packages",
                (("tool", "docker"),),
            )
        )
    group = builder.group or "docker"
    if group not in facts.groups and facts.user != "root":
        changes.append(
            Change(
                "add-group",
                f"add {facts.user} to group {group}",
                (("user", facts.user), ("group", group)),
            )
        )
    return changes


def plan_gitlab(
    host: Host,
    facts: HostFacts,
    gitlab: GitLabSettings,
    server: RunnerState | None,
    *,
    rotate_token: bool = False,
) -> tuple[list[Change], tuple[str, ...]]:
    tags = desired_runner_tags(host, facts, gitlab)
    changes: list[Change] = []
    if not facts.gitlab_runner:
        url = gitlab.runner_url.format(arch=facts.arch)
        checksum = gitlab.runner_sha256.get(facts.arch, "")
        changes.append(
            Change(
                "install-runner",
                f"install gitlab-runner from {url}",
                (("url", url), ("sha256", checksum)),
            )
        )
    registered = facts.runner_named(host.name)
    if server is None or registered is None or rotate_token:
        why = (
            "--rotate-token"
            if rotate_token and server and registered
            else "not on GitLab"
            if server is None
            else "not registered on the host"
        )
        # Unregister first: the real `gitlab-runner unregister` talks to GitLab about the
        # runner, which must still exist then.
        if registered is not None:
            changes.append(Change("unregister-runner", f"unregister {host.name} on the host"))
        if server is not None:
            changes.append(
                Change(
                    "delete-runner",
                    f"delete runner #{server.id} ({why})",
                    (("id", str(server.id)),),
                )
            )
        changes.append(
            Change(
                "create-runner",
                f"create {gitlab.runner_type} runner with tags {', '.join(tags)}",
                (("tags", ",".join(tags)),),
            )
        )
        changes.append(
            Change(
                "register-runner", f"register {host.name} ({gitlab.executor} executor), config 0600"
            )
        )
        return changes, tags
    if server.tags != tags or server.run_untagged or server.locked != gitlab.locked:
        changes.append(
            Change(
                "update-runner",
                f"runner #{server.id} tags {', '.join(server.tags) or '-'} -> {', '.join(tags)}",
                (("id", str(server.id)), ("tags", ",".join(tags))),
            )
        )
    if facts.runner_config_mode not in (None, "600"):
        changes.append(
            Change("fix-runner-config-mode", f"config.toml mode {facts.runner_config_mode} -> 600")
        )
    return changes, tags


def plan_jenkins(
    host: Host, facts: HostFacts, jenkins: JenkinsSettings, server: NodeState | None
) -> tuple[list[Change], tuple[str, ...]]:
    labels = desired_agent_labels(host, facts, jenkins)
    executors = host.executors or jenkins.executors
    changes: list[Change] = []
    if not facts.java:
        changes.append(Change("install-java", "install a Java runtime for the agent"))
    wanted = (("labels", " ".join(labels)), ("executors", str(executors)))
    if server is None:
        changes.append(
            Change(
                "create-node",
                f"create node {host.name}: labels {' '.join(labels)}, "
                f"{executors} executors, SSH launcher ({jenkins.credentials_id})",
                wanted,
            )
        )
    elif (
        server.labels != labels
        or server.executors != executors
        or server.remote_root != jenkins.remote_root
        or server.credentials_id != jenkins.credentials_id
    ):
        changes.append(
            Change(
                "update-node",
                f"node {host.name}: labels {' '.join(server.labels) or '-'} -> "
                f"{' '.join(labels)}, executors {server.executors} -> {executors}",
                wanted,
            )
        )
    return changes, labels


def plan_host(
    inventory: Inventory,
    host: Host,
    facts: HostFacts,
    *,
    runner: RunnerState | None = None,
    node: NodeState | None = None,
    rotate_token: bool = False,
) -> HostPlan:
    check_native(host, facts)
    changes = plan_builder(inventory, facts)
    tags: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    if host.has_role("gitlab-runner") and inventory.gitlab:
        gitlab_changes, tags = plan_gitlab(
            host, facts, inventory.gitlab, runner, rotate_token=rotate_token
        )
        changes += gitlab_changes
    if host.has_role("jenkins-agent") and inventory.jenkins:
        jenkins_changes, labels = plan_jenkins(host, facts, inventory.jenkins, node)
        changes += jenkins_changes
    return HostPlan(host, facts, tuple(changes), tags, labels)
