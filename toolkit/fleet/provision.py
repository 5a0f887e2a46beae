"""provision / status / deprovision for one host: facts -> plan -> apply, over ONE connection.

`--dry-run` stops after the plan, so what is printed is exactly what apply would run. Each
change is idempotent, and a host's failure is its own: the caller (parallel.for_each_host)
collects it and goes on with the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from fabric import Connection

from ..inventory import Host, Inventory
from . import builder, gitlab_host
from .connect import connect, run_script
from .facts import HostFacts
from .gather import read_facts
from .gitlab_runner import GitLabRunners, create_and_register
from .jenkins_agent import (
    JenkinsNodes,
    NodeOutcome,
    ensure_remote_root_script,
    install_java_script,
)
from .plan import Change, HostPlan, NodeState, RunnerState, plan_host


class ApplyError(RuntimeError):
    pass


@dataclass(frozen=True)
class Servers:
    """The server sides in use; None = off (no section, or switched off for the lab)."""

    runners: GitLabRunners | None = None
    nodes: JenkinsNodes | None = None

    def scoped(self, inventory: Inventory) -> Inventory:
        """The inventory as far as the servers in use go: a side that is off plans nothing."""
        return replace(
            inventory,
            gitlab=inventory.gitlab if self.runners else None,
            jenkins=inventory.jenkins if self.nodes else None,
        )


@dataclass
class HostReport:
    host: str
    arch: str = ""
    machine: str = ""
    emulates: bool = False
    planned: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    runner_tags: tuple[str, ...] = ()
    agent_labels: tuple[str, ...] = ()
    runner_online: bool | None = None
    # After a create-node/update-node of this run: Jenkins' answer right after saving the
    # node (an SSH agent takes a while to launch, so "not yet" is normal); otherwise the
    # state before this run, as runners-status reports it.
    agent_online: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "arch": self.arch,
            "machine": self.machine,
            "canEmulate": self.emulates,
            "planned": self.planned,
            "applied": self.applied,
            "noChange": not self.planned,
            "runnerTags": list(self.runner_tags),
            "agentLabels": list(self.agent_labels),
            "runnerOnline": self.runner_online,
            "agentOnline": self.agent_online,
        }


def _plan(
    inventory: Inventory, host: Host, facts: HostFacts, servers: Servers, rotate_token: bool
) -> tuple[HostPlan, RunnerState | None, NodeState | None]:
    runner = (
        servers.runners.find(host.name)
        if servers.runners and host.has_role("gitlab-runner")
        else None
    )
    node = (
        servers.nodes.find(host.name) if servers.nodes and host.has_role("jenkins-agent") else None
    )
    plan = plan_host(
        servers.scoped(inventory), host, facts, runner=runner, node=node, rotate_token=rotate_token
    )
    return plan, runner, node


def provision_host(
    inventory: Inventory,
    host: Host,
    servers: Servers,
    *,
    dry_run: bool = False,
    rotate_token: bool = False,
) -> HostReport:
    connection = connect(host)
    try:
        facts = read_facts(connection, host)
        plan, runner, node = _plan(inventory, host, facts, servers, rotate_token)
        report = HostReport(
            host.name,
            facts.arch,
            facts.machine,
            facts.can_emulate,
            planned=[str(c) for c in plan.changes],
            runner_tags=plan.runner_tags,
            agent_labels=plan.agent_labels,
        )
        # Online as the servers saw it before this run: what runners-status reports.
        if servers.runners and host.has_role("gitlab-runner"):
            report.runner_online = bool(runner and runner.online)
        if servers.nodes and host.has_role("jenkins-agent"):
            report.agent_online = bool(node and node.online)
        if not dry_run:
            _apply(plan, connection, servers.scoped(inventory), servers, report)
        return report
    finally:
        connection.close()


def _script(connection: Connection, host: Host, script: str, what: str) -> None:
    result = run_script(connection, script, timeout=host.ssh.command_timeout, host=host.name)
    if not result.ok:
        raise ApplyError(
            f"{host.name}: {what} failed (exit {result.exit_code}): "
            f"{(result.stderr or result.stdout).strip()[-400:]}"
        )


def _apply(
    plan: HostPlan,
    connection: Connection,
    inventory: Inventory,
    servers: Servers,
    report: HostReport,
) -> None:
    for change in plan.changes:
        node = _apply_change(change, plan, connection, inventory, servers)
        report.applied.append(str(change))
        if node is not None:
            report.agent_online = node.state.online


def _apply_change(
    change: Change,
    plan: HostPlan,
    connection: Connection,
    inventory: Inventory,
    servers: Servers,
) -> NodeOutcome | None:
    """Apply one change; a node created or updated on Jenkins comes back with its state."""
    host, kind = plan.host, change.kind
    timeout = host.ssh.command_timeout
    if kind == "install-builder":
        _script(
            connection,
            host,
            builder.install_builder_script(change.arg("tool")),
            f"installing {change.arg('tool')}",
        )
    elif kind == "add-group":
        _script(
            connection,
            host,
            builder.add_group_script(change.arg("user"), change.arg("group")),
            f"adding {change.arg('user')} to {change.arg('group')}",
        )
    elif kind == "install-runner":
        gitlab_host.install_runner(
            connection, host.name, change.arg("url"), change.arg("sha256"), timeout=timeout
        )
    elif kind == "delete-runner":
        assert servers.runners is not None
        servers.runners.delete(int(change.arg("id")))
    elif kind == "unregister-runner":
        gitlab_host.unregister_runner(connection, host.name, host.name, timeout=timeout)
    elif kind == "create-runner":
        assert servers.runners is not None and inventory.gitlab is not None
        # Creation and registration are one step: a failed registration deletes the runner.
        create_and_register(
            servers.runners,
            connection,
            host.name,
            inventory.gitlab,
            plan.runner_tags,
            timeout=timeout,
        )
    elif kind == "register-runner":
        pass  # done with create-runner above
    elif kind == "update-runner":
        assert servers.runners is not None and inventory.gitlab is not None
        servers.runners.update(
            int(change.arg("id")), plan.runner_tags, locked=inventory.gitlab.locked
        )
    elif kind == "fix-runner-config-mode":
        gitlab_host.fix_config_mode(connection, host.name, timeout=timeout)
    elif kind == "install-java":
        _script(connection, host, install_java_script(), "installing Java")
    elif kind in ("create-node", "update-node"):
        assert servers.nodes is not None and inventory.jenkins is not None
        jenkins = inventory.jenkins
        _script(
            connection,
            host,
            ensure_remote_root_script(jenkins.remote_root, host.ssh.user),
            f"creating {jenkins.remote_root}",
        )
        # The state `ensure` returns was read (one GET) after the node was saved.
        return servers.nodes.ensure(
            host.name,
            address=host.address,
            port=host.ssh.port,
            labels=plan.agent_labels,
            executors=int(change.arg("executors")),
            remote_root=jenkins.remote_root,
            credentials_id=jenkins.credentials_id,
        )
    else:
        raise ApplyError(f"{host.name}: no code applies a {kind!r} change")
    return None


def status_host(inventory: Inventory, host: Host, servers: Servers) -> HostReport:
    """Facts + server state + what provisioning would still change (nothing is changed)."""
    return provision_host(inventory, host, servers, dry_run=True)


def deprovision_host(
    inventory: Inventory, host: Host, servers: Servers, *, dry_run: bool = False
) -> HostReport:
    """Unregister on the host, delete on GitLab/Jenkins; what is already gone is skipped."""
    connection = connect(host)
    try:
        facts = read_facts(connection, host)
        report = HostReport(host.name, facts.arch, facts.machine, facts.can_emulate)
        steps: list[tuple[str, Any]] = []
        if servers.runners and host.has_role("gitlab-runner"):
            if facts.runner_named(host.name):
                steps.append(
                    (
                        f"unregister-runner: {host.name} on the host",
                        lambda: gitlab_host.unregister_runner(
                            connection, host.name, host.name, timeout=host.ssh.command_timeout
                        ),
                    )
                )
            state = servers.runners.find(host.name)
            if state is not None:
                runner_id = state.id
                steps.append(
                    (
                        f"delete-runner: runner #{runner_id} on GitLab",
                        lambda: servers.runners.delete(runner_id),
                    )
                )
        if servers.nodes and host.has_role("jenkins-agent") and servers.nodes.find(host.name):
            steps.append(
                (f"delete-node: {host.name} on Jenkins", lambda: servers.nodes.delete(host.name))
            )
        report.planned = [what for what, _ in steps]
        if not dry_run:
            for what, step in steps:
                step()
                report.applied.append(what)
        return report
    finally:
        connection.close()


def preflight(
    reports: list[HostReport], runners_online: dict[str, bool], nodes_online: dict[str, bool]
) -> dict[str, dict[str, bool | None]]:
    """Per arch: is there at least one online runner / agent carrying its tag / label — what a
    pipeline needs before it asks for that arch. `arch` is archmap's spelling (facts.arch), the
    tag provisioning gives runners and the label it gives agents, as the templates expect."""
    table: dict[str, dict[str, bool | None]] = {}
    for tag in sorted({r.arch for r in reports if r.arch}):
        table[tag] = {
            "gitlab": runners_online.get(tag, False) if runners_online else None,
            "jenkins": nodes_online.get(tag, False) if nodes_online else None,
        }
    return table
