"""Tasks on the fleet over SSH: fleet-facts, provision-runners, runners-status,
deprovision-runners. Thin: load the inventory, connect the servers, run per host in
parallel, print the per-host summary; exit 0 only when every host succeeded.

provision-runners also installs the pinned archfleet on hosts with the merge-tool role
(toolkit/fleet/merge_tool.py); runners-status reports its version (JSON `archfleet`).
deprovision-runners leaves it installed: it removes registrations, not tools."""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from .. import report

if TYPE_CHECKING:
    from ..fleet.gitlab_runner import GitLabRunners
    from ..fleet.jenkins_agent import JenkinsNodes
    from ..fleet.provision import ServerLookups, Servers
    from ..inventory import Host, Inventory

COMMON_HELP = {
    "inventory": "The fleet file (YAML).",
    "limit": "Only these hosts: names or globs, comma-separated (build-1,arm64-*).",
    "workers": "Hosts handled at once (default 8).",
    "json": "Print the result as JSON on stdout.",
    "accept-new-host-keys": "Accept the SSH key of a host that the inventory's known_hosts has "
    "no entry for, and record it there (like OpenSSH's accept-new); a changed key is still "
    "refused.",
}
SERVER_HELP = {
    "no-gitlab": "Leave the GitLab side out (no server reachable, e.g. the lab).",
    "no-jenkins": "Leave the Jenkins side out.",
}


def load_fleet(inventory: str, limit: str, accept_new_host_keys: bool) -> Inventory:
    """The inventory every fleet task (and doctor) works on: loaded and checked (each problem
    printed, exit 1), narrowed by --limit, with --accept-new-host-keys applied."""
    from ..inventory import InventoryError, load

    try:
        fleet = load(inventory)
    except InventoryError as exc:
        for problem in exc.problems:
            report.error(problem)
        raise Exit(code=1) from None
    for warning in fleet.warnings:  # e.g. a key file that does not exist (yet)
        report.note(f"warning: {warning}")
    if limit:
        try:
            names = limit_names([h.name for h in fleet.hosts], limit)
        except ValueError as exc:
            report.error(f"{fleet.path}: {exc}")
            raise Exit(code=1) from None
        fleet = fleet.limited(names)
    return _accepting_new_host_keys(fleet) if accept_new_host_keys else fleet


def limit_names(hosts: Sequence[str], limit: str) -> list[str]:
    """The host names `--limit` selects, in inventory order: comma-separated names or shell
    globs (fnmatch, case-sensitive: `arm64-*`, `build-[12]`). A pattern that selects no host
    is an error naming it and the hosts there are (a typo must not quietly shrink the run)."""
    patterns = [p.strip() for p in limit.split(",") if p.strip()]
    if not patterns:
        raise ValueError(f"--limit {limit!r} names no host")
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(h, p) for h in hosts)]
    if unmatched:
        raise ValueError(
            f"--limit {', '.join(unmatched)} matches no host (hosts: {', '.join(hosts)})"
        )
    return [h for h in hosts if any(fnmatch.fnmatchcase(h, p) for p in patterns)]


def _accepting_new_host_keys(fleet: Inventory) -> Inventory:
    """The fleet with --accept-new-host-keys on every host: new keys are recorded in the
    known_hosts file the inventory names, and each one is reported."""
    nowhere = [host.name for host in fleet.hosts if host.ssh.known_hosts is None]
    if nowhere:
        report.error(
            f"--accept-new-host-keys records keys in the inventory's known_hosts file, and "
            f"{fleet.path} sets none for {', '.join(nowhere)}: set ssh.known_hosts "
            "(for all hosts, or per host)"
        )
        raise Exit(code=1)
    return replace(
        fleet,
        hosts=tuple(
            replace(host, ssh=replace(host.ssh, accept_new_host_keys=report.host_key_recorded))
            for host in fleet.hosts
        ),
    )


# Seconds per request to GitLab or Jenkins (connect, and each wait for data): a server that
# does not answer ends a command in seconds, in one line.
SERVER_TIMEOUT = 15


