"""Task: publish-templates. Thin: flags and credentials in, the publisher, the report out."""

from __future__ import annotations

import os
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from .. import __version__, report

DEFAULT_TOKEN_ENV = "GITLAB_TOKEN"  # noqa: S105 -- the variable's name, not a token


@task(
    help={
        "project": "The templates project, GROUP/PROJECT (a CI/CD catalog project).",
        "version": f"Version to publish: this archfleet's, {__version__} (the git tag).",
        "wheel": f"The archfleet {__version__} wheel (archfleet-{__version__}-py3-none-any.whl) "
        "the project's tag pipeline builds the tool image from; committed under image/.",
        "url": "GitLab base URL, https://... (required unless $CI_SERVER_URL is set).",
        "allow-http": "Accept an http:// --url (a lab server): the token travels unencrypted.",
        "branch": "Branch to commit to (default: the project's default branch).",
        "token-env": "Environment variable holding the access token (api scope; default "
        "GITLAB_TOKEN). The token is never printed.",
        "source": "The ci-templates directory (default: the one shipped with archfleet).",
        "dry-run": "Read the project and print the plan; write nothing.",
        "json": "Print the result as JSON on stdout.",
    },
)
def publish_templates(
    c: Context,
    project: str = "",
    version: str = "",
    wheel: str = "",
    url: str = "",
    allow_http: bool = False,
    branch: str = "",
    token_env: str = DEFAULT_TOKEN_ENV,
    source: str = "",
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Put ci-templates/ in a GitLab project: one commit and a version tag; its pipeline
    builds the tool image and creates the catalog release."""
    # Imported here: every `archfleet` start loads this module; python-gitlab is slow to import.
    from requests import RequestException

    from ..ci_templates import TemplateError, default_root
    from ..publish.component_project import ProjectFilesError, read_wheel
    from ..publish.gitlab_templates import (
        GitLabProject,
        PublishError,
        check_server_url,
        check_version,
        connect,
        network_reason,
        publish,
        server_host,
    )

    base_url = ""
    try:
        if not project:
            raise PublishError("--project is required: the templates project, GROUP/PROJECT")
        check_version(version)
        if not wheel:
            raise PublishError(
                f"--wheel is required: the archfleet {__version__} wheel the templates project's "
                "pipeline builds the tool image from. Build it from the archfleet source with "
                "`python -m pip wheel --no-deps -w dist .` (then --wheel "
                f"dist/archfleet-{__version__}-py3-none-any.whl), or pass the released wheel"
            )
        tool_wheel = read_wheel(Path(wheel))
        base_url = check_server_url(
            url or os.environ.get("CI_SERVER_URL", ""), allow_http=allow_http
        )
        host = server_host(base_url)
        token = os.environ.get(token_env, "")
        if not token:
            raise PublishError(
                f"${token_env} is empty: set it to a GitLab access token with the api scope "
                "(or name another variable with --token-env)"
            )
        root = Path(source) if source else default_root()
        target = GitLabProject(connect(base_url, token), project)
        result = publish(
            target, root, tool_wheel, version, host=host, branch=branch, dry_run=dry_run
        )
    except (PublishError, TemplateError, ProjectFilesError) as exc:
        report.error(str(exc))
        raise Exit(code=1) from None
    except RequestException as exc:
        # Unreachable, refused, timed out: one line naming the server, no traceback.
        report.error(f"GitLab at {base_url} is unreachable: {network_reason(exc)}")
        raise Exit(code=1) from None
    if json:
        report.emit_json(result.to_json())
        return
    report.templates_publish_summary(result)
    for line in (*result.next_steps(), *result.warnings):
        report.note(line)
    report.emit_value(result.include.rstrip())
