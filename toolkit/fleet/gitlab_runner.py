"""GitLab runner lifecycle, server side, through python-gitlab: find a host's runner (its
description is the host name), create it with the runner-authentication-token workflow
(`POST /user/runners` → a `glrt-` token), update its tags, delete it, and say per tag whether
an online runner carries it. `create_and_register` is the one step that spans GitLab and the
host (toolkit.fleet.gitlab_host): a registration that fails deletes the runner it just created.

Secrets: the API token only ever goes to python-gitlab; a created runner's token lives in
`CreatedRunner.token`, hidden from its repr; every error message is scrubbed of both.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from gitlab.v4.objects import CurrentUserRunnerManager

import gitlab
from gitlab import config as gl_config
from gitlab import exceptions as gl_errors

from ..inventory import GitLabSettings
from .errors import GitLabRunnerError
from .gitlab_answer import error_text, error_text_of_bytes
from .gitlab_host import register_runner
from .plan import RunnerState

__all__ = [
    "CreatedRunner",
    "GitLabRunnerError",
    "GitLabRunners",
    "TokenLookup",
    "create_and_register",
    "find_token",
]

_SCOPE_OWNER = {"group_type": "group", "project_type": "project"}


@dataclass(frozen=True)
class CreatedRunner:
    """A runner GitLab just created. `token` (glrt-…) registers it: a secret, never shown."""

    id: int
    token: str = field(repr=False)
    token_expires_at: str | None = None


@dataclass(frozen=True)
class _Summary:
    id: int
    description: str


@dataclass(frozen=True)
class TokenLookup:
    """Where the GitLab API token comes from — the one lookup provision-runners and doctor
    share, so both name the same source and refuse the same things.

    `token` and `source` ("$GITLAB_TOKEN", "python-gitlab config file F section [S]"), or
    `problem`: why there is none to use — none anywhere (`missing` True), or a config file
    for another GitLab (`missing` False: its token is not sent to this one). `client`: the
    python-gitlab client the config file describes (its ssl_verify, api_version…), None when
    the token came from the environment."""

    token: str | None = field(default=None, repr=False)
    source: str | None = None
    problem: str | None = None
    missing: bool = False
    client: gitlab.Gitlab | None = field(default=None, repr=False, compare=False)


def find_token(settings: GitLabSettings, env: Mapping[str, str]) -> TokenLookup:
    """The environment variable `settings.token_env`, else python-gitlab's config file
    (`settings.config_file`, or python-gitlab's default files) and section."""
    token = env.get(settings.token_env, "")
    if token:
        return TokenLookup(token, f"${settings.token_env}")
    files = [str(settings.config_file)] if settings.config_file else None
    where = (
        f"python-gitlab config file {settings.config_file}"
        if settings.config_file
        else "python-gitlab's default config files (~/.python-gitlab.cfg, $PYTHON_GITLAB_CFG)"
    )
    if settings.config_section:
        where += f" section [{settings.config_section}]"
    none = (
        f"no GitLab token for {settings.url}: environment variable {settings.token_env} "
        f"is not set and {where}"
    )
    try:
        client = gitlab.Gitlab.from_config(settings.config_section, files)
    except gl_config.ConfigError as exc:
        return TokenLookup(problem=f"{none} gave none ({exc})", missing=True)
    if not client.private_token:
        return TokenLookup(problem=f"{none} has no private_token", missing=True)
    if client.url.rstrip("/") != settings.url.rstrip("/"):
        return TokenLookup(
            source=where,
            problem=f"{where} is for {client.url}, but the inventory's gitlab.url is "
            f"{settings.url}; refusing to send its token elsewhere",
        )
    return TokenLookup(str(client.private_token), where, client=client)


class GitLabRunners:
    """The runners of ONE scope (instance, a group or a project) on one GitLab."""

    def __init__(
        self, client: gitlab.Gitlab, settings: GitLabSettings, *, token_source: str
    ) -> None:
        self._gl = client
        self._settings = settings
        self._token_source = token_source
        self._lock = threading.Lock()
        self._listed: dict[int, _Summary] | None = None
        self._owner_id: int | None = None
        self._owner_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: GitLabSettings, env: Mapping[str, str], *, timeout: float = 30
    ) -> GitLabRunners:
        """Private token from `env[settings.token_env]`, else python-gitlab's config file
        (`settings.config_file`, or python-gitlab's default files) and section: find_token."""
        found = find_token(settings, env)
        if found.token is None or found.source is None:
            raise GitLabRunnerError(found.problem or f"no GitLab token for {settings.url}")
        # No transient-error retries: python-gitlab's back off for ~100 s against a GitLab
        # that is down; one host's step fails fast and a re-run converges instead.
        client = found.client or gitlab.Gitlab(
            settings.url, private_token=found.token, timeout=timeout
        )
        client.timeout = timeout  # a config file's own timeout must not unbound our calls
        return cls(client, settings, token_source=found.source)

    def __repr__(self) -> str:
        return (
            f"GitLabRunners(url={self._settings.url!r}, scope={self._scope_text()}, "
            f"token from {self._token_source})"
        )

    # --- reading ------------------------------------------------------------------------------

    def find(self, description: str) -> RunnerState | None:
        """This scope's runner whose description is `description` (the host name); with
        duplicates (a runner created by hand too), the newest. The scope is listed once."""
        matches = [s for s in self._summaries() if s.description == description]
        for summary in sorted(matches, key=lambda s: s.id, reverse=True):
            state = self._state(summary.id)
            if state is not None:
                return state
        return None

    def get(self, runner_id: int) -> RunnerState | None:
        """Runner `runner_id` (the `id` a host's config.toml holds), if GitLab still has it
        and it is one of this scope's own runners."""
        return self._state(runner_id)

    def online_by_tag(self, tags: Iterable[str] = ()) -> dict[str, bool]:
        """For `runners-status`: per tag (each of `tags`, plus every tag a runner of this scope
        carries), is there at least one online, unpaused runner carrying it."""
        online: dict[str, bool] = dict.fromkeys(tags, False)
        for summary in self._summaries():
            detail = self._detail(summary.id)
            if detail is None:
                continue
            usable = _is_online(detail) and not detail.get("paused", not detail.get("active", True))
            for tag in detail.get("tag_list") or []:
                online[tag] = online.get(tag, False) or usable
        return online

    def refresh(self) -> None:
        """Forget the cached list (e.g. before a status report)."""
        with self._lock:
            self._listed = None

    # --- writing ------------------------------------------------------------------------------

    def create(self, description: str, tags: Iterable[str], *, locked: bool) -> CreatedRunner:
        """`POST /user/runners`: type and owner of the scope, tags, `run_untagged: false`."""
        tag_list = _checked_tags(tags)
        data: dict[str, Any] = {
            "runner_type": self._settings.runner_type,
            "description": description,
            "tag_list": tag_list,
            "run_untagged": False,
            "locked": locked,
        }
        owner = _SCOPE_OWNER.get(self._settings.runner_type)
        if owner:
            data[f"{owner}_id"] = self._resolve_owner()
        with self._api(f"creating runner {description!r}"):
            # `gl.user.runners` without the extra GET /user that `gl.auth()` costs.
            created = CurrentUserRunnerManager(self._gl).create(data)
        attributes = created.attributes
        runner = CreatedRunner(
            id=int(attributes["id"]),
            token=str(attributes.get("token") or ""),
            token_expires_at=attributes.get("token_expires_at"),
        )
        if not runner.token.startswith("glrt-"):
            raise GitLabRunnerError(
                f"GitLab {self._settings.url}: runner #{runner.id} was created without a "
                "glrt- authentication token; this GitLab may be older than 15.10"
            )
        with self._lock:
            if self._listed is not None:
                self._listed[runner.id] = _Summary(runner.id, description)
        return runner

    def update(self, runner_id: int, tags: Iterable[str], *, locked: bool) -> None:
        """`PUT /runners/:id`: tags, `run_untagged: false`, locked."""
        data = {"tag_list": _checked_tags(tags), "run_untagged": False, "locked": locked}
        with self._api(f"updating runner #{runner_id}"):
            self._gl.runners.update(runner_id, data)

    def delete(self, runner_id: int) -> bool:
        """`DELETE /runners/:id`; False when it was already gone (a re-run converges)."""
        try:
            with self._api(f"deleting runner #{runner_id}", missing_ok=True):
                self._gl.runners.delete(runner_id)
                return True
            return False
        finally:
            with self._lock:
                if self._listed is not None:
                    self._listed.pop(runner_id, None)

    # --- internals ----------------------------------------------------------------------------

    def _scope_text(self) -> str:
        owner = _SCOPE_OWNER.get(self._settings.runner_type)
        if owner is None:
            return self._settings.runner_type
        return f"{self._settings.runner_type} {getattr(self._settings, owner)}"

    def _summaries(self) -> list[_Summary]:
        with self._lock:  # held while listing: N hosts asking at once cause ONE list
            if self._listed is None:
                with self._api(f"listing {self._scope_text()} runners"):
                    items = self._list()
                self._listed = {
                    int(item["id"]): _Summary(int(item["id"]), str(item.get("description") or ""))
                    for item in items
                }
            return list(self._listed.values())

    def _list(self) -> list[dict[str, Any]]:
        kind = self._settings.runner_type
        manager: Any
        if kind == "group_type":
            manager = self._gl.groups.get(str(self._settings.group), lazy=True).runners
        elif kind == "project_type":
            manager = self._gl.projects.get(str(self._settings.project), lazy=True).runners
        else:
            manager = self._gl.runners_all
        return [obj.attributes for obj in manager.list(type=kind, get_all=True)]

    def _detail(self, runner_id: int) -> dict[str, Any] | None:
        with self._api(f"reading runner #{runner_id}", missing_ok=True):
            attributes: dict[str, Any] = self._gl.runners.get(runner_id).attributes
            return attributes
        with self._lock:  # deleted meanwhile
            if self._listed is not None:
                self._listed.pop(runner_id, None)
        return None

    def _state(self, runner_id: int) -> RunnerState | None:
        detail = self._detail(runner_id)
        if detail is None or not self._owns(detail):
            return None
        return RunnerState(
            id=runner_id,
            description=str(detail.get("description") or ""),
            tags=tuple(detail.get("tag_list") or ()),
            run_untagged=bool(detail.get("run_untagged")),
            locked=bool(detail.get("locked")),
            online=_is_online(detail),
        )

    def _owns(self, detail: Mapping[str, Any]) -> bool:
        """Is this runner the scope's OWN? GitLab's group listing also holds the runners of
        ancestor groups, and a project's listing the runners of other projects enabled in it
        and group/instance runners (doc/api/runners.md, "List group's runners", "List
        project's runners"): those are not ours to update or delete. A group runner's `groups`
        is its owner group; a project runner's owner is the first of its `projects`."""
        kind = self._settings.runner_type
        if detail.get("runner_type", kind) != kind:
            return False
        owner = _SCOPE_OWNER.get(kind)
        if owner is None:
            return True
        owners = detail.get("groups" if owner == "group" else "projects") or []
        if not owners:
            return False
        first = owners[0].get("id") if isinstance(owners[0], Mapping) else None
        return first == self._resolve_owner()

    def _resolve_owner(self) -> int:
        """POST /user/runners wants the numeric group/project id, and ownership checks compare
        it; the inventory may give a path: looked up ONCE per run, whatever the threads."""
        with self._owner_lock:
            return self._resolve_owner_locked()

    def _resolve_owner_locked(self) -> int:
        if self._owner_id is not None:
            return self._owner_id
        kind = self._settings.runner_type
        ref = str(self._settings.group if kind == "group_type" else self._settings.project)
        if ref.isdigit():
            self._owner_id = int(ref)
            return self._owner_id
        with self._api(f"looking up {_SCOPE_OWNER[kind]} {ref}"):
            manager: Any = self._gl.groups if kind == "group_type" else self._gl.projects
            self._owner_id = int(manager.get(ref).id)
        return self._owner_id

    @contextmanager
    def _api(self, what: str, *, missing_ok: bool = False) -> Iterator[None]:
        """python-gitlab and requests errors -> one GitLabRunnerError naming server and step.
        With `missing_ok`, a 404 is swallowed (the `with` body is skipped past)."""
        url = self._settings.url
        try:
            yield
        except gl_errors.GitlabAuthenticationError as exc:
            raise GitLabRunnerError(
                self._scrub(
                    f"GitLab {url}: {what} failed: the token from {self._token_source} was "
                    f"refused (HTTP {exc.response_code})"
                )
            ) from None
        except gl_errors.GitlabError as exc:
            if missing_ok and exc.response_code == 404:
                return
            named = _insufficient_scope(exc) if exc.response_code == 403 else None
            if named is not None:
                raise GitLabRunnerError(
                    self._scrub(
                        f"GitLab {url}: {what} failed: HTTP 403 insufficient_scope: the token "
                        f"from {self._token_source} has none of the scopes GitLab accepts "
                        f"here ({', '.join(named)}){_forbidden_hint(what, '')}"
                    )
                ) from None
            hint = (
                _forbidden_hint(what, self._settings.runner_type)
                if exc.response_code == 403
                else ""
            )
            if exc.response_code == 400:
                hint = self._bad_request_hint(_said(exc))
            raise GitLabRunnerError(
                self._scrub(
                    f"GitLab {url}: {what} failed: HTTP {exc.response_code}: {_said(exc)}{hint}"
                )
            ) from None
        except requests.RequestException as exc:
            raise GitLabRunnerError(
                self._scrub(f"GitLab {url}: {what} failed: cannot reach it ({type(exc).__name__})")
            ) from None

    def _bad_request_hint(self, said: str) -> str:
        """The inventory key behind a 400 of POST /user/runners whose scope GitLab could not
        find (Ci::Runners::RunnerCreationStrategies: `Missing/invalid group|project`)."""
        settings = self._settings
        for kind, key, value in (
            ("group", "gitlab.group", settings.group),
            ("project", "gitlab.project", settings.project),
        ):
            if f"Missing/invalid {kind}" in said:
                return (
                    f" ({key} is {value!r}, id {self._owner_id}: GitLab has no {kind} of that id)"
                )
        return ""

    def _scrub(self, text: str) -> str:
        token = self._gl.private_token
        return text.replace(token, "[hidden]") if token else text


