"""A FAKE of the few GitLab REST v4 endpoints archfleet and gitlab-runner call, for tests only.

It is not GitLab: one project (and its namespace as one group, with one parent group), an
in-memory repository (commits as whole file maps), no pagination beyond one page. Payloads and
status codes follow GitLab's documented API (docs.gitlab.com/ee/api/) and its source:

- publish-templates: projects, repository tree (`id` = git blob SHA-1), repository files
  (`last_commit_id`), commits with `actions` (create/update/delete; a stale `last_commit_id`
  is refused with 400 as GitLab does), branches, tags, releases;
  - a project's container registry as the Projects API shows it (lib/api/entities/project.rb):
    `container_registry_image_prefix` = `<registry host>/<full path, lower case>` only when the
    instance has a registry (`fake.registry_host = None`: the key is absent), and
    `container_registry_access_level` (`enabled`/`private`/`disabled`) with the deprecated
    `container_registry_enabled`; `description` (the CI/CD Catalog needs one);
  - binary files in commits: an action's `encoding` is `text` (default) or `base64`, anything
    else a 400 `actions[0][encoding] does not have a valid value` (lib/api/commits.rb `values:
    %w[text base64]`, Grape's message); base64 content is decoded leniently like Ruby's
    `Base64.decode64` (lib/gitlab/git/index.rb `add_blob`: characters outside the alphabet are
    skipped). `raw_files_at(ref)` gives the bytes;
- runners, with a personal/project access token in `PRIVATE-TOKEN` (api/users.md#create-a-
  runner-linked-to-a-user, api/runners.md): `GET /user`, `POST /user/runners` (answers
  `{id, token: "glrt-…", token_expires_at}`), `GET /runners/all`, `GET /groups/:id/runners`,
  `GET /projects/:id/runners`, `GET|PUT|DELETE /runners/:id`, `GET /groups/:id`, and what
  the doctor asks to see whether the token's user may create runners there: `GET /user`
  (`is_admin` only for an administrator: lib/api/entities/user_with_admin.rb) and
  `GET /groups|projects/:id/members/all/:user_id` (doc/api/members.md; `fake.access_level`,
  None: not a member). `POST /user/runners` refuses a group runner below Owner and a project
  runner below Maintainer (app/policies/group_policy.rb, project_policy.rb :create_runner)
  unless the user is an administrator (`fake.admin`);
- the runner side, authenticated by the runner token in the JSON body (`params[:token]`,
  lib/api/ci/helpers/runner.rb `current_runner`; no PRIVATE-TOKEN), from lib/api/ci/runner.rb:
  `POST /runners/verify` (200 `{id, token, token_expires_at}` = Entities::Ci::
  RunnerRegistrationDetails; 403 for an unknown or deleted token; creates the runner manager
  of `system_id`, default `<legacy>`, and heartbeats), `DELETE /runners/managers` (204; 403
  unknown/deleted runner; 404 "Runner manager not found" for an unknown system_id),
  `DELETE /runners` (legacy tokens: deletes the runner), `POST /jobs/request` (204 "no job",
  403 unknown token; every poll is recorded in `polls`).

Runner status (app/models/ci/runner.rb `deprecated_rest_status`, what REST shows as `status`):
`never_contacted` until the runner talks to GitLab, then `online` while `contacted_at` is
within ONLINE_CONTACT_TIMEOUT (2 h), else `offline`; a paused runner shows `paused`. Verify
and job requests update `contacted_at` (authenticate_runner! -> heartbeat), as GitLab does.

Listings as GitLab answers them (api/runners.md): `GET /groups/:id/runners` lists the group's
runners, its ANCESTOR groups' runners and instance runners; `GET /projects/:id/runners` lists
the runners assigned to the project (its own and other projects' it was assigned), its
groups' (and their ancestors') runners and instance runners. `GET /runners/:id` tells owner
from inherited (lib/api/entities/ci/runner_details.rb): `groups` holds the owning group of a
group runner, `projects` every assigned project with the OWNER FIRST (Ci::Runner#owner_project
is the first runner_project).

Token scopes (api/users.md, api/runners.md, auth/tokens): creating a runner needs
`create_runner`, managing one (`GET|PUT|DELETE /runners/:id`) `manage_runner`, listing
`read_api`; `api` grants all. Set `fake.scopes = {...}` to model a token that lacks one: the
endpoint then answers 403 with GitLab's top-level OAuth error object `{"error":
"insufficient_scope", "error_description", "scope"}` (lib/api/api_guard.rb; see
`_need_any_scope`). `None` (default) = all scopes.

The token itself and the instance (what `archfleet doctor` asks):
- `GET /api/v4/version` (doc/api/version.md; lib/api/version.rb): `{version, revision}` for an
  authenticated request only (401 otherwise); the token needs `api`, `read_api` or
  `read_user` (`allow_access_with_scope :read_user` beside the API's default scopes), else 403
  `insufficient_scope`. `fake.version` sets what it says.
- `GET /api/v4/personal_access_tokens/self` (doc/api/personal_access_tokens.md "Self-inform";
  lib/api/personal_access_tokens/self_information.rb): the token's own details (`id`, `name`,
  `revoked`, `created_at`, `description`, `scopes`, `user_id`, `last_used_at`, `active`,
  `expires_at`) whatever its scopes (`allow_access_with_scope all_available_scopes`); 401 for
  an unknown token like every endpoint; 400 "This endpoint requires token type to be a
  personal access token" when `fake.token_type` is anything else (an OAuth or CI job token).
  The scopes shown are `fake.scopes` (all scopes: `["api"]`); `fake.token_revoked`,
  `fake.token_expires_at` model the rest.

Error answers take the shape GitLab gives each case (lib/api/api.rb, lib/api/helpers.rb):
- a parameter Grape refuses (missing, wrong type, not one of its `values:`), before the
  endpoint runs: TOP-LEVEL `{"error": "group_id is missing"}` (`_grape_invalid`);
- `bad_request!(reason)`: `{"message": "400 Bad request - <reason>"}`, e.g. POST /user/runners
  for a group id GitLab does not have (`Missing/invalid group`) or a runner the model refuses
  (`Tags list can not be empty when runner is not allowed to pick untagged jobs`);
  `forbidden!(reason)`: `{"message": "403 Forbidden - Insufficient permissions"}`;
- `render_validation_error!(model)`: `{"message": {"tags_list": ["can not be empty ..."]}}`,
  e.g. PUT /runners/:id with no tags and run_untagged false;
- `render_api_error!(text)`: `{"message": "<text>"}` (commits, tags).

Every request is recorded so tests can assert what was (not) written.

    with GitLabFake(token="glpat-test", project="grp/templates") as fake:
        ...  # python-gitlab against fake.url
        assert not fake.writes()
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["GitLabFake", "Poll", "Recorded", "blob_id"]

PROJECT_ID = 42
GROUP_ID = 7
# The fake's group has one parent (an ancestor whose runners it inherits) and the instance
# has one more project, owner of "foreign" runners that can be assigned to PROJECT_ID.
PARENT_GROUP_ID = 5
# Endpoints only a runner calls (with its runner token in the body).
RUNNER_SIDE = frozenset(
    {
        ("POST", "/api/v4/jobs/request"),
        ("POST", "/api/v4/runners/verify"),
        ("DELETE", "/api/v4/runners/managers"),
        ("DELETE", "/api/v4/runners"),
    }
)
OTHER_PROJECT_ID = 43
USER_ID = 1  # the token's user (GET /user)
RUNNER_TYPES = ("instance_type", "group_type", "project_type")
# app/models/ci/runner.rb ONLINE_CONTACT_TIMEOUT
ONLINE_CONTACT_TIMEOUT = 2 * 60 * 60
# lib/api/ci/helpers/runner.rb LEGACY_SYSTEM_XID: the manager of requests without system_id
LEGACY_SYSTEM_XID = "<legacy>"
# Which scope each PRIVATE-TOKEN endpoint needs (docs: api/users.md "create_runner",
# api/runners.md "manage_runner" for /runners/:id, read_api to read lists and groups).
SCOPE_CREATE = "create_runner"
SCOPE_MANAGE = "manage_runner"
SCOPE_READ = "read_api"


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    body: Any


@dataclass
class _Commit:
    id: str
    parent: str | None
    files: dict[str, bytes]
    message: str


@dataclass
class _Repo:
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resolve(self, ref: str) -> _Commit | None:
        if ref in self.branches:
            return self.commits[self.branches[ref]]
        if ref in self.tags:
            return self.commits[self.tags[ref]["commit"]["id"]]
        return self.commits.get(ref)

    def last_commit_id(self, head: _Commit, path: str) -> str:
        """The newest commit, walking back from `head`, that changed `path`."""
        current: _Commit | None = head
        while current is not None:
            parent = self.commits.get(current.parent) if current.parent else None
            before = parent.files.get(path) if parent else None
            if current.files.get(path) != before:
                return current.id
            current = parent
        raise KeyError(path)


@dataclass(frozen=True)
class Poll:
    """One `POST /api/v4/jobs/request`: which runner (None: the token matched none), a short
    sha256 of the token it sent (never the token), its system_id, when, and the answer."""

    runner_id: int | None
    token_sha256: str
    system_id: str | None
    at: float
    status: int


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass
class FakeRunner:
    """A runner as GitLab stores it; `token` is its runner authentication token (glrt-).
    `project_ids` lists the projects it is assigned to, its owner first; `managers` maps each
    system_id that authenticated with its token to that manager's contacted_at."""

    id: int
    runner_type: str
    description: str
    token: str
    tag_list: list[str]
    run_untagged: bool
    locked: bool
    group_id: int | None = None
    project_ids: list[int] = field(default_factory=list)
    paused: bool = False
    contacted_at: float | None = None
    managers: dict[str, float] = field(default_factory=dict)

    @property
    def project_id(self) -> int | None:
        """The owner project (Ci::Runner#owner_project: the first runner_project)."""
        return self.project_ids[0] if self.project_ids else None

    @property
    def online(self) -> bool:
        return (
            self.contacted_at is not None
            and time.time() - self.contacted_at < ONLINE_CONTACT_TIMEOUT
        )

    @property
    def status(self) -> str:
        """app/models/ci/runner.rb deprecated_rest_status (what REST shows)."""
        if self.contacted_at is None:
            return "never_contacted"
        if self.paused:
            return "paused"
        return "online" if self.online else "offline"

    def matches_status(self, wanted: str) -> bool:
        """The `status` filter of the list endpoints (Ci::Runner.with_status scopes)."""
        if wanted == "online":
            return self.online
        if wanted == "offline":
            return self.contacted_at is not None and not self.online
        if wanted == "never_contacted":
            return self.contacted_at is None
        if wanted == "paused":
            return self.paused
        if wanted == "active":
            return not self.paused
        return True

    def heartbeat(self, system_id: str) -> None:
        """authenticate_runner!: current_runner.heartbeat + ensure_manager(system_id)."""
        now = time.time()
        self.contacted_at = now
        self.managers[system_id] = now

    def summary(self) -> dict[str, Any]:
        """The list shape (GET /runners/all and friends): no tag_list, no token."""
        return {
            "id": self.id,
            "description": self.description,
            "ip_address": None,
            "active": not self.paused,
            "paused": self.paused,
            "is_shared": self.runner_type == "instance_type",
            "runner_type": self.runner_type,
            "name": None,
            "online": self.online,
            "status": self.status,
        }

    def detail(self, groups: dict[int, str], projects: dict[int, str]) -> dict[str, Any]:
        """GET /runners/:id (Entities::Ci::RunnerDetails): the summary plus tags, flags and
        owners, never the token. `groups`: the owning group of a group runner; `projects`:
        every assigned project, the owner first."""
        contacted = self.contacted_at
        return {
            **self.summary(),
            "tag_list": list(self.tag_list),
            "run_untagged": self.run_untagged,
            "locked": self.locked,
            "maximum_timeout": None,
            "access_level": "not_protected",
            "version": None,
            "revision": None,
            "platform": None,
            "architecture": None,
            "maintenance_note": None,
            "contacted_at": (
                time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(contacted))
                if contacted is not None
                else None
            ),
            "projects": [_project_entry(pid, projects[pid]) for pid in self.project_ids],
            "groups": [_group_entry(self.group_id, groups[self.group_id])]
            if self.group_id is not None
            else [],
        }


