"""The Invoke collection behind both `invoke` (tasks.py) and the `archfleet` console script."""

from invoke.collection import Collection

from . import (
    demo,
    discover,
    doctor,
    extras,
    flags,
    fleet,
    inventory,
    jenkins_casc,
    lab,
    manifest,
    publish_jenkins,
    publish_templates,
    registry_tools,
)

namespace = Collection()
namespace.add_task(manifest.merge_manifest)
namespace.add_task(manifest.verify_manifest)
namespace.add_task(demo.demo)
namespace.add_collection(lab.namespace)
namespace.add_task(inventory.inventory_schema)
namespace.add_task(inventory.inventory_check)
namespace.add_task(fleet.fleet_facts)
namespace.add_task(fleet.provision_runners)
namespace.add_task(fleet.runners_status)
namespace.add_task(fleet.deprovision_runners)
namespace.add_task(doctor.doctor)
namespace.add_task(publish_templates.publish_templates)
namespace.add_task(publish_jenkins.publish_jenkins_library)
namespace.add_task(jenkins_casc.jenkins_casc)
namespace.add_task(discover.discover_images)
namespace.add_task(registry_tools.check_bases)
namespace.add_task(registry_tools.inspect_manifest)
# The registry tasks and discover-images run on the lean base install; the rest say which
# extra to add.
extras.require_fleet(
    namespace,
    lean={
        "merge-manifest",
        "verify-manifest",
        "discover-images",
        "check-bases",
        "inspect-manifest",
    },
)
# No short flag means two things: only the few conventions in flags.SHORT_FLAGS have one.
flags.apply_short_flags(namespace)

__all__ = ["namespace"]
