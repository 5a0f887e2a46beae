"""Task: demo — the whole pattern on this machine, with a summary at the end."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from .. import report
from .lab import (
    ADDRESS_HELP,
    DIR_HELP,
    PORT_HELP,
    check_prerequisites,
    errors_reported,
    lab_directory,
    lab_errors,
)


@task(
    help={
        "keep": "Leave the lab (registry and hosts) running afterwards, to explore.",
        "json": "Print the summary as JSON on stdout.",
        "dir": DIR_HELP,
        "first-address": ADDRESS_HELP,
        "port": PORT_HELP,
        "app": "The app to build (a directory with a Containerfile; default: examples/app).",
    }
)
def demo(
    c: Context,
    keep: bool = False,
    json: bool = False,
    dir: str = "",
    first_address: str = "127.0.0.51",
    port: int = 2222,
    app: str = "",
) -> None:
    """Lab fleet, provisioning, a native build on each host, merge, verify, skopeo per arch."""
    # Imported here: `archfleet merge-manifest` should not pay for the lab at start-up.
    from ..lab.containerfile import ContainerfileError
    from ..lab.demo import SAMPLE_APP, DemoError, run_demo
    from ..lab.skopeo import SkopeoError

    check_prerequisites()
    expected: tuple[type[Exception], ...] = (
        *lab_errors(),
        DemoError,
        ContainerfileError,
        SkopeoError,
    )
    with errors_reported(expected):
        result = run_demo(
            lab_directory(dir),
            report.progress,
            keep=keep,
            app=Path(app) if app else SAMPLE_APP,
            first_address=first_address,
            port=port,
        )
    if json:
        report.emit_json(report.demo_json(result))
    else:
        report.demo_summary(result)
    if not result.ok:
        raise Exit(code=1)
