"""A FAKE of the few GitLab REST v4 endpoints publish-templates calls, for tests only.

It is not GitLab: one project, an in-memory repository (commits as whole file maps), token
check by the `PRIVATE-TOKEN` header, no pagination beyond one page. Payloads and status codes
follow GitLab's documented API (docs.gitlab.com/ee/api/): projects, repository tree
(`id` = git blob SHA-1), repository files (`last_commit_id`), commits with `actions`
(create/update/delete; a stale `last_commit_id` is refused with 400 as GitLab does), branches,
tags, releases. Every request is recorded so tests can assert what was (not) written.

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


class _HTTPError(Exception):
    def __init__(self, status: int, message: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class GitLabFake:
    def __init__(self, *, token: str, project: str, default_branch: str = "main") -> None:
        self.token = token
        self.project = project
        self.default_branch = default_branch
        self.repo = _Repo()
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
        if segments[:2] != ["api", "v4"] or len(segments) < 4 or segments[2] != "projects":
            raise _HTTPError(404, "404 Not Found")
        if segments[3] not in (str(PROJECT_ID), self.project):
            raise _HTTPError(404, "404 Project Not Found")
        rest = segments[4:]
        with self._lock:
            if not rest and method == "GET":
                return 200, self._project_json()
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
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
