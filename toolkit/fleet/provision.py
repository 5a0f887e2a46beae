"""provision / status / deprovision for one host: facts -> plan -> apply, over ONE connection.

`--dry-run` stops after the plan, so what is printed is exactly what apply would run. Each
change is idempotent, and a host's failure is its own: the caller (parallel.for_each_host)
collects it and goes on with the others.

What the servers know about a host does not depend on its facts, so a fleet command does not
wait for one before the other: the hosts' SSH work starts first, and meanwhile the server
sides are set up and every host's server state is looked up (`ServerLookups`). python-gitlab
and jenkinsapi are imported then, not before: this module does not import them.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..inventory import Host, Inventory
from . import builder, gitlab_host
from .connect import connect, run_script
from .gather import read_facts
from .plan import Change, HostPlan, NodeState, RunnerState, plan_host

if TYPE_CHECKING:
    from fabric import Connection

    from .gitlab_runner import GitLabRunners
    from .jenkins_agent import JenkinsNodes, NodeOutcome


class ApplyError(RuntimeError):
    pass


class ServersUnavailable(RuntimeError):
    """The server sides could not be set up; the command reports why, once, for all hosts."""


@dataclass(frozen=True)
class ServerState:
    """What the servers in use know about one host before this run (None: nothing, or off)."""

    runner: RunnerState | None = None
    node: NodeState | None = None


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

    def state_of(self, host: Host) -> ServerState:
        """The host's runner (GitLab lists its scope once) and node (against ONE listing of
        Jenkins' nodes for the whole run), as far as its roles and the sides in use go."""
        runner = (
            self.runners.find(host.name)
            if self.runners and host.has_role("gitlab-runner")
            else None
        )
        node = (
            self.nodes.find(host.name, listing=self.nodes.snapshot())
            if self.nodes and host.has_role("jenkins-agent")
            else None
        )
        return ServerState(runner, node)


class ServerLookups:
    """The servers of one command, and each host's `ServerState`, for the hosts' threads.

    The command's main thread sets the servers up (`start`) while the hosts' threads connect
    and read facts; from then on, every host's state is looked up at once, `workers` at a time,
    so these round trips overlap the SSH ones. A host's thread waits only where it needs the
    answer (`servers`, `state`); if the set-up failed (`fail`), it stops there with
    ServersUnavailable — after reading facts, before any change.
    """

    def __init__(self) -> None:
        self._ready: Future[Servers] = Future()
        self._states: dict[str, Future[ServerState]] = {}
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def of(cls, servers: Servers) -> ServerLookups:
        """Servers already set up; each state is looked up when a host asks for it."""
        lookups = cls()
        lookups._ready.set_result(servers)
        return lookups

    def start(self, servers: Servers, hosts: Sequence[Host], *, workers: int = 8) -> None:
        """The servers are ready: look up every host's state now, in the background."""
        if (servers.runners or servers.nodes) and hosts:
            self._pool = ThreadPoolExecutor(
                max_workers=max(1, min(workers, len(hosts))), thread_name_prefix="lookup"
            )
            for host in hosts:
                self._states[host.name] = self._pool.submit(servers.state_of, host)
        self._ready.set_result(servers)

    def fail(self) -> None:
        if not self._ready.done():
            self._ready.set_exception(ServersUnavailable("the server sides could not be set up"))

    def close(self) -> None:
        """Stop (fail) what never started; wait for the lookups under way."""
        self.fail()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ServerLookups:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def servers(self) -> Servers:
        return self._ready.result()

    def state(self, host: Host) -> ServerState:
        servers = self.servers()
        future = self._states.get(host.name)
        return future.result() if future is not None else servers.state_of(host)


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


def provision_host(
    inventory: Inventory,
    host: Host,
    servers: Servers | ServerLookups,
    *,
    dry_run: bool = False,
    rotate_token: bool = False,
) -> HostReport:
    lookups = servers if isinstance(servers, ServerLookups) else ServerLookups.of(servers)
    connection = connect(host)
    try:
        facts = read_facts(connection, host)
        sides = lookups.servers()
        state = lookups.state(host)
        plan = plan_host(
            sides.scoped(inventory),
            host,
            facts,
            runner=state.runner,
            node=state.node,
            rotate_token=rotate_token,
        )
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
        if sides.runners and host.has_role("gitlab-runner"):
            report.runner_online = bool(state.runner and state.runner.online)
        if sides.nodes and host.has_role("jenkins-agent"):
            report.agent_online = bool(state.node and state.node.online)
        if not dry_run:
            _apply(plan, connection, sides.scoped(inventory), sides, report)
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
        from .gitlab_runner import create_and_register

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
        from .jenkins_agent import install_java_script

        _script(connection, host, install_java_script(), "installing Java")
    elif kind in ("create-node", "update-node"):
        assert servers.nodes is not None and inventory.jenkins is not None
        from .jenkins_agent import ensure_remote_root_script

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


def status_host(inventory: Inventory, host: Host, servers: Servers | ServerLookups) -> HostReport:
    """Facts + server state + what provisioning would still change (nothing is changed)."""
    return provision_host(inventory, host, servers, dry_run=True)


def deprovision_host(
    inventory: Inventory, host: Host, servers: Servers | ServerLookups, *, dry_run: bool = False
) -> HostReport:
    """Unregister on the host, delete on GitLab/Jenkins; what is already gone is skipped."""
    lookups = servers if isinstance(servers, ServerLookups) else ServerLookups.of(servers)
    connection = connect(host)
    try:
        facts = read_facts(connection, host)
        sides = lookups.servers()
        state = lookups.state(host)
        report = HostReport(host.name, facts.arch, facts.machine, facts.can_emulate)
        steps: list[tuple[str, Any]] = []
        runners, nodes = sides.runners, sides.nodes
        if runners and host.has_role("gitlab-runner"):
            if facts.runner_named(host.name):
                steps.append(
                    (
                        f"unregister-runner: {host.name} on the host",
                        lambda: gitlab_host.unregister_runner(
                            connection, host.name, host.name, timeout=host.ssh.command_timeout
                        ),
                    )
                )
            if state.runner is not None:
                runner_id = state.runner.id
                steps.append(
                    (
                        f"delete-runner: runner #{runner_id} on GitLab",
                        lambda: runners.delete(runner_id),
                    )
                )
        if nodes and host.has_role("jenkins-agent") and state.node:
            steps.append((f"delete-node: {host.name} on Jenkins", lambda: nodes.delete(host.name)))
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