def _servers(
    fleet: Inventory, *, no_gitlab: bool, no_jenkins: bool, dry_run: bool = False
) -> Servers:
    """The server sides in use, each asked ONCE here (GitLab lists its runners, Jenkins its
    nodes), so an unreachable server or a refused token is one line, not one per host.
    Without --dry-run that line is an error (exit 1). With --dry-run it is a note, and the
    side is planned as far as the hosts go and marked "not checked (why)"."""
    from ..fleet.errors import GitLabRunnerError, JenkinsAgentError
    from ..fleet.provision import Servers

    wants = {role for host in fleet.hosts for role in host.roles}
    # python-gitlab and jenkinsapi are imported only for a side that is on.
    runners: GitLabRunners | None = None
    nodes: JenkinsNodes | None = None
    unchecked: list[tuple[str, str]] = []

    def cannot(side: str, exc: Exception) -> None:
        if not dry_run:
            report.error(str(exc))
            raise Exit(code=1)
        why = _why_not_checked(str(exc))
        unchecked.append((side, why))
        report.note(f"{side_name[side]} side not checked ({why}): {exc}")

    side_name = {"gitlab": "GitLab", "jenkins": "Jenkins"}
    if fleet.gitlab and "gitlab-runner" in wants and not no_gitlab:
        try:
            from ..fleet.gitlab_runner import GitLabRunners

            runners = GitLabRunners.from_settings(fleet.gitlab, os.environ, timeout=SERVER_TIMEOUT)
            # One listing of the scope's runners, cached for every host's lookup: a GitLab
            # that cannot be reached or refuses the token says so here, once. (A name no
            # runner has: `find` lists, and looks at no runner's details.)
            runners.find("\x00archfleet: listing the runners once")
        except GitLabRunnerError as exc:
            runners = None
            cannot("gitlab", exc)
    if fleet.jenkins and "jenkins-agent" in wants and not no_jenkins:
        try:
            from ..fleet.jenkins_agent import JenkinsNodes

            # Lists the nodes once (its check that Jenkins answers and takes the credentials).
            nodes = JenkinsNodes.from_settings(fleet.jenkins, os.environ, timeout=SERVER_TIMEOUT)
        except JenkinsAgentError as exc:
            nodes = None
            cannot("jenkins", exc)
    checked_off = dict(unchecked)
    if runners is None and "gitlab-runner" in wants and "gitlab" not in checked_off:
        report.note("GitLab side off: no runner is created, registered or checked on GitLab")
    if nodes is None and "jenkins-agent" in wants and "jenkins" not in checked_off:
        report.note("Jenkins side off: no agent node is created or checked on Jenkins")
    return Servers(runners, nodes, tuple(unchecked))


def _why_not_checked(message: str) -> str:
    """Why a side could not be asked, in two or three words for the tables."""
    if "no GitLab token" in message or "needs a user and an API token" in message:
        return "no token"
    if "cannot reach" in message:
        return "unreachable"
    if "refused" in message or "HTTP 401" in message or "HTTP 403" in message:
        return "token refused"
    return "server error"


def _run_hosts(
    fleet: Inventory,
    work: Callable[[Any, Callable[[str], None]], Any],
    workers: int,
    quiet: bool,
    meanwhile: Callable[[], None] | None = None,
) -> Any:
    """`work(host, say)` per host in parallel; `say` reports the host's steps as they start
    (live on a terminal, plain lines elsewhere, nothing with --json: toolkit/progress.py)."""
    from ..fleet.errors import HOST_ERRORS
    from ..fleet.parallel import for_each_host
    from ..progress import host_progress

    with host_progress([host.name for host in fleet.hosts], quiet=quiet) as progress:
        return for_each_host(
            fleet.hosts,
            lambda host: work(host, progress.printer(host.name)),
            workers=workers,
            expected=HOST_ERRORS,
            on_done=progress.done,
            meanwhile=meanwhile,
        )


def _run_with_servers(
    fleet: Inventory,
    work: Callable[[Host, ServerLookups, Callable[[str], None]], Any],
    workers: int,
    json: bool,
    *,
    no_gitlab: bool,
    no_jenkins: bool,
    dry_run: bool = False,
) -> tuple[Any, Servers]:
    """Run `work` per host while the server sides are set up and looked up (ServerLookups):
    the hosts connect and read their facts meanwhile, and wait for the servers only where
    they need them. A server side that cannot be set up is reported once (exit 1), and no
    host gets past its facts."""
    from ..fleet.provision import ServerLookups

    with ServerLookups() as lookups:

        def set_up() -> None:
            try:
                servers = _servers(
                    fleet, no_gitlab=no_gitlab, no_jenkins=no_jenkins, dry_run=dry_run
                )
            except BaseException:
                lookups.fail()
                raise
            lookups.start(servers, fleet.hosts, workers=workers)
            if not json:
                _load_table_modules()

        outcomes = _run_hosts(
            fleet, lambda host, say: work(host, lookups, say), workers, json, meanwhile=set_up
        )
        return outcomes, lookups.servers()


