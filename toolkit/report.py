"""The only place that prints. Machine output (digests, JSON) on stdout; the merge, verify,
lab and publish summaries, notes, errors and progress on stderr; the fleet and inventory
tables on stdout (`_print_table`: what a person pipes into `less`; with --json they are not
printed at all).

Keeping stdout for the one value a CI job captures (`digest=$(archfleet merge-manifest …)`)
means the merge summaries never end up inside a variable. The merge/verify summaries are
plain aligned text (they land in CI logs, and a merge job should not pay rich's import); rich
draws the interactive tables and is imported only then.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only: the CLI starts without importing every subsystem
    from rich.console import Console

    from .fleet.facts import HostFacts
    from .fleet.parallel import Outcome
    from .fleet.provision import HostReport
    from .inventory import Inventory, NewHostKey
    from .lab.demo import DemoReport
    from .lab.fleet import ComponentStatus, Lab
    from .publish.gitlab_templates import PublishResult as GitLabPublishResult
    from .publish.jenkins_library import PublishResult as JenkinsPublishResult
    from .registry.engine import MergeResult
    from .registry.verify import VerifyReport


@cache
def _console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _print_table(table: Any, *, whole: Sequence[str] = ()) -> None:
    """A fleet table on STDOUT (`| less` sees it; errors and progress stay on stderr), laid
    out to fit: the `whole` columns (host names, addresses) are never wrapped or cut, every
    other column wraps, and a long word folds instead of ending in "…". Into a pipe or file
    rich would assume 80 columns: there the table gets the width it needs ($COLUMNS wins)."""
    import os

    from rich.console import Console
    from rich.text import Text

    def keep(names: Sequence[str]) -> None:
        for column in table.columns:
            column.overflow = "fold"
            whole_cells = column.header in names
            column.no_wrap = whole_cells
            column.min_width = None
            if whole_cells:
                cells = [Text.from_markup(str(cell)).cell_len for cell in column._cells]
                column.min_width = max([len(str(column.header)), *cells])

    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Measured without the 80-column cap rich assumes for a pipe.
        keep(whole)
        wide = console.measure(table, options=console.options.update_width(100_000))
        console = Console(highlight=False, width=max(80, wide.maximum))
    else:
        # The first of `whole` (the host) always; the others too where the terminal has room.
        keep(whole)
        needs = console.measure(table, options=console.options.update_width(100_000))
        if needs.minimum > console.width:
            keep(whole[:1])
    console.print(table)


def _failures(outcomes: Sequence[Outcome[Any]]) -> None:
    """Each failed host's error under its table, one line each, whole (on stdout, with the
    table: the report a person reads; stderr had them live, as each host finished)."""
    for outcome in outcomes:
        if not outcome.ok:
            sys.stdout.write(f"{outcome.host.name}: failed: {outcome.error}\n")


def _say(line: str = "") -> None:
    sys.stderr.write(line + "\n")


def _columns(rows: Sequence[Sequence[str]]) -> None:
    """Rows as aligned plain-text columns on stderr; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        _say(
            "  "
            + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def short(digest: str) -> str:
    """`sha256:0123456789ab`: enough to recognise, short enough for a table."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}:{encoded[:12]}"


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def emit_value(value: str) -> None:
    sys.stdout.write(value + "\n")


def error(message: str) -> None:
    _say(f"error: {message}")


def note(message: str) -> None:
    _say(f"note: {message}")


def confirm(question: str) -> bool:
    """Ask on the terminal (the prompt on stderr, like the tables); only y or yes goes ahead."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def host_key_recorded(recorded: NewHostKey) -> None:
    """--accept-new-host-keys trusted a key on first sight: say whose, so it can be checked."""
    note(
        f"{recorded.host}: recorded the new host key of {recorded.server} in "
        f"{recorded.known_hosts}: {recorded.key_type} {recorded.fingerprint}"
    )


def merge_summary(result: MergeResult) -> None:
    plan = result.plan
    mode = "dry run, nothing written" if result.dry_run else "merged"
    _say(f"{mode}: {', '.join(str(t) for t in plan.targets)}")
    rows = [["platform", "digest", "source"]]
    rows += [[str(c.platform), short(c.digest), c.source.text] for c in plan.children]
    rows += [["attestation", short(a.digest), ""] for a in plan.attestations]
    _columns(rows)
    for warning in plan.warnings:
        _say(f"warning: {warning}")
    verb = "would write" if result.dry_run else "wrote"
    if result.index_written:
        _say(f"{verb} index to: {', '.join(result.index_written)}")
    if result.index_unchanged:
        _say(f"already up to date: {', '.join(result.index_unchanged)}")
    if result.child_tags_written:
        _say(f"{verb} child tags: {', '.join(result.child_tags_written)}")
    _say(f"index {plan.digest} ({plan.media_type}); {result.registry_requests} registry requests")


def verify_summary(report: VerifyReport) -> None:
    _say(f"verify {report.target}")
    rows = [["platform", "digest", "config", "binary", "result"]]
    for child in report.children:
        binary = f"{child.binary} ({child.binary_architecture})" if child.binary else "-"
        rows.append(
            [
                str(child.claimed),
                short(child.digest),
                str(child.config_platform or "?"),
                binary,
                "ok" if not child.problems else "WRONG",
            ]
        )
    if report.children:
        _columns(rows)
    if report.ok:
        _say(f"ok: {report.target} = {report.digest}")
    else:
        for problem in report.all_problems:
            _say(f"problem: {problem}")


def progress(message: str) -> None:
    _console().print(f"[dim]·[/] {message}", soft_wrap=True)


def demo_json(result: DemoReport) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "registry": result.registry,
        "target": result.target,
        "kept": result.kept,
        "labDir": result.lab_dir,
        "inventory": result.inventory,
        "hosts": [
            {
                "host": h.host,
                "arch": h.arch,
                "machine": h.machine,
                "applied": h.applied,
                "planned": h.planned,
                "error": h.error,
            }
            for h in result.hosts
        ],
        "builds": [
            {
                "platform": b.platform,
                "host": b.host,
                "machine": b.machine,
                "digest": b.digest,
                "seconds": round(b.seconds, 2),
            }
            for b in result.builds
        ],
        "buildErrors": result.build_errors,
        "merge": result.merge.to_json() if result.merge else None,
        "mergeRequests": result.merge_requests,
        "verify": result.verify.to_json() if result.verify else None,
        "clients": [
            {
                "platform": c.platform,
                "expected": c.expected,
                "resolved": c.resolved,
                "ok": c.ok,
                "command": c.command,
            }
            for c in result.clients
        ],
    }


