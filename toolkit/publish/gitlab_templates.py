"""Publish ci-templates/ to a GitLab templates project: one commit, a version tag, a release.

`plan_publish` is pure: the files we want, what the project holds (its branch and the version
tag, as git blob ids from the repository tree) -> the commit actions and the steps left.
`GitLabProject` is the only code that talks to GitLab (python-gitlab); `publish` joins them.

Idempotent: a version already tagged with exactly these files needs nothing (at most its
missing release); a version tagged with other files is refused before anything is written.
Only the paths we manage (templates/, include/, README.md) are created, updated or deleted;
other files of the project stay as they are.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlparse

import gitlab
from gitlab import exceptions as gl_errors

from ..ci_templates import COMPONENT, INCLUDE_PATH

MANAGED_DIRS = ("templates/", "include/")
MANAGED_FILES = ("README.md",)
# The CI/CD catalog takes semantic versions without a `v`.
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
_TIMEOUT_SECONDS = 30

ActionKind = Literal["create", "update", "delete"]


class PublishError(RuntimeError):
    """Publishing cannot go on; the message says what to do. Never contains the token."""


class VersionConflictError(PublishError):
    """The version is already tagged with different templates."""


def git_blob_id(content: str) -> str:
    """The id git (and GitLab's tree API) gives a file with this content."""
    data = content.encode("utf-8")
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def is_managed(path: str) -> bool:
    return path in MANAGED_FILES or path.startswith(MANAGED_DIRS)


def validate_version(version: str) -> str:
    if not _SEMVER.match(version):
        raise PublishError(
            f"--version {version!r}: expected a semantic version X.Y.Z (e.g. 1.4.0, 2.0.0-rc.1), "
            "without a leading v, as the CI/CD catalog requires"
        )
    return version


@dataclass(frozen=True)
class FileAction:
    action: ActionKind
    path: str
    content: str | None = None
    # The file's last commit on the branch (update/delete): GitLab refuses the commit if the
    # file changed since we read it.
    last_commit_id: str | None = None

    def to_api(self) -> dict[str, str]:
        data = {"action": self.action, "file_path": self.path}
        if self.content is not None:
            data["content"] = self.content
        if self.last_commit_id:
            data["last_commit_id"] = self.last_commit_id
        return data


def plan_actions(desired: Mapping[str, str], remote: Mapping[str, str]) -> tuple[FileAction, ...]:
    """Actions that make the managed files of `remote` (path -> blob id) equal `desired`."""
    actions = []
    for path in sorted(desired):
        if not is_managed(path):
            raise PublishError(f"{path}: not a path the publisher manages ({MANAGED_DIRS}, README)")
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
    release_exists: bool


@dataclass(frozen=True)
class PublishPlan:
    version: str
    branch: str
    actions: tuple[FileAction, ...]
    create_tag: bool
    create_release: bool

    @property
    def changes(self) -> bool:
        return bool(self.actions or self.create_tag or self.create_release)


def plan_publish(version: str, desired: Mapping[str, str], state: ProjectState) -> PublishPlan:
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
        return PublishPlan(version, state.branch, (), False, not state.release_exists)
    actions = plan_actions(desired, state.branch_files)
    return PublishPlan(version, state.branch, actions, True, not state.release_exists)


def server_host(url: str) -> str:
    """`https://gitlab.example.com:8443/` -> `gitlab.example.com:8443` (CI_SERVER_FQDN)."""
    parsed = urlparse(url)
    if not parsed.scheme or not parsed.netloc:
        raise PublishError(f"--url {url!r}: expected the GitLab base URL, e.g. https://gitlab.com")
    return parsed.netloc


def include_snippet(host: str, project: str, version: str) -> str:
    return f"include:\n  - component: {host}/{project}/{COMPONENT}@{version}\n"


def legacy_include_snippet(project: str, version: str) -> str:
    return f"include:\n  - project: {project}\n    ref: {version}\n    file: /{INCLUDE_PATH}\n"


def release_description(host: str, project: str, version: str) -> str:
    return (
        f"archfleet CI templates {version}: native multi-arch image builds, merged by digest "
        "and verified.\n\n"
        f"```yaml\n{include_snippet(host, project, version)}```\n\n"
        "GitLab without CI/CD components:\n\n"
        f"```yaml\n{legacy_include_snippet(project, version)}```\n"
    )


# --- GitLab I/O (python-gitlab) ----------------------------------------------------------------


def connect(url: str, token: str) -> gitlab.Gitlab:
    return gitlab.Gitlab(
        url, private_token=token, timeout=_TIMEOUT_SECONDS, retry_transient_errors=True
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

    def create_release(self, tag: str, name: str, description: str) -> None:
        try:
            self._project.releases.create(
                {"tag_name": tag, "name": name, "description": description}
            )
        except gl_errors.GitlabError as exc:
            raise self._error(f"creating release {tag}", exc) from None

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
    commit: str | None = None
    tagged: str | None = None

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
            "releaseCreated": self.plan.create_release,
            "include": self.include,
            "legacyInclude": self.legacy_include,
        }


def publish(
    project: GitLabProject,
    desired: Mapping[str, str],
    version: str,
    *,
    host: str,
    branch: str = "",
    dry_run: bool = False,
) -> PublishResult:
    """Plan from what the project holds, then (unless dry_run) commit, tag and release."""
    validate_version(version)
    target_branch = branch or project.default_branch
    plan = plan_publish(version, desired, read_state(project, version, target_branch))
    result = PublishResult(
        project=project.path,
        plan=plan,
        dry_run=dry_run,
        include=include_snippet(host, project.path, version),
        legacy_include=legacy_include_snippet(project.path, version),
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
    if plan.create_release:
        project.create_release(
            version,
            f"archfleet CI templates {version}",
            release_description(host, project.path, version),
        )
    return PublishResult(
        project=result.project,
        plan=plan,
        dry_run=False,
        include=result.include,
        legacy_include=result.legacy_include,
        commit=commit,
        tagged=tagged,
    )