def _load_table_modules() -> None:
    """The summary table's modules, imported while the hosts are still being waited for."""
    from rich import console, table  # noqa: F401


@task(help=COMMON_HELP)
def fleet_facts(
    c: Context,
    inventory: str = "inventory.yml",
    limit: str = "",
    workers: int = 8,
    json: bool = False,
    accept_new_host_keys: bool = False,
) -> None:
    """Read every host's facts (real arch, OS, emulators, build tools, runners) over SSH."""
    from ..fleet.gather import gather_facts

    outcomes = _run_hosts(
        load_fleet(inventory, limit, accept_new_host_keys),
        lambda host, say: gather_facts(host),
        workers,
        json,
    )
    if json:
        report.emit_json(
            report.fleet_json(
                "fleet-facts", [report.facts_json(o.host.name, o.value, o.error) for o in outcomes]
            )
        )
    else:
        report.facts_table(outcomes)
    if not all(o.ok for o in outcomes):
        raise Exit(code=1)


@task(
    help={
        **COMMON_HELP,
        **SERVER_HELP,
        "dry-run": "Print each host's ordered changes; change nothing.",
        "rotate-token": "Re-create and re-register each runner (new authentication token).",
    }
)
def provision_runners(
    c: Context,
    inventory: str = "inventory.yml",
    limit: str = "",
    workers: int = 8,
    dry_run: bool = False,
    rotate_token: bool = False,
    json: bool = False,
    no_gitlab: bool = False,
    no_jenkins: bool = False,
    accept_new_host_keys: bool = False,
) -> None:
    """Native runners/agents tagged with their real arch, pinned archfleet on merge-tool hosts.

    Plan, then apply; --dry-run prints the plan."""
    from ..fleet.provision import provision_host

    fleet = load_fleet(inventory, limit, accept_new_host_keys)
    outcomes, servers = _run_with_servers(
        fleet,
        lambda host, servers, say: provision_host(
            fleet, host, servers, dry_run=dry_run, rotate_token=rotate_token, progress=say
        ),
        workers,
        json,
        no_gitlab=no_gitlab,
        no_jenkins=no_jenkins,
        dry_run=dry_run,
    )
    _finish(
        "provision" if not dry_run else "plan (dry run)",
        outcomes,
        json,
        command="provision-runners",
        servers=servers,
    )


@task(help={**COMMON_HELP, **SERVER_HELP})
def runners_status(
    c: Context,
    inventory: str = "inventory.yml",
    limit: str = "",
    workers: int = 8,
    json: bool = False,
    no_gitlab: bool = False,
    no_jenkins: bool = False,
    accept_new_host_keys: bool = False,
) -> None:
    """Facts and server state per host, and per arch: is an online runner/agent there?

    Exit 1 when a host fails or an arch the inventory has gets no online runner or agent."""
    from ..fleet.provision import status_host

    fleet = load_fleet(inventory, limit, accept_new_host_keys)
    outcomes, servers = _run_with_servers(
        fleet,
        lambda host, servers, say: status_host(fleet, host, servers),
        workers,
        json,
        no_gitlab=no_gitlab,
        no_jenkins=no_jenkins,
    )
    host_arches = {o.host.name: _arch_of(o) for o in outcomes}
    tags = sorted({arch for arch in host_arches.values() if arch})
    arches = arch_readiness(
        fleet.hosts,
        host_arches,
        # Asked for every arch tag, so an arch with no runner at all reads False, not absent.
        servers.runners.online_by_tag(tags) if servers.runners else None,
        servers.nodes.online_by_label() if servers.nodes else None,
    )
    _finish("status", outcomes, json, arches=arches, command="runners-status", servers=servers)
    if not all(ready is not False for sides in arches.values() for ready in sides.values()):
        raise Exit(code=1)


def _arch_of(outcome: Any) -> str | None:
    """The arch a host really is (its facts), else the one the inventory declares: a host
    that cannot be reached still leaves its arch to be covered."""
    if outcome.value is not None and outcome.value.arch:
        return str(outcome.value.arch)
    declared: str | None = outcome.host.declared_arch
    return declared


