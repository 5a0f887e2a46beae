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


@task(
    help={
        "inventory": "The fleet file (YAML) to check.",
        "json": "Print the problems as a JSON list of {file, line, key, message, severity}.",
    }
)
def inventory_check(c: Context, inventory: str = "inventory.yml", json: bool = False) -> None:
    """Validate an inventory file: every problem in file order with its line and key path."""
    from ..inventory import Inventory, InventoryError, Problem, load

    # Stricter than the other tasks' load: a key or ssh config file that does not exist here
    # is an error (they warn: a run limited to other hosts does not need it).
    loaded: Inventory | None = None
    try:
        loaded = load(inventory, strict_files=True)
        problems: list[Problem] = list(loaded.warnings)
    except InventoryError as exc:
        problems = exc.items
    if json:
        report.emit_json([p.to_json() for p in problems])
    else:
        for problem in problems:
            if problem.severity == "error":
                report.error(str(problem))
            else:
                report.note(str(problem))
        if loaded is not None:
            report.inventory_summary(loaded)
    if loaded is None:
        raise Exit(code=1)
