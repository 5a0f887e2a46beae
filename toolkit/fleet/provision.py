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

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..inventory import Host, Inventory
from . import builder, gitlab_host, merge_tool
from .apt import failure_line
from .connect import connect, run_script
from .facts import HostFacts
from .gather import read_facts
from .plan import (
    Change,
    HostPlan,
    NodeState,
    RunnerState,
    job_user_needs,
    plan_host,
    stale_registration,
)
from .users import ensure_job_user_script

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
    """The server sides in use; None = off (no section, or switched off for the lab).
    `unchecked`: sides a dry run could not ask — side ("gitlab", "jenkins") -> why ("no
    token", "unreachable"); their host part is still planned (plan.plan_host)."""

    runners: GitLabRunners | None = None
    nodes: JenkinsNodes | None = None
    unchecked: tuple[tuple[str, str], ...] = ()

    @property
    def not_checked(self) -> dict[str, str]:
        return dict(self.unchecked)

    def scoped(self, inventory: Inventory) -> Inventory:
        """The inventory as far as the servers in use go: a side that is off plans nothing;
        a side that is not checked plans its host part."""
        unchecked = self.not_checked
        return replace(
            inventory,
            gitlab=inventory.gitlab if self.runners or "gitlab" in unchecked else None,
            jenkins=inventory.jenkins if self.nodes or "jenkins" in unchecked else None,
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
    # gitlab-runner's service on the host: "running", "stopped", "absent"; None: GitLab side off.
    runner_service: str | None = None
    # After a create-node/update-node of this run: Jenkins' answer right after saving the
    # node (an SSH agent takes a while to launch, so "not yet" is normal); otherwise the
    # state before this run, as runners-status reports it.
    agent_online: bool | None = None
    # The archfleet command the host had before this run (facts: `archfleet --version`);
    # None: none, or it does not run.
    archfleet: str | None = None
    # Server sides this (dry) run could not ask, and why: "gitlab" -> "no token".
    not_checked: dict[str, str] = field(default_factory=dict)

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
            "runnerService": self.runner_service,
            "agentOnline": self.agent_online,
            "archfleet": self.archfleet,
            "notChecked": self.not_checked,
        }


def provision_host(
    inventory: Inventory,
    host: Host,
    servers: Servers | ServerLookups,
    *,
    dry_run: bool = False,
    rotate_token: bool = False,
    progress: Callable[[str], None] | None = None,
) -> HostReport:
    """Facts, plan and (unless `dry_run`) apply. `progress` hears each step as it starts
    ("reading facts", then each change's detail), for the live per-host lines."""
    say = progress or _quiet
    lookups = servers if isinstance(servers, ServerLookups) else ServerLookups.of(servers)
    say("connecting")
    connection = connect(host)
    try:
        say("reading facts")
        facts = read_facts(connection, host)
        sides = lookups.servers()
        state = lookups.state(host)
        runner = _runner_of(sides, host, facts, state.runner)
        plan = plan_host(
            sides.scoped(inventory),
            host,
            facts,
            runner=runner,
            node=state.node,
            rotate_token=rotate_token,
            host_key=" ".join(host_key_of(connection) or ()) or None,
            unchecked=_unchecked_for(sides, host),
        )
        report = HostReport(
            host.name,
            facts.arch,
            facts.machine,
            facts.can_emulate,
            planned=[str(c) for c in plan.changes],
            runner_tags=plan.runner_tags,
            agent_labels=plan.agent_labels,
            archfleet=facts.archfleet,
            not_checked=_unchecked_for(sides, host),
        )
        # Online as the servers saw it before this run: what runners-status reports.
        if sides.runners and host.has_role("gitlab-runner"):
            report.runner_online = bool(runner and runner.online)
            report.runner_service = facts.runner_service or "absent"
        if sides.nodes and host.has_role("jenkins-agent"):
            report.agent_online = bool(state.node and state.node.online)
        if not dry_run:
            _apply(plan, connection, sides.scoped(inventory), sides, report, say)
        return report
    finally:
        connection.close()


def _quiet(message: str) -> None:
    """No progress wanted (--json, library callers)."""


def _unchecked_for(sides: Servers, host: Host) -> dict[str, str]:
    """The not-checked sides that concern `host` (its roles)."""
    roles = {"gitlab": "gitlab-runner", "jenkins": "jenkins-agent"}
    return {side: why for side, why in sides.unchecked if host.has_role(roles[side])}


def _runner_of(
    sides: Servers, host: Host, facts: HostFacts, by_name: RunnerState | None
) -> RunnerState | None:
    """GitLab's runner for this host: the one whose id the host's config.toml holds, if GitLab
    still has it in our scope; else the one found by name (or none). Asked only when the two
    differ, so a converged host costs no extra request."""
    registered = facts.runner_named(host.name)
    if sides.runners is None or not host.has_role("gitlab-runner") or registered is None:
        return by_name
    if not registered.id.isdigit() or (by_name is not None and str(by_name.id) == registered.id):
        return by_name
    return sides.runners.get(int(registered.id)) or by_name


