"""The fleet file: a typed model of hosts, their SSH access, roles, and the GitLab/Jenkins sides.

`load()` validates against ONE JSON Schema (the same one `invoke inventory-schema` prints for
editors) and reports every problem with the file, the key path, the line, and what was
expected. Unknown keys are errors: a typo must not silently drop a setting.

Every run loads the inventory, and importing jsonschema costs more than the whole check of a
sound file. So a sound file is recognised by `conforms()`, a small walk over the same SCHEMA
that understands the few keywords it uses and answers "no" for anything else; only a file it
does not pass goes through jsonschema, whose errors (or absence of errors) are what counts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .archmap import UNAME_TO_PLATFORM
from .registry.manifest import Platform

if TYPE_CHECKING:
    import jsonschema

ROLES = ("gitlab-runner", "jenkins-agent")
RUNNER_TYPES = ("instance_type", "group_type", "project_type")
BUILDERS = ("buildah", "docker", "umoci")
DEFAULT_RUNNER_URL = (
    "https://gitlab-runner-downloads.s3.amazonaws.com/latest/binaries/gitlab-runner-linux-{arch}"
)
_ARCHES = sorted({Platform.parse(p).tag_suffix for p in UNAME_TO_PLATFORM.values()})
# Host names become runner descriptions, node names and file names: keep them plain.
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$"
_ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

_SSH_PROPERTIES: dict[str, Any] = {
    "user": {"type": "string", "minLength": 1, "description": "login user (default: root)"},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "key": {"type": "string", "description": "private key file"},
    "known_hosts": {"type": "string", "description": "known_hosts file; unknown keys refused"},
    "jump_host": {"type": "string", "description": "[user@]host[:port] to hop through"},
    "connect_timeout": {"type": "number", "exclusiveMinimum": 0},
    "command_timeout": {"type": "number", "exclusiveMinimum": 0},
    "use_ssh_config": {"type": "boolean", "description": "honour ~/.ssh/config (default true)"},
    "ssh_config_file": {
        "type": "string",
        "minLength": 1,
        "description": "OpenSSH client config to read instead of ~/.ssh/config and "
        "/etc/ssh/ssh_config (like ssh -F); needs use_ssh_config",
    },
}
_TAGS = {"type": "array", "items": {"type": "string", "pattern": _TAG_PATTERN}, "uniqueItems": True}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "archfleet inventory",
    "type": "object",
    "additionalProperties": False,
    "required": ["hosts"],
    "properties": {
        "ssh": {"type": "object", "additionalProperties": False, "properties": _SSH_PROPERTIES},
        "builder": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "tool": {"enum": list(BUILDERS)},
                "install": {
                    "type": "boolean",
                    "description": "install from the OS package manager if missing (else verify)",
                },
                "group": {"type": "string", "description": "group the CI user needs (docker)"},
            },
        },
        "gitlab": {
            "type": "object",
            "additionalProperties": False,
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "pattern": r"^https?://"},
                "token_env": {"type": "string", "pattern": _ENV_PATTERN},
                "config_file": {"type": "string", "description": "python-gitlab config file"},
                "config_section": {"type": "string"},
                "runner_type": {"enum": list(RUNNER_TYPES)},
                "group": {"type": "string", "minLength": 1},
                "project": {"type": "string", "minLength": 1},
                "executor": {"enum": ["shell", "docker"]},
                "docker_image": {"type": "string"},
                "docker_privileged": {"type": "boolean"},
                "tags": _TAGS,
                "runner_url": {"type": "string", "description": "{arch}: amd64, arm64, …"},
                "runner_sha256": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "pattern": r"^[a-f0-9]{64}$"},
                },
                "locked": {"type": "boolean"},
            },
        },
        "jenkins": {
            "type": "object",
            "additionalProperties": False,
            "required": ["url", "credentials_id"],
            "properties": {
                "url": {"type": "string", "pattern": r"^https?://"},
                "user_env": {"type": "string", "pattern": _ENV_PATTERN},
                "token_env": {"type": "string", "pattern": _ENV_PATTERN},
                "credentials_id": {"type": "string", "minLength": 1},
                "remote_root": {"type": "string", "pattern": "^/"},
                "executors": {"type": "integer", "minimum": 1, "maximum": 64},
                "labels": _TAGS,
            },
        },
        "hosts": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "address", "roles"],
                "properties": {
                    "name": {"type": "string", "pattern": _NAME_PATTERN},
                    "address": {"type": "string", "minLength": 1, "pattern": r"^[^\s;&|`$]+$"},
                    "arch": {"enum": _ARCHES, "description": "declared arch; must match uname"},
                    "roles": {
                        "type": "array",
                        "minItems": 1,
                        "uniqueItems": True,
                        "items": {"enum": list(ROLES)},
                    },
                    "tags": _TAGS,
                    "labels": _TAGS,
                    "ssh": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": _SSH_PROPERTIES,
                    },
                    "executors": {"type": "integer", "minimum": 1, "maximum": 64},
                },
            },
        },
    },
}


class InventoryError(ValueError):
    """Every problem found in one file, one per line: file:line: key.path: what was expected."""

    def __init__(self, path: Path, problems: Iterable[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class NewHostKey:
    """A host key seen for the first time and recorded in known_hosts (--accept-new-host-keys)."""

    host: str  # the inventory host, or "<host> (jump host addr:port)"
    server: str  # the known_hosts name written: `addr`, or `[addr]:port`
    key_type: str  # ssh-ed25519, ecdsa-sha2-nistp256, ...
    fingerprint: str  # SHA256:..., as `ssh-keygen -l` shows it
    known_hosts: Path


@dataclass(frozen=True)
class SshSettings:
    user: str = "root"
    port: int = 22
    key: Path | None = None
    known_hosts: Path | None = None
    jump_host: str | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 900.0
    use_ssh_config: bool = True
    ssh_config_file: Path | None = None
    # The keys the inventory set (top level or per host); the others are defaults, which
    # give way to the ssh config, as `ssh` options do.
    given: frozenset[str] = frozenset()
    # No inventory key (the schema has none): a task's --accept-new-host-keys sets it with
    # dataclasses.replace. None: an unknown host key is refused. A function: like OpenSSH's
    # accept-new, a host with no known_hosts entry is accepted, its key appended to
    # known_hosts and passed to the function (to report it); a changed key is still refused.
    accept_new_host_keys: Callable[[NewHostKey], None] | None = None


@dataclass(frozen=True)
class BuilderSettings:
    tool: str = "buildah"
    install: bool = True
    group: str | None = None


@dataclass(frozen=True)
class GitLabSettings:
    url: str
    token_env: str = "GITLAB_TOKEN"  # noqa: S105 - the name of a variable, not a secret
    config_file: Path | None = None
    config_section: str | None = None
    runner_type: str = "instance_type"
    group: str | None = None
    project: str | None = None
    executor: str = "shell"
    docker_image: str = "alpine:3.20"
    docker_privileged: bool = False
    tags: tuple[str, ...] = ()
    runner_url: str = DEFAULT_RUNNER_URL
    runner_sha256: Mapping[str, str] = field(default_factory=dict)
    locked: bool = True


@dataclass(frozen=True)
class JenkinsSettings:
    url: str
    credentials_id: str
    user_env: str = "JENKINS_USER"
    token_env: str = "JENKINS_API_TOKEN"  # noqa: S105 - the name of a variable, not a secret
    remote_root: str = "/var/lib/jenkins-agent"
    executors: int = 2
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    roles: tuple[str, ...]
    ssh: SshSettings
    declared_arch: str | None = None
    tags: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    executors: int | None = None

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: tuple[Host, ...]
    builder: BuilderSettings
    gitlab: GitLabSettings | None = None
    jenkins: JenkinsSettings | None = None

    def limited(self, names: Iterable[str]) -> Inventory:
        """Only the named hosts (`--limit a,b`); an unknown name is an error, not a no-op."""
        wanted = [n for n in names if n]
        known = {h.name for h in self.hosts}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise InventoryError(
                self.path,
                [
                    f"{self.path}: --limit names unknown host(s) {', '.join(unknown)} "
                    f"(hosts: {', '.join(sorted(known))})"
                ],
            )
        return replace(self, hosts=tuple(h for h in self.hosts if h.name in wanted))


def _line_map(text: str) -> dict[tuple[str | int, ...], int]:
    """Key path -> 1-based line, so an error can point into the file."""
    lines: dict[tuple[str | int, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


class _Lines:
    """`_line_map(text)`, composed on first use: only a file with a problem needs its lines."""

    def __init__(self, text: str) -> None:
        self._text = text

    @cached_property
    def _map(self) -> dict[tuple[str | int, ...], int]:
        return _line_map(self._text)

    def get(self, path: tuple[str | int, ...]) -> int | None:
        return self._map.get(path)


# --- the fast check of a sound file ----------------------------------------------------------

_ANNOTATIONS = frozenset({"$schema", "title", "description"})


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


# Exact Python types, as YAML produces them (bool is no integer; 1.0 is left to jsonschema).
_TYPES: dict[str, type] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "boolean": bool,
}


def _check_type(value: object, expected: object, _schema: Mapping[str, Any]) -> bool:
    if expected == "number":
        return _is_number(value)
    kind = _TYPES.get(expected) if isinstance(expected, str) else None
    return kind is not None and type(value) is kind


def _check_properties(value: object, expected: Any, _schema: Mapping[str, Any]) -> bool:
    if not isinstance(value, dict):
        return True
    return all(key not in value or conforms(value[key], sub) for key, sub in expected.items())


def _check_additional(value: object, expected: Any, schema: Mapping[str, Any]) -> bool:
    if not isinstance(value, dict):
        return True
    known = schema.get("properties", {})
    extra = [key for key in value if key not in known]
    if expected is False:
        return not extra
    return isinstance(expected, dict) and all(conforms(value[key], expected) for key in extra)


def _check_unique(value: object, expected: object, _schema: Mapping[str, Any]) -> bool:
    if expected is not True:
        return False  # `uniqueItems: false` is not used; left to jsonschema
    if not isinstance(value, list):
        return True
    # Strings only: jsonschema's equality of other values (1 vs True, 1 vs 1.0) is its own.
    return all(type(item) is str for item in value) and len(set(value)) == len(value)


_KEYWORDS: dict[str, Callable[[Any, Any, Mapping[str, Any]], bool]] = {
    "type": _check_type,
    "properties": _check_properties,
    "additionalProperties": _check_additional,
    "required": lambda v, e, _: not isinstance(v, dict) or all(k in v for k in e),
    "enum": lambda v, e, _: any(type(v) is type(c) and v == c for c in e),
    "pattern": lambda v, e, _: not isinstance(v, str) or re.search(e, v) is not None,
    "minLength": lambda v, e, _: not isinstance(v, str) or len(v) >= e,
    "minimum": lambda v, e, _: not _is_number(v) or v >= e,
    "maximum": lambda v, e, _: not _is_number(v) or v <= e,
    "exclusiveMinimum": lambda v, e, _: not _is_number(v) or v > e,
    "items": lambda v, e, _: not isinstance(v, list) or all(conforms(i, e) for i in v),
    "minItems": lambda v, e, _: not isinstance(v, list) or len(v) >= e,
    "uniqueItems": _check_unique,
}


def conforms(value: Any, schema: Mapping[str, Any] = SCHEMA) -> bool:
    """True only if `value` is valid against `schema` for sure; False when it is not, or when
    the schema says something this walk does not understand (then jsonschema decides)."""
    if isinstance(value, dict) and not all(type(key) is str for key in value):
        return False
    for keyword, expected in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        check = _KEYWORDS.get(keyword)
        if check is None or not check(value, expected, schema):
            return False
    return True


def _schema_problems(data: Any, path: Path, lines: _Lines) -> list[str]:
    """Every schema problem of `data`, as jsonschema finds them, with file, line and key path."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(SCHEMA)
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        where = tuple(error.absolute_path)
        pointer = where
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            # Point at the unknown key itself, not at the mapping holding it.
            known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            pointer = (*where, min(k for k in error.instance if k not in known))
        line = lines.get(pointer) or lines.get(where) or lines.get(where[:-1])
        prefix = f"{path}:{line}" if line else f"{path}"
        problems.append(f"{prefix}: {_dotted(where)}: {_describe(error)}")
    return problems


