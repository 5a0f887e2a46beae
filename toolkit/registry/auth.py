"""Registry credentials (env, GitLab CI, ~/.docker/config.json) and auth challenges."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .reference import DEFAULT_REGISTRY


@dataclass(frozen=True)
class Credentials:
    username: str
    # repr=False: a Credentials object in a traceback or log line never shows the secret.
    password: str = field(repr=False)
    source: str = ""

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lowercase
    params: dict[str, str]


_PARAM_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def parse_challenge(header: str) -> Challenge | None:
    """Parse `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (or Basic)."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace(
            '\\"', '"'
        )
        for m in _PARAM_RE.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def _registry_keys(registry: str) -> list[str]:
    """Keys under which docker's config.json may hold a registry's auth."""
    if registry == DEFAULT_REGISTRY:
        return [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
        ]
    return [
        registry,
        f"https://{registry}",
        f"http://{registry}",
        f"https://{registry}/v1/",
        f"https://{registry}/v2/",
    ]


def _docker_config_path(env: Mapping[str, str]) -> Path:
    base = env.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _from_docker_config(registry: str, path: Path) -> Credentials | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CredentialsError(
            f"{path}: cannot read docker config ({type(exc).__name__})"
        ) from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    for key in _registry_keys(registry):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"], f"{path} auths[{key!r}]")
        if entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                sep = ""
            if not sep:
                raise CredentialsError(
                    f"{path}: auths[{key!r}].auth must be base64 of 'user:password'"
                )
            return Credentials(user, password, f"{path} auths[{key!r}]")
    return None


class CredentialsError(ValueError):
    pass


def _host_of(value: str) -> str:
    return re.sub(r"^[a-z]+://", "", value.strip()).rstrip("/")


def resolve_credentials(
    registry: str, env: Mapping[str, str] | None = None, docker_config: Path | None = None
) -> Credentials | None:
    """Find credentials for `registry`, most specific first.

    1. REGISTRY_USER / REGISTRY_PASSWORD (archfleet's own, set on purpose for this run);
    2. GitLab CI's CI_REGISTRY_USER / CI_REGISTRY_PASSWORD, only if the registry is CI_REGISTRY;
    3. `auths` in ~/.docker/config.json (or $DOCKER_CONFIG/config.json).
    """
    env = os.environ if env is None else env
    if env.get("REGISTRY_USER") and env.get("REGISTRY_PASSWORD"):
        return Credentials(env["REGISTRY_USER"], env["REGISTRY_PASSWORD"], "REGISTRY_USER")
    ci_registry = env.get("CI_REGISTRY")
    if (
        ci_registry
        and _host_of(ci_registry) == registry
        and env.get("CI_REGISTRY_USER")
        and env.get("CI_REGISTRY_PASSWORD")
    ):
        return Credentials(env["CI_REGISTRY_USER"], env["CI_REGISTRY_PASSWORD"], "CI_REGISTRY_USER")
    return _from_docker_config(registry, docker_config or _docker_config_path(env))