def demo_summary(result: DemoReport) -> None:
    from rich.table import Table

    table = Table(title=f"archfleet demo: {result.target}", title_justify="left")
    for column in ("host", "arch/uname", "build", "pushed", "ELF", "skopeo"):
        table.add_column(column, no_wrap=True)
    builds = {b.host: b for b in result.builds}
    checks = {c.platform: c for c in result.clients}
    children = {str(c.claimed): c for c in result.verify.children} if result.verify else {}
    for host in result.hosts:
        build = builds.get(host.host)
        if host.error or build is None:
            problem = host.error or next(
                (e for e in result.build_errors if e.startswith(f"{host.host}:")), "not built"
            )
            table.add_row(host.host, host.machine or "?", "[red]failed[/]", "", "", "")
            _console().print(f"[red]{host.host}:[/] {problem}", soft_wrap=True)
            continue
        child = children.get(build.platform)
        binary = child.binary_architecture if child and child.binary_architecture else "?"
        check = checks.get(build.platform)
        got = "?" if check is None else ("[green]its own[/]" if check.ok else "[red]WRONG[/]")
        table.add_row(
            host.host,
            f"{host.arch}/{build.machine}",
            f"{build.seconds:.1f} s",
            short(build.digest),
            binary,
            got,
        )
    _console().print(table)
    if result.merge:
        tags = result.merge.index_written + result.merge.child_tags_written
        _console().print(
            f"index {result.merge.plan.digest} written with {result.merge_requests} registry "
            f"requests (tags: {', '.join(tags) or 'already up to date'})",
            soft_wrap=True,
        )
    if result.verify and not result.verify.ok:
        for problem in result.verify.all_problems:
            _console().print(f"[red]problem:[/] {problem}", soft_wrap=True)
    if result.kept:
        _console().print(f"the lab is still up ({result.lab_dir}); see for yourself:")
        for check in result.clients:
            _console().print(f"  {check.command}", soft_wrap=True)
        _console().print(
            f"  archfleet fleet-facts --inventory {result.inventory}\n  archfleet lab.down",
            soft_wrap=True,
        )
    else:
        _console().print("with --keep the lab stays up, and you can see for yourself:")
        for check in result.clients:
            _console().print(f"  {check.command}", soft_wrap=True)
    _console().print("[green]ok[/]" if result.ok else "[red]failed[/]")


