"""Task: jenkins-casc. Thin: the inventory and library flags in, the CasC YAML out."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from .. import report


@task(
    help={
        "inventory": "The fleet file (YAML).",
        "library-repo": "Git URL of the shared library's repository: adds "
        "unclassified.globalLibraries (as publish-jenkins-library registers it); none: nodes only.",
        "library-name": "Name pipelines use in @Library('NAME') (default archfleet).",
        "library-version": "Default version, a branch or tag (default main).",
        "library-path": "Directory of the library inside the repository (default jenkins/).",
        "library-credentials-id": "Jenkins credentials id to clone the repository with "
        "(default: none, a public repository).",
    }
)
def jenkins_casc(
    c: Context,
    inventory: str = "inventory.yml",
    library_repo: str = "",
    library_name: str = "archfleet",
    library_version: str = "main",
    library_path: str = "jenkins/",
    library_credentials_id: str = "",
) -> None:
    """Print the Configuration-as-Code YAML of the inventory's Jenkins agents (+ the library)."""
    from ..fleet.jenkins_casc import CascError, host_keys, plan_casc, render, ssh_hops
    from ..inventory import InventoryError, load
    from ..publish.jenkins_library import LibrarySpec, PublishError

    try:
        loaded = load(inventory)
        library = None
        if library_repo:
            library = LibrarySpec(
                name=library_name,
                remote=library_repo,
                default_version=library_version,
                library_path=library_path,
                credentials_id=library_credentials_id,
            )
        agents = [h for h in loaded.hosts if h.has_role("jenkins-agent")]
        plan = plan_casc(loaded, host_keys(agents), library, hops=ssh_hops(agents))
    except InventoryError as exc:
        for problem in exc.problems:
            report.error(problem)
        raise Exit(code=1) from None
    except CascError as exc:
        for problem in exc.problems:
            report.error(problem)
        raise Exit(code=1) from None
    except PublishError as exc:
        report.error(str(exc))
        raise Exit(code=1) from None
    report.emit_value(render(plan, str(loaded.path)).rstrip("\n"))
    if library is None:
        report.note("no --library-repo: unclassified.globalLibraries left out")
