"""The Invoke collection behind both `invoke` (tasks.py) and the `archfleet` console script."""

from invoke.collection import Collection

from . import manifest

namespace = Collection()
namespace.add_task(manifest.merge_manifest)
namespace.add_task(manifest.verify_manifest)

__all__ = ["namespace"]