def lab_json(lab: Lab) -> dict[str, Any]:
    return {
        "dir": str(lab.directory),
        "registry": lab.registry.address,
        "baseImage": lab.base_image,
        "inventory": str(lab.inventory),
        "knownHosts": str(lab.known_hosts),
        "key": str(lab.key),
        "hosts": [
            {
                "name": h.name,
                "arch": h.arch,
                "address": h.address,
                "port": h.port,
                "pid": h.pid,
                "hostKey": h.host_key_fingerprint,
            }
            for h in lab.hosts
        ],
    }


def lab_summary(lab: Lab) -> None:
    from rich.table import Table

    table = Table(title=f"archfleet lab: {lab.directory}", title_justify="left")
    for column in ("part", "arch", "address", "pid"):
        table.add_column(column)
    table.add_row("registry", "-", lab.registry.url, str(lab.registry.pid))
    for host in lab.hosts:
        table.add_row(host.name, host.arch, f"root@{host.address}:{host.port}", str(host.pid))
    _console().print(table)
    _console().print(
        f"inventory {lab.inventory}; base image {lab.base_image}\n"
        f"try: archfleet fleet-facts --inventory {lab.inventory}\n"
        f"     ssh -i {lab.key} -o UserKnownHostsFile={lab.known_hosts} -p "
        f"{lab.hosts[0].port} root@{lab.hosts[-1].address} uname -m\n"
        "stop: archfleet lab.down",
        soft_wrap=True,
    )


def lab_status_table(directory: Any, parts: Sequence[ComponentStatus]) -> None:
    if not parts:
        _say(f"no lab at {directory} (start one: archfleet lab.up)")
        return
    rows = [["part", "state", "detail"]]
    rows += [[p.name, "running" if p.running else "DOWN", p.detail] for p in parts]
    _say(f"lab at {directory}:")
    _columns(rows)


def inventory_summary(inventory: Inventory) -> None:
    from rich.table import Table

    table = Table(title=f"{inventory.path}: {len(inventory.hosts)} hosts", title_justify="left")
    for column in ("host", "address", "declared arch", "roles", "extra tags/labels"):
        table.add_column(column)
    for host in inventory.hosts:
        table.add_row(
            host.name,
            f"{host.ssh.user}@{host.address}:{host.ssh.port}",
            host.declared_arch or "(detect)",
            ", ".join(host.roles),
            ", ".join((*host.tags, *host.labels)) or "-",
        )
    _print_table(table, whole=("host", "address"))


def host_done(outcome: Outcome[Any]) -> None:
    """Live progress, one line per host as it finishes."""
    _say(f"{outcome.host.name}: {'ok' if outcome.ok else 'FAILED: ' + str(outcome.error)}")


_STEP_LOCK = threading.Lock()


def step(host: str, message: str) -> None:
    """Live progress of one host's step as it starts (`arm64-1: install-runner: ……`), on
    stderr, one whole line per write: the hosts' threads never interleave within a line."""
    with _STEP_LOCK:
        sys.stderr.write(f"{host}: {message}…\n")
        sys.stderr.flush()


def step_printer(host: str) -> Callable[[str], None]:
    """`step` for one host, as provision_host's `progress` takes it."""
    return lambda message: step(host, message)


