"""Pure planning: (desired host, its facts, what the servers know) -> the ordered changes.

No I/O here. `--dry-run` prints these; apply runs these same objects, so what is shown is
what is done, and an unchanged fleet plans nothing ("no change"), as in pyinfra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..archmap import runner_tag
from ..inventory import ArchfleetSettings, GitLabSettings, Host, Inventory, JenkinsSettings
from .facts import HostFacts, RegisteredRunner
from .gitlab_host import RUNNER_HOME, RUNNER_USER, runner_binary_name
from .merge_tool import COMMAND, LINK, VENV


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
    # "algorithm base64" of a ManuallyProvidedKeyVerificationStrategy (None: another strategy,
    # see host_key_strategy, the class name in config.xml).
    host_key: str | None = None
    host_key_strategy: str = ""
    # The SSH launcher's endpoint ("" / 0: not read, e.g. a fake's listing): compared with the
    # host's jenkins_endpoint, so a new `jenkins.address` (an agent moved behind a bastion)
    # plans an update-node.
    launcher_host: str = ""
    launcher_port: int = 0


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
    return changes


def job_user_needs(inventory: Inventory) -> tuple[tuple[str, ...], bool]:
    """What the user CI jobs run as needs for the builder: docker's group (root-equivalent, so
    only for the docker builder), or subordinate ids (rootless buildah)."""
    builder = inventory.builder
    if builder.tool == "docker":
        return (builder.group or "docker",), False
    return (), builder.tool == "buildah"


def plan_runner_host(
    facts: HostFacts, gitlab: GitLabSettings, job_user: tuple[tuple[str, ...], bool]
) -> list[Change]:
    """gitlab-runner on the host as a service that polls GitLab: the pinned binary, its user,
    the service definition. (Starting it comes last, after registration: `plan_gitlab`.)"""
    changes: list[Change] = []
    binary = runner_binary_name(facts.platform.architecture)
    if facts.gitlab_runner != gitlab.runner_version:
        arch = binary.removeprefix("gitlab-runner-linux-")
        url = gitlab.runner_url.format(arch=arch, version=gitlab.runner_version)
        checksums = gitlab.runner_checksums_url.format(arch=arch, version=gitlab.runner_version)
        sha256 = gitlab.runner_sha256.get(arch, "") or gitlab.runner_sha256.get(facts.arch, "")
        verb = (
            f"upgrade gitlab-runner {facts.gitlab_runner} ->"
            if facts.gitlab_runner
            else ("install gitlab-runner")
        )
        checked = "sha256 from the inventory" if sha256 else "sha256 from the release's list"
        changes.append(
            Change(
                "install-runner",
                f"{verb} {gitlab.runner_version} ({binary}, {checked})",
                (
                    ("url", url),
                    ("binary", binary),
                    ("sha256", sha256),
                    ("checksums_url", "" if sha256 else checksums),
                ),
            )
        )
    groups, subids = job_user
    present = facts.runner_user_groups
    missing = [g for g in groups if present is None or g not in present]
    if present is None or missing or (subids and not facts.runner_user_subids):
        needs = [f"groups {', '.join(missing)}"] if missing else []
        needs += ["subuid/subgid ranges"] if subids and not facts.runner_user_subids else []
        verb = "create" if present is None else "update"
        changes.append(
            Change(
                "ensure-runner-user",
                f"{verb} user {RUNNER_USER}" + (f" ({'; '.join(needs)})" if needs else ""),
                (("groups", ",".join(groups)), ("subids", "yes" if subids else "")),
            )
        )
    if facts.runner_service in (None, "absent"):
        changes.append(
            Change(
                "install-runner-service",
                f"gitlab-runner install --user {RUNNER_USER} --working-directory {RUNNER_HOME}",
            )
        )
    return changes


def stale_registration(registered: RegisteredRunner, server: RunnerState | None) -> bool:
    """The host's config.toml entry points at a runner GitLab no longer has for this host
    (deleted on GitLab, or GitLab lists another id for it): `unregister` would get 403 and
    exit fatally; `verify --delete` drops it."""
    return server is None or registered.id != str(server.id)


def plan_gitlab(
    host: Host,
    facts: HostFacts,
    gitlab: GitLabSettings,
    server: RunnerState | None,
    *,
    rotate_token: bool = False,
    job_user: tuple[tuple[str, ...], bool] = ((), False),
) -> tuple[list[Change], tuple[str, ...]]:
    """The runner on the host and on GitLab: installed, registered ONCE under GitLab's runner
    id for this host (config.toml's `id` must be `server.id`), tagged, `concurrent` set, and
    its service running."""
    tags = desired_runner_tags(host, facts, gitlab)
    changes = plan_runner_host(facts, gitlab, job_user)
    upgrading = bool(facts.gitlab_runner) and facts.gitlab_runner != gitlab.runner_version
    registered = facts.runner_named(host.name)
    stale = registered is not None and stale_registration(registered, server)
    if server is None or registered is None or rotate_token or stale:
        if stale and registered is not None:
            changes.append(
                Change(
                    "verify-delete-runner",
                    f"runner #{registered.id or '?'} in config.toml is not on GitLab: "
                    "gitlab-runner verify --delete drops it",
                )
            )
        elif registered is not None:
            # Unregister first: it tells GitLab about the runner, which must still exist then.
            changes.append(Change("unregister-runner", f"unregister {host.name} on the host"))
        if server is not None:
            why = (
                "its host entry is stale"
                if stale
                else "--rotate-token"
                if rotate_token and registered
                else "not registered on the host"
            )
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
    else:
        if server.tags != tags or server.run_untagged or server.locked != gitlab.locked:
            changes.append(
                Change(
                    "update-runner",
                    f"runner #{server.id} tags {', '.join(server.tags) or '-'} -> "
                    f"{', '.join(tags)}",
                    (("id", str(server.id)), ("tags", ",".join(tags))),
                )
            )
        if facts.runner_config_mode not in (None, "600"):
            changes.append(
                Change(
                    "fix-runner-config-mode",
                    f"config.toml mode {facts.runner_config_mode} -> 600",
                )
            )
    if facts.runner_concurrent != gitlab.concurrent:
        changes.append(
            Change(
                "set-runner-concurrent",
                f"config.toml concurrent {facts.runner_concurrent or '-'} -> {gitlab.concurrent}",
                (("concurrent", str(gitlab.concurrent)),),
            )
        )
    if facts.runner_service != "running":
        changes.append(Change("start-runner-service", "start the gitlab-runner service"))
    elif upgrading:
        changes.append(
            Change("restart-runner-service", "restart the gitlab-runner service (new binary)")
        )
    return changes, tags


def plan_jenkins(
    host: Host,
    facts: HostFacts,
    jenkins: JenkinsSettings,
    server: NodeState | None,
    *,
    host_key: str | None = None,
) -> tuple[list[Change], tuple[str, ...]]:
    """The agent's changes. Java: `java` below jenkins.java_version (or none) plans an
    `install-java` of the OS package that gives it (toolkit/fleet/java.py), and an OS without
    one is refused here, at plan time, with what to do. Node: `host_key` ("algorithm base64",
    the key archfleet verified on its own SSH connection to the host) is compared with the
    node's manually provided key, so a reinstalled host (new key) plans an `update-node`."""
    from .java import java_package, no_package_message, parse_major
    from .jenkins_config import STRATEGIES

    labels = desired_agent_labels(host, facts, jenkins)
    executors = host.executors or jenkins.executors
    changes: list[Change] = []
    wanted_java = jenkins.java_version
    have = parse_major(facts.java)
    if have is None or have < wanted_java:
        package = java_package(facts.os_id, facts.os_version, wanted_java)
        if package is None:
            message = no_package_message(
                host.name, facts.os_id, facts.os_version, wanted_java, facts.java
            )
            raise PlanError(message)
        changes.append(
            Change(
                "install-java",
                f"install {package.package} ({package.manager}): the agent needs Java "
                f"{wanted_java}+, the host has {facts.java or 'none'}",
                (
                    ("package", package.package),
                    ("manager", package.manager),
                    ("major", str(wanted_java)),
                ),
            )
        )
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
        return changes, labels
    strategy = STRATEGIES[jenkins.host_key_verification]
    key_given = " ".join(host_key.split()) if host_key else None
    key_changed = server.host_key_strategy != strategy or (
        strategy == STRATEGIES["manual"] and key_given is not None and server.host_key != key_given
    )
    endpoint = host.jenkins_endpoint
    endpoint_changed = bool(server.launcher_host) and (
        (server.launcher_host, server.launcher_port) != endpoint
    )
    if (
        server.labels != labels
        or server.executors != executors
        or server.remote_root != jenkins.remote_root
        or server.credentials_id != jenkins.credentials_id
        or key_changed
        or endpoint_changed
    ):
        detail = (
            f"node {host.name}: labels {' '.join(server.labels) or '-'} -> "
            f"{' '.join(labels)}, executors {server.executors} -> {executors}"
        )
        if endpoint_changed:
            detail += (
                f", launcher {server.launcher_host}:{server.launcher_port} -> "
                f"{endpoint[0]}:{endpoint[1]}"
            )
        if key_changed:
            detail += f", host key check -> {jenkins.host_key_verification}"
            if key_given and server.host_key and server.host_key != key_given:
                detail += " (the host's key changed)"
        changes.append(Change("update-node", detail, wanted))
    return changes, labels


def plan_merge_tool(host: Host, facts: HostFacts, tool: ArchfleetSettings) -> list[Change]:
    """The pinned archfleet (toolkit/fleet/merge_tool.py): installed when absent or broken,
    replaced when the inventory pins another version (or another wheel of it: the sha256 its
    virtualenv records), linked onto PATH when only the link is missing; else nothing."""
    installed = facts.archfleet
    recorded = facts.archfleet_wheel_sha256
    other_wheel = recorded is not None and recorded != tool.sha256
    if installed == tool.version and not other_wheel:
        if facts.archfleet_linked:
            return []
        return [Change("link-merge-tool", f"link {LINK} -> {COMMAND} (archfleet on PATH)")]
    changes: list[Change] = []
    if not facts.python3_venv:
        has = f"python3 {facts.python3} without venv" if facts.python3 else "no python3"
        if not facts.apt_get:
            raise PlanError(
                f"{host.name}: archfleet needs python3 with its venv module (and ensurepip), the "
                f"host has {has}, and no apt-get to install it: install python3 (3.11+) with "
                "venv, then run again"
            )
        packages = "python3-venv" if facts.python3 else "python3 python3-venv"
        changes.append(
            Change(
                "install-python-venv",
                f"install {packages} (apt-get): archfleet gets a virtualenv, the host has {has}",
                (("packages", packages),),
            )
        )
    if installed is None:
        verb = (
            f"reinstall archfleet {tool.version} ({VENV} is there but does not run)"
            if facts.archfleet_venv
            else f"install archfleet {tool.version}"
        )
    elif installed != tool.version:
        verb = f"upgrade archfleet {installed} -> {tool.version}"
    else:
        verb = (
            f"reinstall archfleet {tool.version} (the inventory pins another wheel of it: "
            f"sha256 {tool.sha256[:12]}…, installed from {(recorded or '')[:12]}…)"
        )
    source = tool.wheel_url or f"{tool.wheel_path}, uploaded"
    index = f" from {tool.index_url}" if tool.index_url else ""
    changes.append(
        Change(
            "install-merge-tool",
            f"{verb} into {VENV} ({source}, sha256 {tool.sha256[:12]}…; dependencies from "
            f"{tool.requirements.name}{index} with --require-hashes), {LINK} on PATH",
            (("version", tool.version), ("sha256", tool.sha256), ("wheel", tool.wheel)),
        )
    )
    return changes


# The marker changes of a server side that could not be asked (a dry run without its token, or
# with the server unreachable): what the host needs is planned, the server's part is not.
NOT_CHECKED_KINDS = {"gitlab": "gitlab-not-checked", "jenkins": "jenkins-not-checked"}


def not_checked(side: str, reason: str) -> Change:
    """The plan's line for a server side it could not ask: says so, and what it would decide."""
    what = {
        "gitlab": "GitLab not checked ({reason}): whether its runner exists, is registered on "
        "the host and carries the tags is decided when GitLab can be asked",
        "jenkins": "Jenkins not checked ({reason}): whether its node exists with these labels "
        "is decided when Jenkins can be asked",
    }[side]
    return Change(NOT_CHECKED_KINDS[side], what.format(reason=reason), (("reason", reason),))


def plan_host(
    inventory: Inventory,
    host: Host,
    facts: HostFacts,
    *,
    runner: RunnerState | None = None,
    node: NodeState | None = None,
    rotate_token: bool = False,
    host_key: str | None = None,
    unchecked: Mapping[str, str] | None = None,
) -> HostPlan:
    """The host's ordered changes. `unchecked`: server sides ("gitlab", "jenkins") that could
    not be asked, with why (e.g. "no token"): their host part is planned (gitlab-runner's
    binary, user and service; Java for an agent), their server part is one not-checked line."""
    unchecked = unchecked or {}
    check_native(host, facts)
    # The builder is for the hosts that build; a merge-tool-only host merges on the registry.
    builds = host.has_role("gitlab-runner") or host.has_role("jenkins-agent")
    changes = plan_builder(inventory, facts) if builds else []
    if host.has_role("merge-tool") and inventory.archfleet:
        # Before the runner and the agent: once those are online, jobs may need the tool.
        changes += plan_merge_tool(host, facts, inventory.archfleet)
    tags: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    if host.has_role("gitlab-runner") and inventory.gitlab and "gitlab" in unchecked:
        changes += plan_runner_host(facts, inventory.gitlab, job_user_needs(inventory))
        changes.append(not_checked("gitlab", unchecked["gitlab"]))
        tags = desired_runner_tags(host, facts, inventory.gitlab)
    elif host.has_role("gitlab-runner") and inventory.gitlab:
        gitlab_changes, tags = plan_gitlab(
            host,
            facts,
            inventory.gitlab,
            runner,
            rotate_token=rotate_token,
            job_user=job_user_needs(inventory),
        )
        changes += gitlab_changes
    if host.has_role("jenkins-agent") and inventory.jenkins:
        jenkins_changes, labels = plan_jenkins(
            host, facts, inventory.jenkins, node, host_key=host_key
        )
        if "jenkins" in unchecked:
            # Java is the host's; the node (create or update) is the server's, unknown.
            jenkins_changes = [c for c in jenkins_changes if c.kind == "install-java"]
            jenkins_changes.append(not_checked("jenkins", unchecked["jenkins"]))
        changes += jenkins_changes
    return HostPlan(host, facts, tuple(changes), tags, labels)