def _describe(error: jsonschema.ValidationError) -> str:
    """jsonschema's wording, made to say what was expected."""
    validator, value = error.validator, error.validator_value
    instance: Any = error.instance
    schema: Any = error.schema
    if validator == "additionalProperties":
        properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
        extra = sorted(set(instance) - set(properties))
        allowed = ", ".join(sorted(properties))
        return f"unknown key(s) {', '.join(map(repr, extra))} (expected one of: {allowed})"
    if validator == "required":
        return f"missing {error.message.split(' is a required')[0]}"
    if validator == "enum":
        choices: Any = value
        return f"expected one of {', '.join(map(str, choices))}; got {instance!r}"
    if validator == "type":
        return (
            f"expected {'an' if str(value)[0] in 'aeiou' else 'a'} {value}; got {error.instance!r}"
        )
    if validator == "pattern":
        return f"{error.instance!r} does not match {value} (allowed characters only)"
    return error.message


def _dotted(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def _ssh(data: Mapping[str, Any], base: SshSettings) -> SshSettings:
    values: dict[str, Any] = {}
    for key, value in data.items():
        paths = ("key", "known_hosts", "ssh_config_file")
        values[key] = Path(os.path.expanduser(value)) if key in paths else value
    return replace(base, **values, given=base.given | frozenset(values))


def parse(data: Any, path: Path, text: str = "") -> Inventory:
    """Validate a parsed document and build the model; every problem is reported at once."""
    lines = _Lines(text)
    problems = [] if conforms(data) else _schema_problems(data, path, lines)
    if problems:
        raise InventoryError(path, problems)
    problems += _cross_checks(data, path, lines)
    if problems:
        raise InventoryError(path, problems)

    defaults = _ssh(data.get("ssh", {}), SshSettings())
    gitlab: dict[str, Any] = dict(data.get("gitlab") or {})
    jenkins: dict[str, Any] = dict(data.get("jenkins") or {})
    # YAML lists become tuples: the settings are frozen values.
    for section, key in ((gitlab, "tags"), (jenkins, "labels")):
        if key in section:
            section[key] = tuple(section[key])
    return Inventory(
        path=path,
        builder=BuilderSettings(**data.get("builder", {})),
        gitlab=GitLabSettings(**gitlab) if gitlab else None,
        jenkins=JenkinsSettings(**jenkins) if jenkins else None,
        hosts=tuple(
            Host(
                name=h["name"],
                address=h["address"],
                roles=tuple(h["roles"]),
                ssh=_ssh(h.get("ssh", {}), defaults),
                declared_arch=h.get("arch"),
                tags=tuple(h.get("tags", ())),
                labels=tuple(h.get("labels", ())),
                executors=h.get("executors"),
            )
            for h in data["hosts"]
        ),
    )


def _cross_checks(data: Mapping[str, Any], path: Path, lines: _Lines) -> list[str]:
    """What a schema cannot say: unique names, roles that need their server section."""
    problems = []

    def at(where: tuple[str | int, ...], message: str) -> str:
        line = lines.get(where)
        return f"{path}:{line}: {_dotted(where)}: {message}" if line else f"{path}: {message}"

    seen: dict[str, int] = {}
    for index, host in enumerate(data["hosts"]):
        if host["name"] in seen:
            problems.append(
                at(
                    ("hosts", index, "name"),
                    f"duplicate host name {host['name']!r} (also hosts[{seen[host['name']]}])",
                )
            )
        seen.setdefault(host["name"], index)
        for role, section in (("gitlab-runner", "gitlab"), ("jenkins-agent", "jenkins")):
            if role in host["roles"] and section not in data:
                problems.append(
                    at(
                        ("hosts", index, "roles"),
                        f"role {role!r} needs a top-level '{section}:' section",
                    )
                )
    # An ssh config file that would silently not be read is a mistake, like an unknown key.
    unread = "ssh_config_file is set but use_ssh_config is false: the file would not be read"
    defaults = data.get("ssh") or {}
    if defaults.get("ssh_config_file") and defaults.get("use_ssh_config") is False:
        problems.append(at(("ssh", "ssh_config_file"), unread))
    for index, host in enumerate(data["hosts"]):
        own = host.get("ssh") or {}
        ssh = {**defaults, **own}
        if ssh.get("ssh_config_file") and ssh.get("use_ssh_config") is False:
            key = "ssh_config_file" if "ssh_config_file" in own else "use_ssh_config"
            if key in own:
                problems.append(at(("hosts", index, "ssh", key), unread))
    gitlab = data.get("gitlab") or {}
    kind = gitlab.get("runner_type", "instance_type")
    needs = {"group_type": "group", "project_type": "project"}.get(kind)
    if needs and not gitlab.get(needs):
        problems.append(at(("gitlab", "runner_type"), f"runner_type {kind} needs gitlab.{needs}"))
    return problems


def load(path: Path | str) -> Inventory:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(path, [f"{path}: cannot read inventory ({exc.strerror})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else f"{path}"
        raise InventoryError(
            path, [f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})"]
        ) from None
    return parse(data, path, text)
