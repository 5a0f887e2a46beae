"""A Python package index over https on loopback, for provisioning's pip: the lock's wheels and
archfleet's own, served the way an index serves them, so no test reaches a public index.

A stand-in for a PEP 503 "simple" repository: `/<index>/<normalized name>/` is an HTML page of
`<a href="…/files/<file>#sha256=<hex>">` links (PEP 503: the URL fragment carries the hash).
Every answer is typed, because pip takes an index page only when its Content-Type is
`text/html` or `application/vnd.pypi.simple.v1+(html|json)` (pip
src/pip/_internal/index/collector.py `_ensure_api_header`; tests/support/https_files.py types
everything as octet-stream, which pip skips). Several indexes can be served at once, each under
its own prefix (e.g. one that lacks a package). Every request is recorded; anything else is 404.

The wheels come from the lock archfleet ships (`lock_wheelhouse`): downloaded once with pip's
hash checks from the indexes this machine's pip is configured with, then cached (like
tests/support/wheel.py's wheelhouse).
"""

from __future__ import annotations

import hashlib
import html
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support.certs import self_signed_ca, write_pem
from tests.support.https_files import serve_tls
from tests.support.wheel import clean_env
from toolkit.lab.cache import cache_dir, file_lock

HTML = "text/html; charset=utf-8"
BINARY = "application/octet-stream"


def normalized(name: str) -> str:
    """PEP 503's name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_of(wheel: Path) -> str:
    return normalized(wheel.name.split("-", 1)[0])


@dataclass
class PackageIndex:
    base: str  # https://127.0.0.1:PORT
    ca_file: Path
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def index_url(self, prefix: str = "simple") -> str:
        return f"{self.base}/{prefix}/"


def index_pages(prefix: str, wheels: Sequence[Path]) -> dict[str, tuple[bytes, str]]:
    """The pages of one index under `/<prefix>/`, and its files under `/files/`."""
    served: dict[str, tuple[bytes, str]] = {}
    by_project: dict[str, list[Path]] = {}
    for wheel in wheels:
        by_project.setdefault(project_of(wheel), []).append(wheel)
        served[f"/files/{wheel.name}"] = (wheel.read_bytes(), BINARY)
    for project, files in by_project.items():
        links = "".join(
            f'<a href="../../files/{html.escape(f.name)}#sha256='
            f'{hashlib.sha256(f.read_bytes()).hexdigest()}">{html.escape(f.name)}</a>\n'
            for f in sorted(files)
        )
        page = f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode()
        served[f"/{prefix}/{project}/"] = (page, HTML)
    roots = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(by_project))
    served[f"/{prefix}/"] = (f"<!DOCTYPE html><html><body>\n{roots}</body></html>\n".encode(), HTML)
    return served


@contextmanager
def serve_index(
    indexes: Mapping[str, Sequence[Path]],
    workdir: Path,
    *,
    files: Mapping[str, bytes] | None = None,
) -> Iterator[PackageIndex]:
    """Serve each index (prefix -> wheels) and `files` (path -> bytes) over https on 127.0.0.1
    with a fresh CA; yields where, and the CA to trust."""
    served: dict[str, tuple[bytes, str]] = {}
    for prefix, wheels in indexes.items():
        served.update(index_pages(prefix, wheels))
    for path, body in (files or {}).items():
        served[path] = (body, BINARY)
    key, cert = self_signed_ca("archfleet test package index", ip="127.0.0.1")
    key_path, cert_path = workdir / "index-key.pem", workdir / "index-ca.pem"
    write_pem(key, cert, key_path, cert_path)
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, with_body: bool) -> None:
            seen.append(self.path)
            found = served.get(self.path)
            if found is None:
                self.send_error(404)
                return
            body, content_type = found
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serve_tls(Handler, key_path, cert_path) as base:
        yield PackageIndex(base, cert_path, seen)


def lock_wheelhouse(lock: Path) -> list[Path]:
    """The wheels `lock` pins, downloaded once (pip's hash-checking mode, wheels only, from the
    indexes this machine's pip is configured with) into a cache directory per lock content."""
    import subprocess

    text = lock.read_bytes()
    house = cache_dir() / "lock-wheelhouse" / hashlib.sha256(text).hexdigest()[:16]
    with file_lock(cache_dir() / "lock-wheelhouse.lock"):
        ready = house / ".ready"
        if not ready.exists():
            house.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--require-hashes",
                    "--only-binary",
                    ":all:",
                    "--no-deps",
                    "-r",
                    str(lock),
                    "-d",
                    str(house),
                ],
                env=clean_env(),
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            if done.returncode != 0:
                raise RuntimeError(f"pip download of {lock} failed:\n{done.stdout}{done.stderr}")
            ready.write_text("ok\n")
    return sorted(house.glob("*.whl"))
