"""A FAKE of the few GitLab REST v4 endpoints archfleet calls, for tests only.

It is not GitLab: one project (and its namespace as one group), an in-memory repository
(commits as whole file maps), token check by the `PRIVATE-TOKEN` header, no pagination beyond
one page. Payloads and status codes follow GitLab's documented API (docs.gitlab.com/ee/api/):

- publish-templates: projects, repository tree (`id` = git blob SHA-1), repository files
  (`last_commit_id`), commits with `actions` (create/update/delete; a stale `last_commit_id`
  is refused with 400 as GitLab does), branches, tags, releases;
- runners (api/users.md#create-a-runner-linked-to-a-user, api/runners.md): `GET /user`,
  `POST /user/runners` (answers `{id, token: "glrt-…", token_expires_at}`), `GET /runners/all`,
  `GET /groups/:id/runners`, `GET /projects/:id/runners` (each with the `type` filter; a group
  or project also lists the runners it inherits, as GitLab does), `GET|PUT|DELETE /runners/:id`,
  `GET /groups/:id`. A runner is offline until a test says otherwise (`set_online`).

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
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["GitLabFake", "Recorded", "blob_id"]

PROJECT_ID = 42
GROUP_ID = 7
RUNNER_TYPES = ("instance_type", "group_type", "project_type")


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


@dataclass
class FakeRunner:
    """A runner as GitLab stores it; `token` is its runner authentication token (glrt-)."""

    id: int
    runner_type: str
    description: str
    token: str
    tag_list: list[str]
    run_untagged: bool
    locked: bool
    group_id: int | None = None
    project_id: int | None = None
    paused: bool = False
    online: bool = False

    @property
    def status(self) -> str:
        return "online" if self.online else "offline"

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

    def detail(self) -> dict[str, Any]:
        """GET /runners/:id: the summary plus tags, flags and owners (never the token)."""
        return {
            **self.summary(),
            "tag_list": list(self.tag_list),
            "run_untagged": self.run_untagged,
            "locked": self.locked,
            "maximum_timeout": None,
            "access_level": "not_protected",
            "maintenance_note": None,
            "contacted_at": None,
            "projects": [{"id": self.project_id}] if self.project_id else [],
            "groups": [{"id": self.group_id}] if self.group_id else [],
        }


def _tag_list(value: Any) -> list[str]:
    """GitLab takes `tag_list` as an array or a comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return list(value)
    raise _HTTPError(400, {"error": "tag_list is invalid"})


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("true", "1")


