"""Tasks: inventory-schema (for editors), inventory-check (validate a fleet file)."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from .. import report


@task()
def inventory_schema(c: Context) -> None:
    """Print the inventory's JSON Schema (point your editor's YAML support at it)."""
    from ..inventory import SCHEMA  # jsonschema is slow to import; only these tasks need it

    report.emit_json(SCHEMA)


@task(help={"inventory": "The fleet file (YAML) to check."})
def inventory_check(c: Context, inventory: str = "inventory.yml") -> None:
    """Validate an inventory file: every problem with its file, line and key path."""
    from ..inventory import InventoryError, load

    try:
        loaded = load(inventory)
    except InventoryError as exc:
        for problem in exc.problems:
            report.error(problem)
        raise Exit(code=1) from None
    report.inventory_summary(loaded)