def _script(connection: Connection, host: Host, script: str, what: str) -> None:
    result = run_script(connection, script, timeout=host.ssh.command_timeout, host=host.name)
    if not result.ok:
        # A script that knows why it failed says so in one line (apt.FAILURE_MARKER): that
        # line, not the tail of apt's chatter.
        cause = failure_line(result.stderr)
        raise ApplyError(
            f"{host.name}: {what} failed (exit {result.exit_code}): "
            f"{cause or (result.stderr or result.stdout).strip()[-400:]}"
        )


@dataclass(frozen=True)
class _Step:
    """What applying one change needs: the plan, the open connection, the sides in use."""

    change: Change
    plan: HostPlan
    connection: Connection
    inventory: Inventory
    servers: Servers

    @property
    def host(self) -> Host:
        return self.plan.host

    @property
    def timeout(self) -> float:
        return self.host.ssh.command_timeout

    def script(self, script: str, what: str) -> None:
        _script(self.connection, self.host, script, what)


def _apply(
    plan: HostPlan,
    connection: Connection,
    inventory: Inventory,
    servers: Servers,
    report: HostReport,
    say: Callable[[str], None] | None = None,
) -> None:
    for change in plan.changes:
        apply = _APPLIERS.get(change.kind)
        if apply is None:
            raise ApplyError(f"{plan.host.name}: no code applies a {change.kind!r} change")
        if say is not None:
            say(f"{change.kind}: {change.detail}")
        node = apply(_Step(change, plan, connection, inventory, servers))
        report.applied.append(str(change))
        if node is not None:
            report.agent_online = node.state.online


# --- one function per change kind: what the plan says, done -----------------------------------


def _install_builder(step: _Step) -> None:
    tool = step.change.arg("tool")
    step.script(builder.install_builder_script(tool), f"installing {tool}")


def _install_runner(step: _Step) -> None:
    change = step.change
    gitlab_host.install_runner(
        step.connection,
        step.host.name,
        change.arg("url"),
        binary=change.arg("binary"),
        sha256=change.arg("sha256"),
        checksums_url=change.arg("checksums_url"),
        timeout=step.timeout,
    )


def _ensure_runner_user(step: _Step) -> None:
    groups = tuple(g for g in step.change.arg("groups").split(",") if g)
    script = ensure_job_user_script(
        gitlab_host.RUNNER_USER,
        home=gitlab_host.RUNNER_HOME,
        comment="GitLab Runner",
        groups=groups,
        subids=bool(step.change.arg("subids")),
    )
    step.script(script, f"preparing user {gitlab_host.RUNNER_USER}")


def _install_runner_service(step: _Step) -> None:
    step.script(gitlab_host.install_service_script(), "gitlab-runner install")


def _start_runner_service(step: _Step) -> None:
    step.script(gitlab_host.service_script("start"), "gitlab-runner start")


def _restart_runner_service(step: _Step) -> None:
    step.script(gitlab_host.service_script("restart"), "gitlab-runner restart")


def _set_runner_concurrent(step: _Step) -> None:
    concurrent = int(step.change.arg("concurrent"))
    step.script(gitlab_host.set_concurrent_script(concurrent), f"setting concurrent = {concurrent}")


def _verify_delete_runner(step: _Step) -> None:
    name = step.host.name
    step.script(
        gitlab_host.verify_delete_script(name), f"gitlab-runner verify --delete --name {name}"
    )


def _delete_runner(step: _Step) -> None:
    assert step.servers.runners is not None
    step.servers.runners.delete(int(step.change.arg("id")))


def _unregister_runner(step: _Step) -> None:
    name = step.host.name
    gitlab_host.unregister_runner(step.connection, name, name, timeout=step.timeout)


def _create_runner(step: _Step) -> None:
    assert step.servers.runners is not None and step.inventory.gitlab is not None
    from .gitlab_runner import create_and_register

    # Creation and registration are one step: a failed registration deletes the runner.
    create_and_register(
        step.servers.runners,
        step.connection,
        step.host.name,
        step.inventory.gitlab,
        step.plan.runner_tags,
        timeout=step.timeout,
    )


def _registered_with_create(step: _Step) -> None:
    """`register-runner` is shown in the plan; `create-runner` does it (one step)."""


def _update_runner(step: _Step) -> None:
    assert step.servers.runners is not None and step.inventory.gitlab is not None
    step.servers.runners.update(
        int(step.change.arg("id")), step.plan.runner_tags, locked=step.inventory.gitlab.locked
    )


def _fix_runner_config_mode(step: _Step) -> None:
    gitlab_host.fix_config_mode(step.connection, step.host.name, timeout=step.timeout)


