"""`archfleet doctor`: the preflight before provision-runners and the first pipeline. Thin:
load the inventory (the same --inventory, --limit and --accept-new-host-keys as the fleet
tasks, the same token sources as provision-runners), run toolkit/doctor, print the table or
--json; exit 1 when anything blocks."""

from __future__ import annotations

import os

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from .. import report
from .fleet import COMMON_HELP, SERVER_HELP, load_fleet


@task(
    help={
        **COMMON_HELP,
        **SERVER_HELP,
        "timeout": "Seconds to wait for each GitLab/Jenkins request (default 10); SSH uses "
        "the inventory's ssh.connect_timeout.",
    }
)
def doctor(
    c: Context,
    inventory: str = "inventory.yml",
    limit: str = "",
    workers: int = 8,
    json: bool = False,
    timeout: int = 10,
    no_gitlab: bool = False,
    no_jenkins: bool = False,
    accept_new_host_keys: bool = False,
) -> None:
    """Preflight: hosts (SSH hop, sudo, arch, builder, merge tool), GitLab, Jenkins, the tool
    image (gitlab.tool_image); each problem with its fix.

    Exit 1 on any blocker. Changes nothing (except known_hosts with --accept-new-host-keys)."""
    from ..doctor.checks import exit_code
    from ..doctor.output import host_progress, table, to_json
    from ..doctor.run import run_doctor

    if timeout <= 0:
        report.error(f"--timeout must be a positive number of seconds, not {timeout}")
        raise Exit(code=1)
    fleet = load_fleet(inventory, limit, accept_new_host_keys)
    checks = run_doctor(
        fleet,
        os.environ,
        workers=workers,
        timeout=timeout,
        gitlab=not no_gitlab,
        jenkins=not no_jenkins,
        on_host=None if json else host_progress,
    )
    if json:
        report.emit_json(to_json(checks))
    else:
        table(checks)
    if exit_code(checks):
        raise Exit(code=1)
