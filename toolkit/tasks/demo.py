"""Task: demo — the whole pattern on this machine, with a summary at the end."""

from __future__ import annotations

import tempfile
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from .. import report


@task(
    help={
        "keep": "Leave the registry running afterwards, to explore (its address is printed).",
        "json": "Print the summary as JSON on stdout.",
    }
)
def demo(c: Context, keep: bool = False, json: bool = False) -> None:
    """Run the story on this machine: per-arch builds, push by digest, merge, verify, skopeo."""
    # Imported here: `archfleet merge-manifest` should not pay for the lab at start-up.
    from ..lab.cache import cache_dir
    from ..lab.demo import run_demo
    from ..lab.images import ImageBuildError
    from ..lab.prereqs import missing_prerequisites
    from ..lab.registry import RegistryStartError
    from ..lab.skopeo import SkopeoError
    from ..registry.commands import USER_ERRORS

    problems = missing_prerequisites()
    if problems:
        for problem in problems:
            report.error(problem)
        raise Exit(code=1)
    workdir = Path(tempfile.mkdtemp(prefix="demo-", dir=cache_dir())) if keep else None
    with tempfile.TemporaryDirectory(prefix="archfleet-demo-") as tmp:
        try:
            result = run_demo(workdir or Path(tmp), report.progress, keep=keep)
        except (ImageBuildError, RegistryStartError, SkopeoError, *USER_ERRORS) as exc:
            report.error(str(exc))
            raise Exit(code=1) from None
    if json:
        report.emit_json(report.demo_json(result))
    else:
        report.demo_summary(result)
    if not result.ok:
        raise Exit(code=1)
