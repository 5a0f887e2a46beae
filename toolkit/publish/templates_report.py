"""Printing for publish-templates: the plan and its outcome as a table on stderr (stdout keeps
the `include:` snippet a user pastes, or the JSON)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .gitlab_templates import PublishResult

_err = Console(stderr=True, highlight=False)


def summary_lines(result: PublishResult) -> list[str]:
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
    if plan.create_release:
        lines.append(f"{would}{'create' if result.dry_run else 'created'} release {plan.version}")
    return lines


def publish_summary(result: PublishResult) -> None:
    mode = "dry run — nothing written" if result.dry_run else "published"
    table = Table(title=f"{mode}: {result.project} {result.plan.version}", title_justify="left")
    table.add_column("action")
    table.add_column("path")
    for action in result.plan.actions:
        table.add_row(action.action, action.path)
    if result.plan.actions:
        _err.print(table)
    for line in summary_lines(result):
        _err.print(line, soft_wrap=True)
    _err.print(
        "GitLab without CI/CD components:\n" + result.legacy_include.rstrip(), soft_wrap=True
    )
