"""Tasks on the fleet over SSH. (provision-runners, runners-status and deprovision-runners
build on these facts: see issue 3.)"""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from .. import report


@task(
    help={
        "inventory": "The fleet file (YAML).",
        "limit": "Only these hosts: name,name.",
        "workers": "Hosts handled at once (default 8).",
        "json": "Print the facts as JSON on stdout.",
    }
)
def fleet_facts(
    c: Context,
    inventory: str = "inventory.yml",
    limit: str = "",
    workers: int = 8,
    json: bool = False,
) -> None:
    """Read every host's facts (real arch, OS, emulators, build tools, runners) over SSH."""
    from ..fleet.connect import ConnectError
    from ..fleet.facts import FactsError
    from ..fleet.gather import gather_facts
    from ..fleet.parallel import for_each_host
    from ..inventory import InventoryError, load

    try:
        fleet = load(inventory)
        if limit:
            fleet = fleet.limited(limit.split(","))
    except InventoryError as exc:
        for problem in exc.problems:
            report.error(problem)
        raise Exit(code=1) from None
    outcomes = for_each_host(
        fleet.hosts,
        gather_facts,
        workers=workers,
        expected=(ConnectError, FactsError),
        on_done=None if json else report.host_done,
    )
    if json:
        report.emit_json([report.facts_json(o.host.name, o.value, o.error) for o in outcomes])
    else:
        report.facts_table(outcomes)
    if not all(o.ok for o in outcomes):
        raise Exit(code=1)
