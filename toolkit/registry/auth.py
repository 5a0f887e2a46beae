"""Registry credentials (env, GitLab CI, ~/.docker/config.json) and auth challenges."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .reference import is_docker_hub


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


# docker/cli cli/config/configfile/file.go `authConfigKey` (a copy of registry.IndexServer):
# the only key docker reads Docker Hub's credentials from.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"


def auth_config_key(registry: str) -> str:
    """The config.json key docker looks a registry up under (file.go `getAuthConfigKey`)."""
    return DOCKER_HUB_AUTH_KEY if is_docker_hub(registry) else registry


def convert_to_hostname(key: str) -> str:
    """docker/cli credentials/file_store.go `ConvertToHostname`: a legacy key such as
    `https://r.io:5000/v1/` is the host[:port] `r.io:5000`."""
    stripped = key
    if "://" in stripped:
        parts = urlsplit(stripped)
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if host:
            if ":" in host:  # an IPv6 literal: net.JoinHostPort brackets it again
                host = f"[{host}]"
            return host if port is None else f"{host}:{port}"
        stripped = stripped.partition("://")[2]
    return stripped.partition("/")[0]


def _docker_config_path(env: Mapping[str, str]) -> Path:
    base = env.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _lookup(auths: Mapping[str, Any], registry: str) -> tuple[str, Any] | None:
    """docker's file store `Get`: the exact key, else the first key whose hostname is it.

    Docker Hub's key has a scheme, so for Hub only the exact key can match, as in docker.
    """
    key = auth_config_key(registry)
    if key in auths:
        return key, auths[key]
    for candidate, entry in auths.items():
        if convert_to_hostname(candidate) == key:
            return candidate, entry
    return None


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
    found = _lookup(auths, registry)
    if found is None or not isinstance(found[1], dict):
        return None
    key, entry = found
    where = f"{path} auths[{key!r}]"
    # configfile.LoadFromReader: a non-empty `auth` replaces username/password.
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep or not user:  # decodeAuth: "invalid auth configuration file"
            raise CredentialsError(f"{path}: auths[{key!r}].auth must be base64 of 'user:password'")
        return Credentials(user, password.strip("\x00"), where)
    if entry.get("username") and entry.get("password"):
        return Credentials(str(entry["username"]), str(entry["password"]), where)
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
    3. `auths` in ~/.docker/config.json (or $DOCKER_CONFIG/config.json), looked up as docker
       does: Docker Hub (`docker.io`, `index.docker.io`) under `https://index.docker.io/v1/`.
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