def fleet_json(command: str, hosts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The one JSON shape of the fleet tasks (fleet-facts, provision-runners, runners-status,
    deprovision-runners): `command`, `ok` (every host succeeded), `hosts` (each with `host`,
    `ok`, `error` — null when ok — and the task's own fields), then the task's extras
    (`servers`, `arches`)."""
    return {
        "command": command,
        "ok": all(h.get("ok") for h in hosts),
        "hosts": hosts,
        **extra,
    }


def facts_json(name: str, facts: HostFacts | None, error: str | None) -> dict[str, Any]:
    if facts is None:
        return {"host": name, "ok": False, "error": error}
    return {
        "host": name,
        "ok": True,
        "error": None,
        "machine": facts.machine,
        "platform": str(facts.platform),
        "arch": facts.arch,
        "os": f"{facts.os_id} {facts.os_version}".strip(),
        "emulators": list(facts.emulators),
        "docker": facts.docker,
        "buildx": facts.buildx,
        "buildah": facts.buildah,
        "umoci": facts.umoci,
        "skopeo": facts.skopeo,
        "gitlabRunner": facts.gitlab_runner,
        "runners": [{"id": r.id, "name": r.name} for r in facts.runners],
        "java": facts.java,
        "diskFreeKb": facts.disk_free_kb,
        # The merge-tool role's archfleet: its `--version` (None: not installed, or broken).
        "archfleet": facts.archfleet,
        "archfleetBroken": facts.archfleet_venv and facts.archfleet is None,
        "python3": facts.python3,
    }


def facts_table(outcomes: Sequence[Outcome[HostFacts]]) -> None:
    from rich.table import Table

    table = Table(title="fleet facts", title_justify="left")
    columns = ("host", "arch", "os", "builder", "gitlab-runner", "java", "archfleet", "emulates")
    for column in (*columns, "result"):
        table.add_column(column)
    for outcome in outcomes:
        facts = outcome.value
        if facts is None:
            table.add_row(outcome.host.name, "-", "-", "-", "-", "-", "-", "-", "[red]failed[/]")
            continue
        builders = [
            f"{name} {version}"
            for name, version in (
                ("buildah", facts.buildah),
                ("docker", facts.docker),
                ("umoci", facts.umoci),
            )
            if version
        ]
        builder = ", ".join(builders) or "-"
        table.add_row(
            outcome.host.name,
            f"{facts.arch} ({facts.machine})",
            f"{facts.os_id} {facts.os_version}",
            builder,
            facts.gitlab_runner or "-",
            facts.java or "-",
            facts.archfleet or ("[yellow]broken[/]" if facts.archfleet_venv else "-"),
            ", ".join(e.removeprefix("qemu-") for e in facts.emulators) or "no",
            "[green]ok[/]",
        )
    _print_table(table, whole=("host", "arch", "gitlab-runner", "java", "archfleet", "result"))
    _failures(outcomes)


def fleet_summary(
    what: str,
    outcomes: Sequence[Outcome[HostReport]],
    arches: dict[str, dict[str, bool | None]] | None = None,
    *,
    server_states: bool = True,
) -> None:
    """The per-host table; with `server_states`, each host's GitLab runner and Jenkins agent
    as the servers saw them before this run (deprovision has no such state to show)."""
    from rich.table import Table

    table = Table(title=f"{what}: {len(outcomes)} hosts", title_justify="left")
    columns = ["host", "arch", "changes", "gitlab runner", "jenkins agent", "result"]
    if not server_states:
        columns = [c for c in columns if c not in ("gitlab runner", "jenkins agent")]
    for column in columns:
        table.add_column(column)
    for outcome in outcomes:
        host = outcome.value
        if host is None:
            # The error goes under the table, whole: a table cell would wrap it to a sliver.
            failed = [outcome.host.name, "-", "-", "[red]failed (below)[/]"]
            table.add_row(*failed[:3], *(["-", "-"] if server_states else []), failed[3])
            continue
        done = host.applied or host.planned
        result = "no change" if not host.planned else ("applied" if host.applied else "planned")
        extra = []
        if host.runner_service not in (None, "running"):
            extra.append(f"[yellow]runner service {host.runner_service}[/]")
        if host.archfleet:
            extra.append(f"archfleet {host.archfleet}")
        if host.emulates:
            extra.append("can emulate")
        states = [_runner_cell(outcome), _agent_cell(outcome)] if server_states else []
        table.add_row(
            host.host,
            f"{host.arch} ({host.machine})",
            "\n".join(done) or "-",
            *states,
            "; ".join([f"[green]{result}[/]", *extra]),
        )
    _print_table(table, whole=("host", "arch", "gitlab runner", "jenkins agent", "result"))
    _failures(outcomes)
    if arches:
        missing = {"gitlab": "NO online runner", "jenkins": "NO online agent"}
        for arch, sides in arches.items():
            parts = [
                f"{side}: {'ready' if ok else missing[side] if ok is False else 'not checked'}"
                for side, ok in sides.items()
            ]
            sys.stdout.write(f"{arch}: {', '.join(parts)}\n")


# A host's runner / agent as the servers saw it before this run. "off": that side is left out
# (--no-gitlab, no gitlab: section, no token), so nothing was asked — not the same as a server
# that was asked and has none ("not registered") or has one that is not connected ("offline").
ONLINE, OFFLINE, NOT_REGISTERED, SIDE_OFF = "online", "offline", "not registered", "off"
# A dry run that could not ask the server (no token, unreachable): "not checked (no token)".
NOT_CHECKED = "not checked"


def runner_state(outcome: Outcome[HostReport]) -> str | None:
    """None: the host has no gitlab-runner role."""
    host = outcome.value
    if host is None or not outcome.host.has_role("gitlab-runner"):
        return None
    if "gitlab" in host.not_checked:
        return f"{NOT_CHECKED} ({host.not_checked['gitlab']})"
    if host.runner_online is None:
        return SIDE_OFF
    # The plan creates a runner exactly when GitLab has none for this host, or the host's
    # config.toml holds none (toolkit/fleet/plan.py): either way no job can reach it.
    if any(change.startswith("create-runner:") for change in host.planned):
        return NOT_REGISTERED
    return ONLINE if host.runner_online else OFFLINE


def agent_state(outcome: Outcome[HostReport]) -> str | None:
    """None: the host has no jenkins-agent role."""
    host = outcome.value
    if host is None or not outcome.host.has_role("jenkins-agent"):
        return None
    if "jenkins" in host.not_checked:
        return f"{NOT_CHECKED} ({host.not_checked['jenkins']})"
    if host.agent_online is None:
        return SIDE_OFF
    if any(change.startswith("create-node:") for change in host.planned) and not host.applied:
        return NOT_REGISTERED
    return ONLINE if host.agent_online else OFFLINE


def server_states_json(outcome: Outcome[HostReport]) -> dict[str, str | None]:
    """`runner`/`agent`: online, offline, not-registered, off (side left out), not-checked
    (a dry run could not ask; the host's `notChecked` says why), null (no role)."""

    def spelled(state: str | None) -> str | None:
        if state and state.startswith(NOT_CHECKED):
            return "not-checked"
        return state.replace(" ", "-") if state else None

    return {"runner": spelled(runner_state(outcome)), "agent": spelled(agent_state(outcome))}


_STYLE = {ONLINE: "green", OFFLINE: "yellow", NOT_REGISTERED: "yellow", SIDE_OFF: "dim"}


def _runner_cell(outcome: Outcome[HostReport]) -> str:
    state = runner_state(outcome)
    if state is None:
        return "-"
    host = outcome.value
    if host is not None and any(c.startswith("create-runner:") for c in host.applied):
        return "registered now"
    return f"[{_STYLE.get(state, 'yellow')}]{state}[/]"


def _agent_cell(outcome: Outcome[HostReport]) -> str:
    """The Jenkins agent as Jenkins last said: a node this run created or updated is read right
    after it was saved, when an SSH agent is usually still being launched."""
    state = agent_state(outcome)
    if state is None:
        return "-"
    host = outcome.value
    saved = host is not None and any(
        c.startswith(("create-node:", "update-node:")) for c in host.applied
    )
    if state == OFFLINE and saved:
        return "not yet online"
    return f"[{_STYLE.get(state, 'yellow')}]{state}[/]"


def templates_summary_lines(result: GitLabPublishResult) -> list[str]:
    """What was (or, with --dry-run, would be) done, one line per step."""
    plan = result.plan
    if not plan.changes:
        return [f"{result.project} {plan.version}: already published with these files; no change"]
    would = "would " if result.dry_run else ""
    lines = []
    if plan.actions:
        what = f"commit {result.commit[:12]}" if result.commit else "one commit"
        verb = "write" if result.dry_run else "wrote"
        lines.append(f"{would}{verb} {what} on {plan.branch}: {len(plan.actions)} file action(s)")
    if plan.create_tag:
        at = f" at {result.tagged[:12]}" if result.tagged else ""
        lines.append(f"{would}{'tag' if result.dry_run else 'tagged'} {plan.version}{at}")
    else:
        lines.append(f"tag {plan.version} already holds these files")
    # No release here: the tag's pipeline makes it with the `release:` keyword (next_steps).
    return lines


def templates_publish_summary(result: GitLabPublishResult) -> None:
    from rich.table import Table

    mode = "dry run — nothing written" if result.dry_run else "published"
    table = Table(title=f"{mode}: {result.project} {result.plan.version}", title_justify="left")
    table.add_column("action")
    table.add_column("path")
    for action in result.plan.actions:
        table.add_row(action.action, action.path)
    if result.plan.actions:
        _console().print(table)
    for line in templates_summary_lines(result):
        _console().print(line, soft_wrap=True)
    _console().print(
        "GitLab without CI/CD components:\n" + result.legacy_include.rstrip(), soft_wrap=True
    )


def jenkins_publish_summary(result: JenkinsPublishResult) -> None:
    from rich.table import Table

    mode = "dry run — nothing written" if result.dry_run else "published"
    table = Table(title=f"{mode}: {result.jenkins}", title_justify="left")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("action")
    table.add_column("what differs")
    for change in result.plan.changes:
        verb = (
            change.action
            if not result.dry_run or change.action == "unchanged"
            else (f"would {change.action}")
        )
        table.add_row(change.kind, change.name, verb, "\n".join(change.differences))
    _console().print(table)
    if not result.plan.changed:
        _console().print("already up to date; nothing written")
