"""The doctor's output: a table on stdout (the report IS the output, so `| less` and `> file`
get it; progress goes to stderr), or `--json`: the list of rows as objects."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from .checks import Check
from .host import HostProbe

_STYLE = {"ok": "green", "warn": "yellow", "blocker": "bold red"}


def host_progress(outcome: Any) -> None:
    """One line on stderr per host as its probe finishes."""
    probe: HostProbe | None = outcome.value
    if probe is None:
        state = f"probe failed: {outcome.error}"
    elif probe.ssh is not None:
        state = f"SSH failed at the {probe.ssh.failed.role}"
    else:
        state = "probed"
    sys.stderr.write(f"{outcome.host.name}: {state}\n")


def to_json(checks: Sequence[Check]) -> list[dict[str, str]]:
    return [c.to_json() for c in checks]


def summary(checks: Sequence[Check]) -> str:
    counts = {s: sum(1 for c in checks if c.status == s) for s in ("ok", "warn", "blocker")}
    verdict = (
        "fix the blockers, then run doctor again"
        if counts["blocker"]
        else "nothing blocks provisioning or the pipelines"
    )
    return (
        f"{counts['blocker']} blocker(s), {counts['warn']} warning(s), {counts['ok']} ok: {verdict}"
    )


def table(checks: Sequence[Check]) -> None:
    """Every cell wraps instead of being cut: an address or a fix is never hidden. Cells are
    Text, not markup: a detail like `[Errno 111]` or `[::1]:22` is printed as it is."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    grid = Table()
    grid.add_column("check", overflow="fold")
    grid.add_column("target", overflow="fold")
    grid.add_column("status", no_wrap=True)
    grid.add_column("detail", overflow="fold", ratio=3)
    grid.add_column("fix", overflow="fold", ratio=2)
    for c in checks:
        grid.add_row(
            Text(c.check),
            Text(c.target),
            Text(c.status, style=_STYLE[c.status]),
            Text(c.detail),
            Text(c.fix or "-"),
        )
    console.print(grid)
    console.print(Text(summary(checks)))