def _install_java(step: _Step) -> None:
    from .java import install_java_script

    change = step.change
    script = install_java_script(
        int(change.arg("major")), change.arg("package"), change.arg("manager")
    )
    step.script(script, f"installing Java {change.arg('major')}")


def _install_python_venv(step: _Step) -> None:
    merge_tool.install_python(
        step.connection, step.host, step.change.arg("packages"), timeout=step.timeout
    )


def _install_merge_tool(step: _Step) -> None:
    assert step.inventory.archfleet is not None
    merge_tool.install(step.connection, step.host, step.inventory.archfleet, timeout=step.timeout)


def _link_merge_tool(step: _Step) -> None:
    merge_tool.link(step.connection, step.host, timeout=step.timeout)


def _ensure_node(step: _Step) -> NodeOutcome:
    assert step.servers.nodes is not None and step.inventory.jenkins is not None
    from .jenkins_agent import agent_node, ensure_agent_user_script

    jenkins = step.inventory.jenkins
    groups, _ = job_user_needs(step.inventory)
    step.script(
        ensure_agent_user_script(
            jenkins.agent_user,
            jenkins.remote_root,
            groups[0] if groups else None,
            jenkins.agent_authorized_key,
        ),
        f"preparing user {jenkins.agent_user} and {jenkins.remote_root}",
    )
    # The state `ensure_node` returns was read (one GET) after the node was saved. The node's
    # launcher endpoint is the host's `jenkins.address` where one is given (an agent behind a
    # bastion), the same value `jenkins-casc` prints.
    node = agent_node(
        step.host,
        jenkins,
        step.plan.agent_labels,
        executors=int(step.change.arg("executors")),
        host_key=host_key_of(step.connection),
    )
    return step.servers.nodes.ensure_node(node)


_APPLIERS: dict[str, Callable[[_Step], NodeOutcome | None]] = {
    "install-builder": _install_builder,
    "install-runner": _install_runner,
    "ensure-runner-user": _ensure_runner_user,
    "install-runner-service": _install_runner_service,
    "verify-delete-runner": _verify_delete_runner,
    "unregister-runner": _unregister_runner,
    "delete-runner": _delete_runner,
    "create-runner": _create_runner,
    "register-runner": _registered_with_create,
    "update-runner": _update_runner,
    "fix-runner-config-mode": _fix_runner_config_mode,
    "set-runner-concurrent": _set_runner_concurrent,
    "start-runner-service": _start_runner_service,
    "restart-runner-service": _restart_runner_service,
    "install-java": _install_java,
    "install-python-venv": _install_python_venv,
    "install-merge-tool": _install_merge_tool,
    "link-merge-tool": _link_merge_tool,
    "create-node": _ensure_node,
    "update-node": _ensure_node,
}


def host_key_of(connection: Connection) -> tuple[str, str] | None:
    """The host key this connection verified (against known_hosts, or recorded with
    --accept-new-host-keys): (algorithm, base64), what a Jenkins node is told to expect."""
    transport = connection.client.get_transport()
    if transport is None:
        return None
    key = transport.get_remote_server_key()
    return key.get_name(), key.get_base64()


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
            runner = _runner_of(sides, host, facts, state.runner)
            registered = facts.runner_named(host.name)
            timeout = host.ssh.command_timeout
            if registered and stale_registration(registered, runner):
                # GitLab no longer has it: `unregister` would get 403 and exit fatally.
                steps.append(
                    (
                        f"verify-delete-runner: runner #{registered.id or '?'} is gone from "
                        "GitLab; drop it from config.toml",
                        lambda: _script(
                            connection,
                            host,
                            gitlab_host.verify_delete_script(host.name),
                            f"gitlab-runner verify --delete --name {host.name}",
                        ),
                    )
                )
            elif registered:
                steps.append(
                    (
                        f"unregister-runner: {host.name} on the host",
                        lambda: gitlab_host.unregister_runner(
                            connection, host.name, host.name, timeout=timeout
                        ),
                    )
                )
            if runner is not None:
                runner_id = runner.id
                steps.append(
                    (
                        f"delete-runner: runner #{runner_id} on GitLab",
                        lambda: runners.delete(runner_id),
                    )
                )
        if nodes and host.has_role("jenkins-agent") and state.node:
            steps.append((f"delete-node: {host.name} on Jenkins", lambda: nodes.delete(host.name)))
        report.planned = [what for what, _ in steps]
        report.not_checked = _unchecked_for(sides, host)
        for side, why in report.not_checked.items():
            # Shown, never run: a dry run that could not ask the server says so.
            server, what = ("GitLab", "runner") if side == "gitlab" else ("Jenkins", "node")
            report.planned.append(
                f"{side}-not-checked: {server} not checked ({why}): its {what} for "
                f"{host.name}, if any, would be removed"
            )
        if not dry_run:
            for what, step in steps:
                step()
                report.applied.append(what)
        return report
    finally:
        connection.close()