class _HTTPError(Exception):
    def __init__(self, status: int, message: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
        self.repo = _Repo()
        self.runners: dict[int, FakeRunner] = {}
        self._runner_ids = itertools.count(101)
        self.requests: list[Recorded] = []
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
        commit = self.repo.resolve(ref)
        return {p: c.decode() for p, c in commit.files.items()} if commit else {}

    def set_online(self, runner_id: int, online: bool = True) -> None:
        """What a registered runner polling GitLab would do."""
        with self._lock:
            self.runners[runner_id].online = online

    def add_runner(self, runner_type: str, description: str, tags: list[str], **extra: Any) -> int:
        """A runner created behind archfleet's back (e.g. by hand in the UI)."""
        with self._lock:
            runner = self._new_runner(
                {"runner_type": runner_type, "description": description, "tag_list": tags} | extra
            )
        return runner.id

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method in ("POST", "PUT", "DELETE")]

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
        return {
            "id": PROJECT_ID,
            "path_with_namespace": self.project,
            "path": self.project.rsplit("/", 1)[-1],
            "default_branch": self.default_branch,
            "web_url": f"{self.url}/{self.project}",
        }

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
                return 200, self._list_runners(query, project=True)
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
            return 200, {
                "id": 1,
                "username": "root",
                "is_admin": self.admin,
                "web_url": f"{self.url}/root",
            }
        if path == ["user", "runners"] and method == "POST":
            new = self._new_runner(body)
            return 201, {
                "id": new.id,
                "token": new.token,
                "token_expires_at": None,
            }
        if path == ["runners", "all"] and method == "GET":
            if not self.admin:
                raise _HTTPError(403, "403 Forbidden")
            return 200, self._list_runners(query)
        if path[:1] == ["groups"] and len(path) in (2, 3):
            if path[1] not in (str(GROUP_ID), self.group):
                raise _HTTPError(404, "404 Group Not Found")
            if len(path) == 2 and method == "GET":
                return 200, {"id": GROUP_ID, "full_path": self.group, "path": self.group}
            if path[2] == "runners" and method == "GET":
                return 200, self._list_runners(query, group=True)
        if path[:1] == ["runners"] and len(path) == 2 and path[1].isdigit():
            runner = self.runners.get(int(path[1]))
            if runner is None:
                raise _HTTPError(404, "404 Runner Not Found")
            if method == "GET":
                return 200, runner.detail()
            if method == "PUT":
                self._update_runner(runner, body)
                return 200, runner.detail()
            if method == "DELETE":
                del self.runners[runner.id]
                return 204, None
        raise _HTTPError(404, f"404 {method} {'/'.join(path)} not implemented by the fake")

    def _new_runner(self, body: Any) -> FakeRunner:
        kind = body.get("runner_type")
        if kind not in RUNNER_TYPES:
            raise _HTTPError(400, {"error": "runner_type does not have a valid value"})
        group_id: int | None = None
        project_id: int | None = None
        if kind == "instance_type" and not self.admin:
            raise _HTTPError(403, "403 Forbidden")
        if kind == "group_type":
            if str(body.get("group_id")) != str(GROUP_ID):
                raise _HTTPError(400, {"error": "group_id is missing or unknown"})
            group_id = GROUP_ID
        if kind == "project_type":
            if str(body.get("project_id")) != str(PROJECT_ID):
                raise _HTTPError(400, {"error": "project_id is missing or unknown"})
            project_id = PROJECT_ID
        runner_id = next(self._runner_ids)
        runner = FakeRunner(
            id=runner_id,
            runner_type=kind,
            description=str(body.get("description") or ""),
            token="glrt-" + hashlib.sha256(f"{runner_id}:{self.token}".encode()).hexdigest()[:20],
            tag_list=_tag_list(body.get("tag_list")),
            run_untagged=_flag(body.get("run_untagged"), True),
            locked=_flag(body.get("locked"), False),
            paused=_flag(body.get("paused"), False),
            group_id=group_id,
            project_id=project_id,
        )
        self.runners[runner_id] = runner
        return runner

    def _update_runner(self, runner: FakeRunner, body: Any) -> None:
        if "tag_list" in body:
            runner.tag_list = _tag_list(body["tag_list"])
        if "description" in body:
            runner.description = str(body["description"])
        runner.run_untagged = _flag(body.get("run_untagged"), runner.run_untagged)
        runner.locked = _flag(body.get("locked"), runner.locked)
        runner.paused = _flag(body.get("paused"), runner.paused)

    def _list_runners(
        self, query: dict[str, str], *, group: bool = False, project: bool = False
    ) -> list[dict[str, Any]]:
        """A group's or project's list includes what it inherits (instance and, for a
        project, its group's runners), as GitLab's does; `type` narrows it."""
        found = []
        for runner in sorted(self.runners.values(), key=lambda r: r.id):
            inherited = runner.runner_type == "instance_type" or (
                runner.group_id == GROUP_ID and (group or project)
            )
            own = project and runner.project_id == PROJECT_ID
            visible = inherited or own or not (group or project)
            if not visible:
                continue
            if query.get("type") and runner.runner_type != query["type"]:
                continue
            if query.get("status") and runner.status != query["status"]:
                continue
            found.append(runner.summary())
        return found

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
        if not branch or not isinstance(actions, list) or not body.get("commit_message"):
            raise _HTTPError(400, {"error": "branch, commit_message, actions are required"})
        head = self.repo.resolve(branch) if branch in self.repo.branches else None
        files = dict(head.files) if head else {}
        for action in actions:
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
                files[path] = str(action.get("content", "")).encode()
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
                    if self.headers.get("PRIVATE-TOKEN") != fake.token:
                        raise _HTTPError(401, "401 Unauthorized")
                    status, payload = fake.route(method, segments, query, body)
                except _HTTPError as error:
                    status, payload = error.status, {"message": error.message}
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