def _project_entry(project_id: int, path: str) -> dict[str, Any]:
    """Entities::BasicProjectDetails, the fields a client needs."""
    return {
        "id": project_id,
        "name": path.rsplit("/", 1)[-1],
        "name_with_namespace": path.replace("/", " / "),
        "path": path.rsplit("/", 1)[-1],
        "path_with_namespace": path,
    }


def _group_entry(group_id: int, full_path: str) -> dict[str, Any]:
    """Entities::BasicGroupDetails."""
    return {"id": group_id, "name": full_path.rsplit("/", 1)[-1], "full_path": full_path}


def _tag_list(value: Any) -> list[str]:
    """GitLab takes `tag_list` as an array or a comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return list(value)
    raise _grape_invalid("tag_list is invalid")


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("true", "1")


class _HTTPError(Exception):
    """An error answer: `{"message": message}` (lib/api/helpers.rb `render_api_error!`), or
    `body` as is. The 400s take the shape GitLab gives each case — see the helpers below."""

    def __init__(self, status: int, message: Any, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


def _grape_invalid(*problems: str) -> _HTTPError:
    """Grape's parameter validation (requires/values/type/at_least_one_of), answered before the
    endpoint's code runs: lib/api/api.rb `rescue_from Grape::Exceptions::Base { |e| error!
    e.message, e.status }`, and Grape's JSON error formatter wraps a string as a TOP-LEVEL
    `{"error": "<param> is missing"}`; several failures in one message, joined by ", "
    (Grape::Exceptions::ValidationErrors#full_messages)."""
    message = ", ".join(problems)
    return _HTTPError(400, message, body={"error": message})


def _bad_request(reason: str) -> _HTTPError:
    """lib/api/helpers.rb `bad_request!(reason)`: `render_api_error_with_reason!(400, '400 Bad
    request', reason)` → `{"message": "400 Bad request - <reason>"}`."""
    return _HTTPError(400, f"400 Bad request - {reason}")


def _forbidden(reason: str) -> _HTTPError:
    """lib/api/helpers.rb `forbidden!(reason)` → `{"message": "403 Forbidden - <reason>"}`."""
    return _HTTPError(403, f"403 Forbidden - {reason}")


def _validation_error(field: str, *problems: str) -> _HTTPError:
    """lib/api/helpers.rb `render_validation_error!(model)`: the model's errors by attribute,
    `{"message": {"<field>": ["<error>", ...]}}`."""
    return _HTTPError(400, {field: list(problems)})


# app/models/ci/runner.rb `tag_constraints` (validate): the errors Ci::Runner adds on
# `tags_list`, and TAG_LIST_MAX_LENGTH.
TAGS_REQUIRED = "can not be empty when runner is not allowed to pick untagged jobs"
TAG_LIST_MAX_LENGTH = 50
TOO_MANY_TAGS = f"Too many tags specified. Please limit the number of tags to {TAG_LIST_MAX_LENGTH}"
# lib/api/ci/runners.rb PUT /runners/:id `at_least_one_of` (Grape's message for it).
UPDATE_PARAMS = (
    "description",
    "active",
    "paused",
    "tag_list",
    "run_untagged",
    "locked",
    "access_level",
    "maximum_timeout",
    "maintenance_note",
)


def _tag_problems(tags: list[str], run_untagged: bool) -> list[str]:
    problems = [] if tags or run_untagged else [TAGS_REQUIRED]
    if len(tags) > TAG_LIST_MAX_LENGTH:
        problems.append(TOO_MANY_TAGS)
    return problems


def _sentence(parts: list[str]) -> str:
    """Rails' Array#to_sentence: `a`, `a and b`, `a, b, and c`."""
    if len(parts) <= 2:
        return " and ".join(parts)
    return f"{', '.join(parts[:-1])}, and {parts[-1]}"


def _integer_param(body: Any, name: str) -> int:
    """A `requires :<name>, type: Integer` param: missing or not an integer is Grape's 400."""
    value = body.get(name)
    if value is None or value == "":
        raise _grape_invalid(f"{name} is missing")
    try:
        return int(str(value))
    except ValueError:
        raise _grape_invalid(f"{name} is invalid") from None


class GitLabFake:
    def __init__(
        self, *, token: str, project: str, default_branch: str = "main", admin: bool = True
    ) -> None:
        self.token = token
        self.project = project
        # The project's namespace is the one group the fake knows.
        self.group = project.rsplit("/", 1)[0] if "/" in project else "group"
        self.default_branch = default_branch
        self.admin = admin
        # The token user's access level in the group and the project, inherited ones included
        # (doc/api/members.md: 10 guest, 20 reporter, 30 developer, 40 maintainer, 50 owner);
        # None: no member. Creating a group runner needs Owner, a project runner Maintainer
        # (app/policies/group_policy.rb `rule { owner }` and app/policies/project_policy.rb
        # `rule { can?(:maintainer_access) }` enable :create_runner), or an administrator.
        self.access_level: int | None = 50
        # The instance's registry (None: no registry, the Projects API omits the prefix), the
        # project's registry feature, and its description.
        self.registry_host: str | None = "registry.gitlab.fake:5050"
        self.container_registry_access_level = "enabled"
        self.description = "archfleet CI templates"
        self.repo = _Repo()
        self.runners: dict[int, FakeRunner] = {}
        self._runner_ids = itertools.count(101)
        self.requests: list[Recorded] = []
        # Every POST /jobs/request, in order (see Poll); `polls_of(id)` narrows it.
        self.polls: list[Poll] = []
        # None: the PRIVATE-TOKEN has every scope; else only these (see SCOPE_*).
        self.scopes: set[str] | None = None
        # What GET /version says, and the kind and state of the PRIVATE-TOKEN for
        # GET /personal_access_tokens/self (lib/api/personal_access_tokens/self_information.rb).
        self.version = "17.11.2-ee"
        self.token_type = "PersonalAccessToken"
        self.token_revoked = False
        self.token_expires_at: str | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> GitLabFake:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> GitLabFake:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- test helpers -----------------------------------------------------------------------

    def seed(self, files: dict[str, str], message: str = "seed") -> str:
        """A commit on the default branch with exactly these files."""
        with self._lock:
            return self._new_commit(
                self.default_branch, {p: c.encode() for p, c in files.items()}, message
            )

    def files_at(self, ref: str) -> dict[str, str]:
        """Text files at `ref` (binary ones are left out: raw_files_at has them)."""
        found = {}
        for path, content in self.raw_files_at(ref).items():
            try:
                found[path] = content.decode()
            except UnicodeDecodeError:
                continue
        return found

    def raw_files_at(self, ref: str) -> dict[str, bytes]:
        commit = self.repo.resolve(ref)
        return dict(commit.files) if commit else {}

    def set_online(self, runner_id: int, online: bool = True) -> None:
        """What a registered runner polling GitLab would do (contacted now), or one that
        stopped polling more than ONLINE_CONTACT_TIMEOUT ago (offline)."""
        with self._lock:
            runner = self.runners[runner_id]
            runner.contacted_at = time.time() - (0 if online else ONLINE_CONTACT_TIMEOUT + 60)

    def polls_of(self, runner_id: int) -> list[Poll]:
        """The job requests GitLab matched to this runner's token."""
        with self._lock:
            return [p for p in self.polls if p.runner_id == runner_id]

    def delete_runner(self, runner_id: int) -> None:
        """A runner deleted on GitLab behind the host's back (UI, another tool): its token
        stops working at once (verify, unregister and job requests answer 403)."""
        with self._lock:
            del self.runners[runner_id]

    def add_inherited_group_runner(self, description: str, tags: list[str]) -> int:
        """A group runner of the PARENT group: listed for the fake's group and project, but
        owned elsewhere (`groups` of its details names the parent)."""
        with self._lock:
            runner = self._new_runner(
                {"runner_type": "group_type", "description": description, "tag_list": tags},
                group_id=PARENT_GROUP_ID,
            )
        return runner.id

    def add_foreign_project_runner(self, description: str, tags: list[str]) -> int:
        """A project runner owned by another project and assigned to the fake's project too
        (POST /projects/:id/runners): listed for the project, its owner first in `projects`."""
        with self._lock:
            runner = self._new_runner(
                {"runner_type": "project_type", "description": description, "tag_list": tags},
                project_ids=[OTHER_PROJECT_ID, PROJECT_ID],
            )
        return runner.id

    def add_runner(self, runner_type: str, description: str, tags: list[str], **extra: Any) -> int:
        """A runner created behind archfleet's back (e.g. by hand in the UI)."""
        with self._lock:
            runner = self._new_runner(
                {"runner_type": runner_type, "description": description, "tag_list": tags} | extra
            )
        return runner.id

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method in ("POST", "PUT", "DELETE")]

    def client_requests(self) -> list[Recorded]:
        """What API clients (archfleet) sent: every request but the runners' own — job polls,
        `runners/verify` and `runners/managers` (lib/api/ci/runner.rb, lib/api/ci/jobs.rb),
        which a running gitlab-runner service sends on its own schedule."""
        return [r for r in self.requests if (r.method, r.path) not in RUNNER_SIDE]

    def client_writes(self) -> list[Recorded]:
        return [r for r in self.client_requests() if r.method in ("POST", "PUT", "DELETE")]

    def mark(self) -> int:
        return len(self.requests)

    def since(self, mark: int) -> list[Recorded]:
        return self.requests[mark:]

    # --- the API ----------------------------------------------------------------------------

    def _new_commit(self, branch: str, files: dict[str, bytes], message: str) -> str:
        parent = self.repo.branches.get(branch)
        sha = hashlib.sha1(
            f"{next(self._ids)}:{parent}:{message}".encode(), usedforsecurity=False
        ).hexdigest()
        self.repo.commits[sha] = _Commit(sha, parent, files, message)
        self.repo.branches[branch] = sha
        return sha

    def _project_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": PROJECT_ID,
            "description": self.description,
            "path_with_namespace": self.project,
            "path": self.project.rsplit("/", 1)[-1],
            "default_branch": self.default_branch,
            "web_url": f"{self.url}/{self.project}",
            "container_registry_enabled": self.container_registry_access_level != "disabled",
            "container_registry_access_level": self.container_registry_access_level,
        }
        if self.registry_host is not None:
            # Project#container_registry_url: "#{registry host_port}/#{full_path.downcase}"
            data["container_registry_image_prefix"] = f"{self.registry_host}/{self.project.lower()}"
        return data

    def _commit_json(self, commit: _Commit) -> dict[str, Any]:
        return {
            "id": commit.id,
            "short_id": commit.id[:8],
            "title": commit.message.splitlines()[0],
            "message": commit.message,
            "parent_ids": [commit.parent] if commit.parent else [],
        }

    def route(
        self, method: str, segments: list[str], query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if segments[:2] != ["api", "v4"] or len(segments) < 3:
            raise _HTTPError(404, "404 Not Found")
        if segments[2] != "projects":
            with self._lock:
                return self._runner_route(method, segments[2:], query, body)
        if len(segments) < 4 or segments[3] not in (str(PROJECT_ID), self.project):
            raise _HTTPError(404, "404 Project Not Found")
        rest = segments[4:]
        with self._lock:
            if not rest and method == "GET":
                return 200, self._project_json()
            if rest == ["runners"] and method == "GET":
                self._need_scope(SCOPE_READ)
                return 200, self._list_runners(query, project=True)
            if rest[:2] == ["members", "all"] and len(rest) == 3 and method == "GET":
                self._need_scope(SCOPE_READ)
                return 200, self._member(rest[2])
            if rest == ["repository", "tree"] and method == "GET":
                return 200, self._tree(query)
            if rest[:2] == ["repository", "files"] and len(rest) == 3 and method == "GET":
                return 200, self._file(rest[2], query)
            if rest == ["repository", "commits"] and method == "POST":
                return 201, self._commit(body)
            if rest[:2] == ["repository", "branches"] and len(rest) == 3 and method == "GET":
                return 200, self._branch(rest[2])
            if rest[:2] == ["repository", "tags"] and len(rest) == 3 and method == "GET":
                if rest[2] not in self.repo.tags:
                    raise _HTTPError(404, "404 Tag Not Found")
                return 200, self.repo.tags[rest[2]]
            if rest == ["repository", "tags"] and method == "POST":
                return 201, self._create_tag(body)
            if rest[:1] == ["releases"] and len(rest) == 2 and method == "GET":
                if rest[1] not in self.repo.releases:
                    raise _HTTPError(404, "404 Not Found")
                return 200, self.repo.releases[rest[1]]
            if rest == ["releases"] and method == "POST":
                return 201, self._create_release(body)
        raise _HTTPError(404, f"404 {method} {'/'.join(rest)} not implemented by the fake")

    # --- runners ---------------------------------------------------------------------------

    def _runner_route(
        self, method: str, path: list[str], query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if path == ["user"] and method == "GET":
            # lib/api/users.rb presents an administrator with Entities::UserWithAdmin, whose
            # only addition is `expose :admin?, as: :is_admin`
            # (lib/api/entities/user_with_admin.rb); anyone else gets Entities::UserPublic,
            # without the key.
            # lib/api/users.rb `allow_access_with_scope :read_user` for GETs, beside the
            # API's own `api` and (for GETs) `read_api`.
            self._need_any_scope("api", SCOPE_READ, "read_user")
            admin = {"is_admin": True} if self.admin else {}
            return 200, {
                "id": USER_ID,
                "username": "root",
                **admin,
                "web_url": f"{self.url}/root",
            }
        if path == ["user", "runners"] and method == "POST":
            self._need_scope(SCOPE_CREATE)
            new = self._new_runner(body)
            return 201, {
                "id": new.id,
                "token": new.token,
                "token_expires_at": None,
            }
        if path == ["runners", "all"] and method == "GET":
            self._need_scope(SCOPE_READ)
            if not self.admin:
                raise _HTTPError(403, "403 Forbidden")
            return 200, self._list_runners(query)
        if path[:1] == ["groups"] and len(path) in (2, 3):
            self._need_scope(SCOPE_READ)
            group_id = self._group_id(path[1])
            if len(path) == 2 and method == "GET":
                full_path = self._group_paths()[group_id]
                return 200, {
                    "id": group_id,
                    "full_path": full_path,
                    "path": full_path.rsplit("/", 1)[-1],
                    "parent_id": PARENT_GROUP_ID if group_id == GROUP_ID else None,
                }
            if path[2] == "runners" and method == "GET":
                return 200, self._list_runners(query, group=group_id)
        if path[:1] == ["groups"] and path[2:4] == ["members", "all"] and len(path) == 5:
            self._need_scope(SCOPE_READ)
            self._group_id(path[1])
            if method == "GET":
                return 200, self._member(path[4])
        if path[:1] == ["runners"] and len(path) == 2 and path[1].isdigit():
            self._need_scope(SCOPE_MANAGE)
            runner = self.runners.get(int(path[1]))
            if runner is None:
                raise _HTTPError(404, "404 Runner Not Found")
            if method == "GET":
                return 200, self._detail(runner)
            if method == "PUT":
                self._update_runner(runner, body)
                return 200, self._detail(runner)
            if method == "DELETE":
                del self.runners[runner.id]
                return 204, None
        if path == ["version"] and method == "GET":
            self._need_any_scope("api", SCOPE_READ, "read_user")
            return 200, {"version": self.version, "revision": "6f2c8d1a"}
        if path == ["personal_access_tokens", "self"] and method == "GET":
            return 200, self._token_self()
        raise _HTTPError(404, f"404 {method} {'/'.join(path)} not implemented by the fake")

    def _token_self(self) -> dict[str, Any]:
        """Entities::PersonalAccessTokenWithLastUsedIps of the request's own token; any scope
        may read it, but only a personal access token (400 `bad_request!` otherwise)."""
        if self.token_type != "PersonalAccessToken":
            raise _bad_request("This endpoint requires token type to be a personal access token")
        return {
            "id": 9,
            "name": "archfleet",
            "revoked": self.token_revoked,
            "created_at": "2026-01-05T10:00:00.000Z",
            "description": "",
            "scopes": sorted(self.scopes) if self.scopes is not None else ["api"],
            "user_id": 1,
            "last_used_at": None,
            "active": not self.token_revoked,
            "expires_at": self.token_expires_at,
            "last_used_ips": [],
        }

    def _new_runner(
        self, body: Any, *, group_id: int | None = None, project_ids: list[int] | None = None
    ) -> FakeRunner:
        """POST /user/runners in GitLab's order (lib/api/user_runners.rb, app/services/ci/
        runners/create_runner_service.rb): Grape's params (runner_type `values:`, group_id /
        project_id `requires ... type: Integer` given that type, tag_list) → the strategy's
        validate_params (`Missing/invalid group|project` for an id GitLab does not have,
        bad_request!) → authorized_user? (`Insufficient permissions`, forbidden!) → the model's
        validation on save (`Tags list can not be empty ...`, bad_request! of full_messages).
        `group_id`/`project_ids` given: a runner set up by a test helper, not by the API."""
        kind = body.get("runner_type")
        if kind is None:
            raise _grape_invalid(
                "runner_type is missing", "runner_type does not have a valid value"
            )
        if kind not in RUNNER_TYPES:
            raise _grape_invalid("runner_type does not have a valid value")
        via_api = group_id is None and project_ids is None
        wanted_group = (
            _integer_param(body, "group_id") if via_api and kind == "group_type" else None
        )
        wanted_project = (
            _integer_param(body, "project_id") if via_api and kind == "project_type" else None
        )
        tags = _tag_list(body.get("tag_list"))
        run_untagged = _flag(body.get("run_untagged"), True)
        if via_api and kind == "group_type":
            if wanted_group not in (GROUP_ID, PARENT_GROUP_ID):
                raise _bad_request("Missing/invalid group")
            group_id = wanted_group
        if via_api and kind == "project_type":
            if wanted_project not in (PROJECT_ID, OTHER_PROJECT_ID):
                raise _bad_request("Missing/invalid project")
            project_ids = [wanted_project] if wanted_project is not None else []
        needed = {"group_type": 50, "project_type": 40}.get(str(kind))
        # The strategies' authorized_user?: :create_runners on the scope (Owner of a group,
        # Maintainer of a project), an administrator for instance runners.
        refused = kind == "instance_type" or (self.access_level or 0) < (needed or 0)
        if via_api and not self.admin and refused:
            raise _forbidden("Insufficient permissions")
        problems = _tag_problems(tags, run_untagged)
        if problems:
            # ActiveRecord::RecordInvalid → errors.full_messages.to_sentence.
            raise _bad_request(_sentence([f"Tags list {p}" for p in problems]))
        runner_id = next(self._runner_ids)
        runner = FakeRunner(
            id=runner_id,
            runner_type=kind,
            description=str(body.get("description") or ""),
            token="glrt-" + hashlib.sha256(f"{runner_id}:{self.token}".encode()).hexdigest()[:20],
            tag_list=tags,
            run_untagged=run_untagged,
            locked=_flag(body.get("locked"), False),
            paused=_flag(body.get("paused"), False),
            group_id=group_id,
            project_ids=list(project_ids or []),
        )
        self.runners[runner_id] = runner
        return runner

    def _update_runner(self, runner: FakeRunner, body: Any) -> None:
        """PUT /runners/:id (lib/api/ci/runners.rb): Grape's `at_least_one_of` and tag_list
        type first; a change the model refuses is `render_validation_error!(runner)`, the
        errors by attribute, and nothing is saved."""
        if not any(name in body for name in UPDATE_PARAMS):
            raise _grape_invalid(
                f"{', '.join(UPDATE_PARAMS)} are missing, at least one parameter must be provided"
            )
        tags = _tag_list(body["tag_list"]) if "tag_list" in body else runner.tag_list
        run_untagged = _flag(body.get("run_untagged"), runner.run_untagged)
        problems = _tag_problems(tags, run_untagged)
        if problems:
            raise _validation_error("tags_list", *problems)
        runner.tag_list = tags
        if "description" in body:
            runner.description = str(body["description"])
        runner.run_untagged = run_untagged
        runner.locked = _flag(body.get("locked"), runner.locked)
        runner.paused = _flag(body.get("paused"), runner.paused)

    def _list_runners(
        self, query: dict[str, str], *, group: int | None = None, project: bool = False
    ) -> list[dict[str, Any]]:
        """GET /runners/all (group None, project False): every runner. A group's list holds
        its own, its ancestors' and instance runners; a project's list the runners assigned
        to it (its own and foreign ones), its groups' and ancestors' and instance runners,
        as GitLab's do (api/runners.md); `type`, `status` and `paused` narrow it."""
        ancestors = {GROUP_ID, PARENT_GROUP_ID} if project or group == GROUP_ID else {group}
        found = []
        for runner in sorted(self.runners.values(), key=lambda r: r.id):
            visible = (
                (group is None and not project)
                or runner.runner_type == "instance_type"
                or (runner.group_id is not None and runner.group_id in ancestors)
                or (project and PROJECT_ID in runner.project_ids)
            )
            if not visible:
                continue
            if query.get("type") and runner.runner_type != query["type"]:
                continue
            if query.get("status") and not runner.matches_status(query["status"]):
                continue
            if query.get("paused") and runner.paused != _flag(query["paused"], False):
                continue
            found.append(runner.summary())
        return found

    def _group_paths(self) -> dict[int, str]:
        """The parent group's path: the namespace's own parent when it has one, else a name
        of its own (the fake does not fold it into the group's full_path)."""
        parent = self.group.rsplit("/", 1)[0] if "/" in self.group else "parent-group"
        return {GROUP_ID: self.group, PARENT_GROUP_ID: parent}

    def _group_id(self, ref: str) -> int:
        for group_id, full_path in self._group_paths().items():
            if ref in (str(group_id), full_path):
                return group_id
        raise _HTTPError(404, "404 Group Not Found")

    def _detail(self, runner: FakeRunner) -> dict[str, Any]:
        other = "other/project"
        return runner.detail(
            self._group_paths(), {PROJECT_ID: self.project, OTHER_PROJECT_ID: other}
        )

    def _member(self, user_id: str) -> dict[str, Any]:
        """GET /groups|projects/:id/members/all/:user_id (doc/api/members.md "Get a member of a
        group or project, including inherited and invited members"): the member with its
        `access_level`, or 404 "404 Member Not Found"."""
        if user_id != str(USER_ID) or self.access_level is None:
            raise _HTTPError(404, "404 Member Not Found")
        return {
            "id": USER_ID,
            "username": "root",
            "state": "active",
            "access_level": self.access_level,
        }

    def _need_scope(self, scope: str) -> None:
        """403 insufficient_scope unless the token has `scope` or `api` (the scope every API
        endpoint allows: lib/api/api.rb `allow_access_with_scope :api`)."""
        self._need_any_scope("api", scope)

    def _need_any_scope(self, *scopes: str) -> None:
        """403 insufficient_scope unless the token has one of `scopes`, in GitLab's shape: a
        TOP-LEVEL OAuth error object, `{"error": "insufficient_scope", "error_description":
        …, "scope": "<the scopes that would do, space-separated>"}` — no "message" key.

        Source: lib/gitlab/auth/auth_finders.rb `validate_and_save_access_token!` raises
        InsufficientScopeError with the endpoint's scopes; lib/api/api_guard.rb
        `oauth2_bearer_token_error_handler` answers it with Rack::OAuth2's
        Bearer::Forbidden.new(:insufficient_scope, DEFAULT_DESCRIPTION[:insufficient_scope],
        {scope: e.scopes}), whose `protocol_params` (nov/rack-oauth2
        lib/rack/oauth2/server/resource/error.rb) add `scope: Array(scope).join(' ')` to
        `error` and `error_description`, and `finish` writes them as the JSON body."""
        if self.scopes is None or any(scope in self.scopes for scope in scopes):
            return
        raise _HTTPError(
            403,
            "insufficient_scope",
            body={
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than "
                "provided by the access token.",
                "scope": " ".join(scopes),
            },
        )

    # --- the runner's own API (lib/api/ci/runner.rb), authenticated by the runner token ----

    def runner_api(self, method: str, path: list[str], body: Any) -> tuple[int, Any] | None:
        """The endpoints gitlab-runner calls with its runner token in the body; None for
        any other path. The token is `params[:token]` (helpers/runner.rb current_runner)."""
        route = (method, tuple(path))
        if route not in {
            ("POST", ("runners", "verify")),
            ("DELETE", ("runners", "managers")),
            ("DELETE", ("runners",)),
            ("POST", ("jobs", "request")),
        }:
            return None
        token = str(body.get("token") or "") if isinstance(body, dict) else ""
        system_id = body.get("system_id") if isinstance(body, dict) else None
        if route[1] == ("runners", "managers") and not system_id:
            # `requires :token, :system_id`: Grape answers before authenticate_runner!.
            raise _grape_invalid("system_id is missing")
        with self._lock:
            runner = next((r for r in self.runners.values() if r.token == token), None)
            if route[1] == ("jobs", "request"):
                self.polls.append(
                    Poll(
                        runner.id if runner else None,
                        token_hash(token),
                        system_id,
                        time.time(),
                        204 if runner else 403,
                    )
                )
            if runner is None:
                raise _HTTPError(403, "403 Forbidden")
            if route[1] == ("runners", "managers"):
                # ensure_runner_manager: false; the manager must exist (404 otherwise).
                if system_id not in runner.managers:
                    raise _HTTPError(404, "404 Runner manager not found")
                del runner.managers[system_id]
                return 204, None
            if route[1] == ("runners",):
                del self.runners[runner.id]
                return 204, None
            runner.heartbeat(str(system_id or LEGACY_SYSTEM_XID))
            if route[1] == ("runners", "verify"):
                return 200, {"id": runner.id, "token": runner.token, "token_expires_at": None}
            return 204, None

    def _tree(self, query: dict[str, str]) -> list[dict[str, Any]]:
        if query.get("recursive", "").lower() != "true":
            raise _HTTPError(400, "the fake only serves recursive trees")
        commit = self.repo.resolve(query.get("ref", self.default_branch))
        if commit is None:
            raise _HTTPError(404, "404 Tree Not Found")
        entries: dict[str, dict[str, Any]] = {}
        for path, content in sorted(commit.files.items()):
            parts = path.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                entries.setdefault(
                    folder,
                    {
                        "id": "0" * 40,
                        "name": parts[depth - 1],
                        "type": "tree",
                        "path": folder,
                        "mode": "040000",
                    },
                )
            entries[path] = {
                "id": blob_id(content),
                "name": parts[-1],
                "type": "blob",
                "path": path,
                "mode": "100644",
            }
        return list(entries.values())

    def _file(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        ref = query.get("ref", "")
        commit = self.repo.resolve(ref)
        if commit is None or path not in commit.files:
            raise _HTTPError(404, "404 File Not Found")
        content = commit.files[path]
        return {
            "file_name": path.rsplit("/", 1)[-1],
            "file_path": path,
            "size": len(content),
            "encoding": "base64",
            "content": base64.b64encode(content).decode(),
            "content_sha256": hashlib.sha256(content).hexdigest(),
            "ref": ref,
            "blob_id": blob_id(content),
            "commit_id": commit.id,
            "last_commit_id": self.repo.last_commit_id(commit, path),
        }

    def _commit(self, body: Any) -> dict[str, Any]:
        branch = body.get("branch")
        actions = body.get("actions")
        # lib/api/commits.rb `requires :branch, :commit_message, :actions`: Grape names each.
        missing = [
            f"{name} is missing"
            for name, given in (
                ("branch", branch),
                ("commit_message", body.get("commit_message")),
                ("actions", actions),
            )
            if not given
        ]
        if missing:
            raise _grape_invalid(*missing)
        if not isinstance(actions, list):
            raise _grape_invalid("actions is invalid")
        head = self.repo.resolve(branch) if branch in self.repo.branches else None
        files = dict(head.files) if head else {}
        for number, action in enumerate(actions):
            encoding = action.get("encoding", "text")
            if encoding not in ("text", "base64"):
                raise _grape_invalid(f"actions[{number}][encoding] does not have a valid value")
            kind, path = action.get("action"), action.get("file_path")
            exists = path in files
            if kind == "create" and exists:
                raise _HTTPError(400, "A file with this name already exists")
            if kind in ("update", "delete"):
                if not exists:
                    raise _HTTPError(400, "A file with this name doesn't exist")
                last = action.get("last_commit_id")
                if last and head and last != self.repo.last_commit_id(head, path):
                    raise _HTTPError(
                        400,
                        "You are attempting to update a file that has changed since you "
                        "started editing it.",
                    )
            if kind in ("create", "update"):
                content = str(action.get("content", ""))
                files[path] = (
                    base64.b64decode(content, validate=False)
                    if encoding == "base64"
                    else content.encode()
                )
            elif kind == "delete":
                del files[path]
            else:
                raise _HTTPError(400, f"action {kind!r} is not supported by the fake")
        sha = self._new_commit(branch, files, body["commit_message"])
        return self._commit_json(self.repo.commits[sha])

    def _branch(self, name: str) -> dict[str, Any]:
        if name not in self.repo.branches:
            raise _HTTPError(404, "404 Branch Not Found")
        head = self.repo.commits[self.repo.branches[name]]
        return {"name": name, "commit": self._commit_json(head)}

    def _create_tag(self, body: Any) -> dict[str, Any]:
        name, ref = body.get("tag_name"), body.get("ref")
        if name in self.repo.tags:
            raise _HTTPError(400, f"Tag {name} already exists")
        commit = self.repo.resolve(str(ref))
        if commit is None:
            raise _HTTPError(400, "Target ref is invalid")
        tag = {
            "name": name,
            "message": body.get("message", ""),
            "target": commit.id,
            "commit": self._commit_json(commit),
            "protected": False,
        }
        self.repo.tags[name] = tag
        return tag

    def _create_release(self, body: Any) -> dict[str, Any]:
        name = body.get("tag_name")
        if name in self.repo.releases:
            raise _HTTPError(409, "Release already exists")
        if name not in self.repo.tags:
            raise _HTTPError(400, "Tag does not exist; the fake needs an existing tag")
        release = {
            "tag_name": name,
            "name": body.get("name", name),
            "description": body.get("description", ""),
            "commit": self.repo.tags[name]["commit"],
        }
        self.repo.releases[name] = release
        return release

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                split = urlsplit(self.path)
                segments = [unquote(s) for s in split.path.strip("/").split("/")]
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body: Any = json.loads(raw) if raw else {}
                fake.requests.append(Recorded(method, unquote(split.path), body))
                try:
                    answer = None
                    if segments[:2] == ["api", "v4"]:
                        answer = fake.runner_api(method, segments[2:], body)
                    if answer is None:
                        if self.headers.get("PRIVATE-TOKEN") != fake.token:
                            raise _HTTPError(401, "401 Unauthorized")
                        answer = fake.route(method, segments, query, body)
                    status, payload = answer
                except _HTTPError as error:
                    status = error.status
                    payload = error.body if error.body is not None else {"message": error.message}
                data = b"" if status == 204 else json.dumps(payload).encode()
                self.send_response(status)
                if status != 204:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