def arch_readiness(
    hosts: Sequence[Host],
    host_arches: Mapping[str, str | None],
    runners_online: Mapping[str, bool] | None,
    nodes_online: Mapping[str, bool] | None,
) -> dict[str, dict[str, bool | None]]:
    """Per arch of the inventory's hosts: does GitLab have an online runner tagged with it,
    Jenkins an online agent labelled with it? None: nothing to ask there — that side is off
    (`None` given), or no host of this arch has that role."""
    sides = {
        "gitlab": ("gitlab-runner", runners_online),
        "jenkins": ("jenkins-agent", nodes_online),
    }
    table: dict[str, dict[str, bool | None]] = {}
    for arch in sorted({a for a in host_arches.values() if a}):
        of_arch = [h for h in hosts if host_arches.get(h.name) == arch]
        table[arch] = {
            side: (
                online.get(arch, False)
                if online is not None and any(h.has_role(role) for h in of_arch)
                else None
            )
            for side, (role, online) in sides.items()
        }
    return table


@task(
    help={
        **COMMON_HELP,
        **SERVER_HELP,
        "dry-run": "Print what would be removed; remove nothing.",
        "yes": "Remove without asking (needed when stdin is not a terminal, e.g. in CI).",
    }
)
def deprovision_runners(
    c: Context,
    inventory: str = "inventory.yml",
    limit: str = "",
    workers: int = 8,
    dry_run: bool = False,
    json: bool = False,
    no_gitlab: bool = False,
    no_jenkins: bool = False,
    accept_new_host_keys: bool = False,
    yes: bool = False,
) -> None:
    """Unregister each host's runner and delete it on GitLab; delete its Jenkins node.

    Asks first on a terminal; elsewhere needs --yes (or --dry-run)."""
    from ..fleet.provision import deprovision_host

    fleet = load_fleet(inventory, limit, accept_new_host_keys)
    if not dry_run and not yes:
        _confirm_deprovision(fleet, no_gitlab=no_gitlab, no_jenkins=no_jenkins)
    outcomes, servers = _run_with_servers(
        fleet,
        lambda host, servers, say: deprovision_host(fleet, host, servers, dry_run=dry_run),
        workers,
        json,
        no_gitlab=no_gitlab,
        no_jenkins=no_jenkins,
        dry_run=dry_run,
    )
    _finish("deprovision", outcomes, json, command="deprovision-runners", servers=servers)


def _confirm_deprovision(fleet: Inventory, *, no_gitlab: bool, no_jenkins: bool) -> None:
    """Deleting runners and nodes cannot be undone: a person at a terminal says yes first;
    without a terminal (CI, a pipe) there is nobody to ask, so --yes must say it."""
    names = ", ".join(host.name for host in fleet.hosts)
    sides = [
        side
        for side, off in (("GitLab runners", no_gitlab), ("Jenkins nodes", no_jenkins))
        if not off
    ]
    what = f"unregister and delete the {' and '.join(sides) or 'host registrations'} of {names}"
    if not sys.stdin.isatty():
        report.error(
            f"deprovision-runners would {what}; stdin is not a terminal, so nobody can confirm: "
            "pass --yes to go ahead, or --dry-run to see what would be removed"
        )
        raise Exit(code=1)
    if not report.confirm(f"{what}?"):
        report.note("nothing removed")
        raise Exit(code=1)


def _finish(
    what: str,
    outcomes: Any,
    json: bool,
    arches: dict[str, dict[str, bool | None]] | None = None,
    *,
    command: str = "",
    servers: Servers | None = None,
) -> None:
    """The result: the per-host table on stdout (or JSON there, the shape every fleet task
    shares: report.fleet_json); exit 1 unless every host succeeded."""
    states = what != "deprovision"  # its reports carry no before-run server state
    if json:
        hosts = [
            {
                "host": o.host.name,
                "ok": True,
                "error": None,
                **o.value.to_json(),
                **(report.server_states_json(o) if states else {}),
            }
            if o.value
            else {"host": o.host.name, "ok": False, "error": o.error}
            for o in outcomes
        ]
        extra: dict[str, Any] = {}
        if servers is not None:
            extra["servers"] = _servers_json(servers)
        if arches is not None:
            extra["arches"] = arches
        report.emit_json(report.fleet_json(command, hosts, **extra))
    else:
        report.fleet_summary(what, outcomes, arches, server_states=states)
    if not all(o.ok for o in outcomes):
        raise Exit(code=1)


def _servers_json(servers: Servers) -> dict[str, Any]:
    """Each side: "on" (asked), "off" (left out) or "not-checked" (a dry run could not ask;
    `notChecked` says why)."""
    unchecked = servers.not_checked
    sides: dict[str, Any] = {}
    for side, on in (("gitlab", servers.runners), ("jenkins", servers.nodes)):
        sides[side] = "not-checked" if side in unchecked else ("on" if on else "off")
    sides["notChecked"] = unchecked
    return sides
