"""The Invoke collection behind both `invoke` (tasks.py) and the `archfleet` console script."""

from invoke.collection import Collection

from . import demo, fleet, inventory, manifest

namespace = Collection()
namespace.add_task(manifest.merge_manifest)
namespace.add_task(manifest.verify_manifest)
namespace.add_task(demo.demo)
namespace.add_task(inventory.inventory_schema)
namespace.add_task(inventory.inventory_check)
namespace.add_task(fleet.fleet_facts)

__all__ = ["namespace"]