def _said(exc: gl_errors.GitlabError) -> str:
    """What GitLab's answer says, in one line, whatever its shape (gitlab_answer.py)."""
    if exc.response_body is not None:
        return error_text_of_bytes(exc.response_body)
    return error_text({"message": exc.error_message})


def _insufficient_scope(exc: gl_errors.GitlabError) -> list[str] | None:
    """The scopes GitLab named in a 403 `{"error": "insufficient_scope", "scope": "api
    create_runner"}` (lib/api/api_guard.rb answers a token without the endpoint's scope with
    Rack::OAuth2's Bearer::Forbidden: a top-level error object, no "message"); None for
    any other 403 (a permission the token's user lacks)."""
    try:
        body = json.loads(exc.response_body or b"")
    except (TypeError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("error") != "insufficient_scope":
        return None
    return str(body.get("scope") or "").split() or ["(none named)"]


def _forbidden_hint(what: str, runner_type: str) -> str:
    """What a 403 most likely means for this step: the token's scope (doc/api/users.md
    "Create a runner": create_runner; doc/api/runners.md: manage_runner for /runners/:id,
    read_api to list) or, for instance runners, an administrator's token."""
    if what.startswith("creating"):
        scope = "create_runner"
    elif what.startswith("listing") or what.startswith("looking up"):
        scope = "read_api"
    else:
        scope = "manage_runner"
    hint = f" (the token needs the {scope} scope"
    if runner_type == "instance_type":
        hint += "; listing instance runners needs an administrator's token"
    return hint + ")"


def _is_online(detail: Mapping[str, Any]) -> bool:
    # `online` is deprecated in newer GitLab; `status` is what stays.
    return detail.get("status") == "online" or detail.get("online") is True


def _checked_tags(tags: Iterable[str]) -> list[str]:
    """python-gitlab sends tag_list comma-joined: a comma would split one tag into two."""
    checked = list(tags)
    for tag in checked:
        if not tag or any(c in tag for c in ",\r\n\0"):
            raise GitLabRunnerError(f"runner tag {tag!r} is empty or has a comma or a newline")
    return checked


def create_and_register(
    runners: GitLabRunners,
    connection: Any,
    host_name: str,
    settings: GitLabSettings,
    tags: Iterable[str],
    *,
    timeout: float = 120,
    register: Callable[..., object] = register_runner,
) -> CreatedRunner:
    """Create the runner on GitLab, register it on the host; if registration fails, delete
    the runner just created, so no half registration is left behind (a re-run starts clean)."""
    created = runners.create(host_name, tags, locked=settings.locked)
    try:
        register(connection, host_name, settings, created.token, timeout=timeout)
    except Exception as exc:
        reason = str(exc).replace(created.token, "[hidden]")
        try:
            runners.delete(created.id)
        except GitLabRunnerError as cleanup:
            raise GitLabRunnerError(
                f"{host_name}: registering runner #{created.id} failed ({reason}); deleting it "
                f"on GitLab failed too ({cleanup}) — delete runner #{created.id} by hand"
            ) from None
        raise GitLabRunnerError(
            f"{host_name}: registering runner #{created.id} failed ({reason}); "
            f"runner #{created.id} deleted on GitLab again"
        ) from None
    return created
