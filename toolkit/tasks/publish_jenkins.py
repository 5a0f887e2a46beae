"""Task: publish-jenkins-library. Thin: flags and credentials in, the publisher, the report out."""

from __future__ import annotations

import os

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from .. import report

USER_ENV = "JENKINS_USER"
TOKEN_ENV = "JENKINS_API_TOKEN"  # noqa: S105 -- the variable's name, not a token
DEFAULT_JOB = "archfleet-multiarch-example"


@task(
    help={
        "jenkins": "Jenkins URL (default: $JENKINS_URL). Credentials: $JENKINS_USER and "
        "$JENKINS_API_TOKEN (an administrator: the script console needs it); never printed.",
        "library-repo": "Git URL of the repository holding the library (this repository).",
        "library-name": "Name pipelines use in @Library('NAME') (default archfleet).",
        "library-version": "Default version: the branch or tag loaded without @NAME@VERSION "
        "(default main).",
        "library-path": "Directory of the library inside the repository (default jenkins/).",
        "library-credentials-id": "Jenkins credentials id to clone the repository with "
        "(default: none, a public repository).",
        "job": f"Name of the example Pipeline job (default {DEFAULT_JOB}).",
        "job-script-path": "Jenkinsfile the example job runs, in the library repository "
        "(default jenkins/Jenkinsfile.example).",
        "allow-version-override": "Let pipelines pick another version with "
        "@Library('NAME@VERSION') (default off: that code runs as a trusted library, outside "
        "the Groovy sandbox, so anyone who can push a branch could run code as Jenkins).",
        "skip-job": "Register the library only; no example job.",
        "dry-run": "Read Jenkins and print the plan; write nothing.",
        "json": "Print the result as JSON on stdout.",
    },
)
def publish_jenkins_library(
    c: Context,
    jenkins: str = "",
    library_repo: str = "",
    library_name: str = "archfleet",
    library_version: str = "main",
    library_path: str = "jenkins/",
    library_credentials_id: str = "",
    allow_version_override: bool = False,
    job: str = DEFAULT_JOB,
    job_script_path: str = "jenkins/Jenkinsfile.example",
    skip_job: bool = False,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Register the shared library in Jenkins (Global Pipeline Library) + an example job."""
    # Imported here: every `archfleet` start loads this module; jenkinsapi is slow to import.
    from ..publish.jenkins_library import (
        JenkinsServer,
        JobSpec,
        LibrarySpec,
        PublishError,
        publish,
    )

    try:
        url = jenkins or os.environ.get("JENKINS_URL", "")
        if not url:
            raise PublishError("--jenkins is required (or $JENKINS_URL): the Jenkins URL")
        library = LibrarySpec(
            name=library_name,
            remote=library_repo,
            default_version=library_version,
            library_path=library_path,
            credentials_id=library_credentials_id,
            allow_version_override=allow_version_override,
        )
        example = None
        if not skip_job:
            example = JobSpec(
                name=job,
                remote=library_repo,
                branch=library_version,
                script_path=job_script_path,
                credentials_id=library_credentials_id,
                library=library_name,
            )
        user = os.environ.get(USER_ENV, "")
        token = os.environ.get(TOKEN_ENV, "")
        if not user or not token:
            raise PublishError(
                f"set {USER_ENV} and {TOKEN_ENV} (an API token of a Jenkins administrator: "
                "registering a Global Pipeline Library goes through the script console)"
            )
        server = JenkinsServer(url, user, token)
        result = publish(server, library, example, dry_run=dry_run)
    except PublishError as exc:
        report.error(str(exc))
        raise Exit(code=1) from None
    if json:
        report.emit_json(result.to_json())
    else:
        report.jenkins_publish_summary(result)
