"""Publish ci-templates/ to a GitLab templates project: one commit and a version tag.

What is committed (toolkit/publish/component_project.py): the component, its include variant
and README.md, with `archfleet_image`'s default rendered to the tool image of this version in
the project's own registry (the Projects API's `container_registry_image_prefix`,
doc/api/projects.md); the project's pipeline as `.gitlab-ci.yml`; and image/ (Containerfile,
requirements.txt and the archfleet wheel, a binary file sent with `encoding: base64`,
doc/api/commits.md). The version tag starts that pipeline, which builds the tool image and
creates the release with the `release:` keyword: GitLab's CI/CD Catalog takes a version only
from a release made that way, not from the Releases API (doc/ci/components/_index.md, "Publish
a new release"). So publish-templates never creates a release; it says where to watch it made.

`plan_publish` is pure: the files we want, what the project holds (its branch and the version
tag, as git blob ids from the repository tree) -> the commit actions and the tag.
`GitLabProject` is the only code that talks to GitLab (python-gitlab); `publish` joins them.

Idempotent: a version already tagged with exactly these files needs nothing; a version tagged
with other files (another wheel too) is refused before anything is written. Only the paths we
manage (templates/, include/, image/, README.md, .gitlab-ci.yml) are created, updated or
deleted; other files of the project stay as they are.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlparse

import gitlab
from gitlab import exceptions as gl_errors

from .. import __version__
from ..ci_templates import COMPONENT, INCLUDE_PATH, render_tool_image_default
from .component_project import LICENSE_PATH, PROJECT_PIPELINE, ToolWheel, project_files

MANAGED_DIRS = ("templates/", "include/", "image/")
# The catalog shows a project's README and LICENSE (doc/ci/components/_index.md, "Directory
# structure": README.md, LICENSE.md or LICENSE, templates/).
MANAGED_FILES = ("README.md", LICENSE_PATH, PROJECT_PIPELINE)
# The CI/CD catalog takes semantic versions without a `v`.
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
# Seconds for one request (connect and each read): a server that does not answer in that time
# is reported, not waited for.
_TIMEOUT_SECONDS = 10

ActionKind = Literal["create", "update", "delete"]


class PublishError(RuntimeError):
    """Publishing cannot go on; the message says what to do. Never contains the token."""


class VersionConflictError(PublishError):
    """The version is already tagged with different templates."""


def git_blob_id(content: bytes | str) -> str:
    """The id git (and GitLab's tree API) gives a file with this content."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def is_text(content: bytes) -> bool:
    """Sent as `text` (UTF-8 without NUL) or else as `base64` (a wheel)."""
    if b"\0" in content:
        return False
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def is_managed(path: str) -> bool:
    return path in MANAGED_FILES or path.startswith(MANAGED_DIRS)


def validate_version(version: str) -> str:
    if not _SEMVER.match(version):
        raise PublishError(
            f"--version {version!r}: expected a semantic version X.Y.Z (e.g. 1.4.0, 2.0.0-rc.1), "
            "without a leading v, as the CI/CD catalog requires"
        )
    return version


def check_version(version: str) -> str:
    """`--version` must be this archfleet's: the templates, the project pipeline and the wheel
    it builds the tool image from are all of it, and the preflight requires it."""
    validate_version(version)
    if version != __version__:
        raise PublishError(
            f"--version {version}: this is archfleet {__version__}, whose templates require the "
            f"archfleet {__version__} tool. Publish them as --version {__version__}, or publish "
            f"{version} with archfleet {version}"
        )
    return version


@dataclass(frozen=True)
class FileAction:
    action: ActionKind
    path: str
    content: bytes | None = None
    # The file's last commit on the branch (update/delete): GitLab refuses the commit if the
    # file changed since we read it.
    last_commit_id: str | None = None

    def to_api(self) -> dict[str, str]:
        """One `actions[]` entry of POST /projects/:id/repository/commits (doc/api/commits.md):
        text as is, anything else base64 with `encoding: base64`."""
        data = {"action": self.action, "file_path": self.path}
        if self.content is not None:
            if is_text(self.content):
                data["content"] = self.content.decode("utf-8")
            else:
                data["content"] = base64.b64encode(self.content).decode("ascii")
                data["encoding"] = "base64"
        if self.last_commit_id:
            data["last_commit_id"] = self.last_commit_id
        return data


def plan_actions(desired: Mapping[str, bytes], remote: Mapping[str, str]) -> tuple[FileAction, ...]:
    """Actions that make the managed files of `remote` (path -> blob id) equal `desired`."""
    actions = []
    for path in sorted(desired):
        if not is_managed(path):
            raise PublishError(
                f"{path}: not a path the publisher manages ({', '.join(MANAGED_DIRS)}, "
                f"{', '.join(MANAGED_FILES)})"
            )
        if path not in remote:
            actions.append(FileAction("create", path, desired[path]))
        elif remote[path] != git_blob_id(desired[path]):
            actions.append(FileAction("update", path, desired[path]))
    actions.extend(
        FileAction("delete", path)
        for path in sorted(remote)
        if is_managed(path) and path not in desired
    )
    return tuple(actions)


@dataclass(frozen=True)
class ProjectState:
    """What the templates project holds, read before anything is planned."""

    branch: str
    # path -> blob id on the branch (empty for an empty repository).
    branch_files: Mapping[str, str]
    # The commit the version tag points at, and its files; None when there is no such tag.
    tag_commit: str | None
    tag_files: Mapping[str, str] | None
    # Only reported: the tag pipeline creates the release, never publish-templates.
    release_exists: bool


@dataclass(frozen=True)
class PublishPlan:
    version: str
    branch: str
    actions: tuple[FileAction, ...]
    create_tag: bool

    @property
    def changes(self) -> bool:
        return bool(self.actions or self.create_tag)


def plan_publish(version: str, desired: Mapping[str, bytes], state: ProjectState) -> PublishPlan:
    validate_version(version)
    if not desired:
        raise PublishError("nothing to publish: no template files")
    if state.tag_commit is not None:
        differences = plan_actions(desired, state.tag_files or {})
        if differences:
            listed = ", ".join(f"{a.path} ({a.action})" for a in differences)
            raise VersionConflictError(
                f"version {version} is already tagged (commit {state.tag_commit[:12]}) with "
                f"different templates: {listed}. A published version never changes; publish "
                "these as a new version"
            )
        return PublishPlan(version, state.branch, (), False)
    actions = plan_actions(desired, state.branch_files)
    return PublishPlan(version, state.branch, actions, True)


def server_host(url: str) -> str:
    """`https://gitlab.example.com:8443/` -> `gitlab.example.com:8443` (CI_SERVER_FQDN)."""
    parsed = urlparse(url)
    if not parsed.scheme or not parsed.netloc:
        raise PublishError(
            f"--url {url!r}: expected the GitLab base URL, e.g. https://gitlab.example.com"
        )
    return parsed.netloc


def check_server_url(url: str, *, allow_http: bool = False) -> str:
    """The GitLab base URL the token may go to: https (http only when told, for a lab), no
    credentials, query or fragment in it. There is no default server: a token meant for an
    internal GitLab must never travel to gitlab.com because a flag was forgotten."""
    if not url:
        raise PublishError(
            "no GitLab URL: pass --url https://gitlab.example.com (or run where CI_SERVER_URL "
            "is set); there is no default server, so the token goes nowhere by accident"
        )
    parsed = urlparse(url)
    server_host(url)
    if parsed.scheme not in ("https", "http"):
        raise PublishError(f"--url {url!r}: expected an https:// URL")
    if parsed.scheme == "http" and not allow_http:
        raise PublishError(
            f"--url {url!r}: plain http would send the token unencrypted; use https, or pass "
            "--allow-http for a lab server"
        )
    if parsed.username or parsed.password or parsed.query or parsed.fragment:
        raise PublishError(
            f"--url: expected only scheme, host, port and path (no credentials, query or "
            f"fragment) in {parsed.scheme}://{parsed.hostname}…"
        )
    return url.rstrip("/")


def network_reason(exc: Exception) -> str:
    """One line from a requests error (its text nests the whole connection pool's story)."""
    text = str(exc)
    for pattern in (r"\[Errno -?\d+\] [^'\")]+", r"[Rr]ead timed out[^'\")]*", r"timed out"):
        found = re.search(pattern, text)
        if found:
            return found.group(0).rstrip(". ")
    return type(exc).__name__


def include_snippet(host: str, project: str, version: str) -> str:
    return f"include:\n  - component: {host}/{project}/{COMPONENT}@{version}\n"


def legacy_include_snippet(project: str, version: str) -> str:
    return f"include:\n  - project: {project}\n    ref: {version}\n    file: /{INCLUDE_PATH}\n"


def pipelines_url(web_url: str, version: str) -> str:
    """The project's pipelines of the version tag (the UI's `ref` filter)."""
    return f"{web_url}/-/pipelines?ref={quote(version, safe='')}"


def release_url(web_url: str, version: str) -> str:
    return f"{web_url}/-/releases/{quote(version, safe='')}"


# --- GitLab I/O (python-gitlab) ----------------------------------------------------------------


def connect(url: str, token: str) -> gitlab.Gitlab:
    """A client bound to `url`: bounded timeouts, no retry loop on an unreachable server (python-
    gitlab's retry_transient_errors retries connection errors up to 10 times with back-off: the
    1 m 43 s hang of issue 17), and `keep_base_url`, so a `Link: next` header that names another
    host is not followed with the token."""
    return gitlab.Gitlab(
        url,
        private_token=token,
        timeout=_TIMEOUT_SECONDS,
        retry_transient_errors=False,
        keep_base_url=True,
    )


class GitLabProject:
    """The templates project, through python-gitlab; every error becomes a PublishError."""

    def __init__(self, client: gitlab.Gitlab, path: str) -> None:
        self._url = client.url
        try:
            self._project = client.projects.get(path)
        except gl_errors.GitlabAuthenticationError:
            raise PublishError(
                f"{self._url}: the token was refused (401); it needs the api scope and "
                "Maintainer access to the project (the token is not shown)"
            ) from None
        except gl_errors.GitlabGetError as exc:
            raise PublishError(
                f"project {path!r} on {self._url}: {_reason(exc)} (does it exist, and can the "
                "token see it?)"
            ) from None
        except gl_errors.GitlabError as exc:
            raise PublishError(f"{self._url}: {_reason(exc)}") from None

    @property
    def path(self) -> str:
        return str(self._project.path_with_namespace)

    @property
    def default_branch(self) -> str:
        branch = self._project.default_branch
        return str(branch) if branch else "main"

    @property
    def web_url(self) -> str:
        return str(self._project.attributes.get("web_url") or f"{self._url}/{self.path}")

    @property
    def description(self) -> str:
        return str(self._project.attributes.get("description") or "")

    def registry_path(self) -> str:
        """The project's CI_REGISTRY_IMAGE: `container_registry_image_prefix` of the Projects
        API, which GitLab sends only when the instance has a container registry
        (lib/api/entities/project.rb); the project's registry feature must be on as well."""
        attributes = self._project.attributes
        level = attributes.get("container_registry_access_level")
        enabled = attributes.get("container_registry_enabled")
        if level == "disabled" or (level is None and enabled is False):
            raise PublishError(
                f"project {self.path} has its container registry turned off; the tag pipeline "
                "pushes the archfleet tool image there. Turn it on (Settings > General > "
                "Visibility, project features, permissions > Container registry)"
            )
        prefix = attributes.get("container_registry_image_prefix")
        if not prefix:
            raise PublishError(
                f"{self._url} reports no container registry for project {self.path} (the "
                "Projects API has no container_registry_image_prefix): the instance's registry "
                "is off, and the tag pipeline needs it for the archfleet tool image"
            )
        return str(prefix)

    def files(self, ref: str) -> dict[str, str] | None:
        """Path -> blob id of every file at `ref`; None when the ref does not exist."""
        try:
            tree = self._project.repository_tree(ref=ref, recursive=True, get_all=True)
        except gl_errors.GitlabGetError as exc:
            if exc.response_code == 404:
                return None
            raise self._error(f"reading the tree of {ref}", exc) from None
        return {str(e["path"]): str(e["id"]) for e in tree if e.get("type") == "blob"}

    def tag_commit(self, tag: str) -> str | None:
        try:
            found = self._project.tags.get(tag)
        except gl_errors.GitlabGetError as exc:
            if exc.response_code == 404:
                return None
            raise self._error(f"reading tag {tag}", exc) from None
        return str(found.commit["id"])

    def release_exists(self, tag: str) -> bool:
        try:
            self._project.releases.get(tag)
        except gl_errors.GitlabGetError as exc:
            if exc.response_code == 404:
                return False
            raise self._error(f"reading release {tag}", exc) from None
        return True

    def last_commit_id(self, path: str, ref: str) -> str:
        try:
            return str(self._project.files.get(file_path=path, ref=ref).last_commit_id)
        except gl_errors.GitlabError as exc:
            raise self._error(f"reading {path} at {ref}", exc) from None

    def branch_head(self, branch: str) -> str:
        try:
            return str(self._project.branches.get(branch).commit["id"])
        except gl_errors.GitlabError as exc:
            raise self._error(f"reading branch {branch}", exc) from None

    def commit(self, branch: str, message: str, actions: tuple[FileAction, ...]) -> str:
        data = {
            "branch": branch,
            "commit_message": message,
            "actions": [a.to_api() for a in actions],
        }
        try:
            return str(self._project.commits.create(data).id)
        except gl_errors.GitlabError as exc:
            raise self._error(f"committing {len(actions)} file actions to {branch}", exc) from None

    def create_tag(self, tag: str, ref: str, message: str) -> None:
        try:
            self._project.tags.create({"tag_name": tag, "ref": ref, "message": message})
        except gl_errors.GitlabError as exc:
            raise self._error(f"creating tag {tag} at {ref[:12]}", exc) from None

    def _error(self, doing: str, exc: gl_errors.GitlabError) -> PublishError:
        return PublishError(f"{self._url}, project {self.path}: {doing}: {_reason(exc)}")


def _reason(exc: gl_errors.GitlabError) -> str:
    code = f"HTTP {exc.response_code}: " if exc.response_code else ""
    return f"{code}{exc.error_message}"


def read_state(project: GitLabProject, version: str, branch: str) -> ProjectState:
    tag_commit = project.tag_commit(version)
    tag_files = project.files(tag_commit) if tag_commit else None
    return ProjectState(
        branch=branch,
        branch_files=project.files(branch) or {},
        tag_commit=tag_commit,
        tag_files=tag_files,
        release_exists=project.release_exists(version),
    )


@dataclass(frozen=True)
class PublishResult:
    project: str
    plan: PublishPlan
    dry_run: bool
    include: str
    legacy_include: str
    web_url: str
    # archfleet_image's default in the published templates.
    tool_image: str
    release_exists: bool
    warnings: tuple[str, ...] = ()
    commit: str | None = None
    tagged: str | None = None

    @property
    def pipelines_url(self) -> str:
        return pipelines_url(self.web_url, self.plan.version)

    @property
    def release_url(self) -> str:
        return release_url(self.web_url, self.plan.version)

    def next_steps(self) -> list[str]:
        """Where the release comes from and where to watch it, one line each."""
        version = self.plan.version
        if self.release_exists:
            return [f"release {version} exists: {self.release_url}"]
        work = (
            f"builds, merges and verifies the tool image {self.tool_image}, then creates "
            f"release {version} for the CI/CD Catalog"
        )
        if self.plan.create_tag:
            starts = "would start" if self.dry_run else "starts"
            return [
                f"tag {version} {starts} its pipeline, which {work}: watch {self.pipelines_url}"
            ]
        return [
            f"release {version} does not exist yet: the pipeline of tag {version} {work}. Watch "
            f"it, or retry it if it failed, at {self.pipelines_url} (publish-templates never "
            "creates releases)"
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "version": self.plan.version,
            "branch": self.plan.branch,
            "dryRun": self.dry_run,
            "changed": self.plan.changes and not self.dry_run,
            "actions": [{"action": a.action, "path": a.path} for a in self.plan.actions],
            "commit": self.commit,
            "tagCreated": self.plan.create_tag,
            "tagged": self.tagged,
            "toolImage": self.tool_image,
            "releaseExists": self.release_exists,
            "releaseUrl": self.release_url,
            "pipelinesUrl": self.pipelines_url,
            "nextSteps": self.next_steps(),
            "warnings": list(self.warnings),
            "include": self.include,
            "legacyInclude": self.legacy_include,
        }


def catalog_warnings(project: GitLabProject) -> tuple[str, ...]:
    """What would keep the release out of the CI/CD Catalog that the REST API can tell."""
    if project.description.strip():
        return ()
    return (
        f"project {project.path} has no description: the CI/CD Catalog publishes a release only "
        "of a project with one (Settings > General > Project description)",
    )


def publish(
    project: GitLabProject,
    root: Path,
    wheel: ToolWheel,
    version: str,
    *,
    host: str,
    branch: str = "",
    dry_run: bool = False,
) -> PublishResult:
    """Render the files for this project (its registry path), plan from what it holds, then
    (unless dry_run) commit and tag. The tag's pipeline does the rest."""
    check_version(version)
    tool_image = render_tool_image_default(project.registry_path(), version)
    desired = project_files(root, wheel, tool_image)
    target_branch = branch or project.default_branch
    state = read_state(project, version, target_branch)
    plan = plan_publish(version, desired, state)
    result = PublishResult(
        project=project.path,
        plan=plan,
        dry_run=dry_run,
        include=include_snippet(host, project.path, version),
        legacy_include=legacy_include_snippet(project.path, version),
        web_url=project.web_url,
        tool_image=tool_image,
        release_exists=state.release_exists,
        warnings=catalog_warnings(project),
    )
    if dry_run or not plan.changes:
        return result
    commit: str | None = None
    if plan.actions:
        actions = tuple(
            FileAction(a.action, a.path, a.content, project.last_commit_id(a.path, target_branch))
            if a.action != "create"
            else a
            for a in plan.actions
        )
        commit = project.commit(target_branch, f"archfleet CI templates {version}", actions)
    tagged: str | None = None
    if plan.create_tag:
        tagged = commit or project.branch_head(target_branch)
        project.create_tag(version, tagged, f"archfleet CI templates {version}")
    return replace(result, commit=commit, tagged=tagged)
