"""The fleet file: a typed model of hosts, their SSH access, roles, and the GitLab/Jenkins sides.

`load()` validates against ONE JSON Schema (the same one `invoke inventory-schema` prints for
editors) and reports every problem with the file, the key path, the line, and what was
expected, in file order (`Problem`). Unknown keys are errors: a typo must not silently drop a
setting (the likely key is suggested, and `x86_64` gets "did you mean amd64"); so is a key given
twice in one mapping, which PyYAML would silently resolve to the last (`_Loader`). Files the ssh
settings name that do not exist are warnings on the Inventory (errors for inventory-check).

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
from .fleet.pins import VERSION_PATTERN, check_lock, wheel_version
from .registry.manifest import Platform

if TYPE_CHECKING:
    import jsonschema

# merge-tool: the pinned archfleet command on the host (a Jenkins merge agent's `archfleet`).
ROLES = ("gitlab-runner", "jenkins-agent", "merge-tool")
# What each role needs at the top level of the file.
ROLE_SECTIONS = {"gitlab-runner": "gitlab", "jenkins-agent": "jenkins", "merge-tool": "archfleet"}
RUNNER_TYPES = ("instance_type", "group_type", "project_type")
BUILDERS = ("buildah", "docker", "umoci")
# gitlab-runner is pinned: a release that exists (gitlab-org/gitlab-runner tag v19.3.0), its
# binary and GitLab's published checksums of that release, from GitLab's download bucket
# (docs/install/linux-manually.md, docs/install/bleeding-edge.md "any other tagged release").
DEFAULT_RUNNER_VERSION = "19.3.0"
RUNNER_DOWNLOADS = "https://gitlab-runner-downloads.s3.amazonaws.com/v{version}"
DEFAULT_RUNNER_URL = RUNNER_DOWNLOADS + "/binaries/gitlab-runner-linux-{arch}"
DEFAULT_RUNNER_CHECKSUMS_URL = RUNNER_DOWNLOADS + "/release.sha256"
_ARCHES = sorted({Platform.parse(p).tag_suffix for p in UNAME_TO_PLATFORM.values()})
# Host names become runner descriptions, node names and file names: keep them plain.
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
# Addresses reach paramiko's ssh config (`Match exec %h`) and node configs: a hostname, an
# IPv4 or an IPv6 address (with an optional %zone), nothing a shell could read as syntax. The
# character check is here; `_address_problem` checks the form.
_ADDRESS_PATTERN = r"^[A-Za-z0-9:][A-Za-z0-9.:%_-]{0,252}$"
_VERSION_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+$"
_TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$"
_ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

_SSH_PROPERTIES: dict[str, Any] = {
    "user": {"type": "string", "minLength": 1, "description": "login user (default: root)"},
    "port": {
        "type": "integer",
        "minimum": 1,
        "maximum": 65535,
        "description": "sshd port (default 22, or the ssh config's Port)",
    },
    "key": {
        "type": "string",
        "description": "private key file (~ expanded); only this key is offered, no agent; "
        "inventory-check refuses a file that does not exist",
    },
    "known_hosts": {"type": "string", "description": "known_hosts file; unknown keys refused"},
    "jump_host": {"type": "string", "description": "[user@]host[:port] to hop through"},
    "connect_timeout": {
        "type": "number",
        "exclusiveMinimum": 0,
        "description": "seconds for TCP connect, SSH banner and authentication (default 10)",
    },
    "command_timeout": {
        "type": "number",
        "exclusiveMinimum": 0,
        "description": "seconds one host script may run (default 900)",
    },
    "use_ssh_config": {"type": "boolean", "description": "honour ~/.ssh/config (default true)"},
    "ssh_config_file": {
        "type": "string",
        "minLength": 1,
        "description": "OpenSSH client config to read instead of ~/.ssh/config and "
        "/etc/ssh/ssh_config (like ssh -F); needs use_ssh_config",
    },
    "become": {
        "enum": ["sudo"],
        "description": "run every host step as root through non-interactive sudo (sudo -n): "
        "for a login user that is not root; sudo must not ask for a password",
    },
}
_TAGS = {"type": "array", "items": {"type": "string", "pattern": _TAG_PATTERN}, "uniqueItems": True}


def _tags(description: str) -> dict[str, Any]:
    return {**_TAGS, "description": description}


SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "archfleet inventory",
    "type": "object",
    "additionalProperties": False,
    "required": ["hosts"],
    "properties": {
        "ssh": {
            "type": "object",
            "additionalProperties": False,
            "description": "SSH access for every host (a host's own ssh: overrides each key)",
            "properties": _SSH_PROPERTIES,
        },
        "builder": {
            "type": "object",
            "additionalProperties": False,
            "description": "the image builder every build host gets",
            "properties": {
                "tool": {
                    "enum": list(BUILDERS),
                    "description": "buildah (default; Debian/Ubuntu packages), docker (needs "
                    "buildx, which Debian 12 does not package) or umoci (umoci + skopeo)",
                },
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
            "description": "the GitLab instance of hosts with the gitlab-runner role",
            "properties": {
                "url": {
                    "type": "string",
                    "pattern": r"^https?://[^\s]+$",
                    "description": "GitLab's base URL, https://gitlab.example.com",
                },
                "allow_http": {
                    "type": "boolean",
                    "description": "allow an http:// url (tokens would travel in clear)",
                },
                "token_env": {
                    "type": "string",
                    "pattern": _ENV_PATTERN,
                    "description": "environment variable holding the access token (default "
                    "GITLAB_TOKEN; scopes create_runner, manage_runner, read_api)",
                },
                "config_file": {"type": "string", "description": "python-gitlab config file"},
                "config_section": {
                    "type": "string",
                    "description": "section of config_file to use (default: its default)",
                },
                "runner_type": {
                    "enum": list(RUNNER_TYPES),
                    "description": "group_type (default, with gitlab.group) or project_type "
                    "(with gitlab.project); instance_type runners take jobs of every project",
                },
                "group": {
                    "type": "string",
                    "minLength": 1,
                    "description": "full path of the group whose runners these are "
                    "(runner_type group_type)",
                },
                "project": {
                    "type": "string",
                    "minLength": 1,
                    "description": "full path of the project whose runners these are "
                    "(runner_type project_type)",
                },
                "executor": {
                    "enum": ["shell", "docker"],
                    "description": "shell (default): jobs run as the gitlab-runner user on the "
                    "host with builder.tool; docker: each job in a container (docker_image)",
                },
                "allow_shared_shell": {
                    "type": "boolean",
                    "description": "allow an instance_type runner with the shell executor "
                    "(anyone on the instance could run code on the build host)",
                },
                "docker_image": {
                    "type": "string",
                    "description": "default job image of the docker executor (alpine:3.20)",
                },
                "docker_privileged": {
                    "type": "boolean",
                    "description": "run docker-executor jobs privileged (needed for dind; "
                    "root on the host for every job)",
                },
                "tags": _tags(
                    "runner tags every runner gets after its detected arch (amd64, arm64, "
                    "…); a host's own tags come after these"
                ),
                "concurrent": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 256,
                    "description": "jobs at once per host (config.toml concurrent; default 2)",
                },
                "runner_version": {
                    "type": "string",
                    "pattern": _VERSION_PATTERN,
                    "description": f"gitlab-runner release (default {DEFAULT_RUNNER_VERSION})",
                },
                "runner_url": {
                    "type": "string",
                    "pattern": r"^https://[^\s]+$",
                    "description": "binary download; {version}, and {arch}: amd64, arm64, arm, …",
                },
                "runner_checksums_url": {
                    "type": "string",
                    "pattern": r"^https://[^\s]+$",
                    "description": "sha256sum-style list of the release's binaries ({version})",
                },
                "runner_sha256": {
                    "type": "object",
                    "description": "per binary arch, the sha256 to expect (else from the list)",
                    "additionalProperties": {"type": "string", "pattern": r"^[a-f0-9]{64}$"},
                },
                "locked": {
                    "type": "boolean",
                    "description": "lock project runners to their project (default true)",
                },
                "tool_image": {
                    "type": "string",
                    "pattern": r"^[^\s/@]+/[^\s@]+(@sha256:[a-f0-9]{64})?$",
                    "description": "the archfleet_image the component's preflight, merge and "
                    "verify jobs run (REGISTRY/PATH:TAG[@DIGEST], e.g. the published default "
                    "REGISTRY/GROUP/TEMPLATES/archfleet:VERSION): doctor asks the registry for "
                    "it and its platforms",
                },
                "tool_image_insecure": {
                    "type": "boolean",
                    "description": "tool_image's registry is plain HTTP (lab and tests only, as "
                    "the component's insecure input)",
                },
            },
        },
        "jenkins": {
            "type": "object",
            "additionalProperties": False,
            "required": ["url", "credentials_id"],
            "description": "the Jenkins controller of hosts with the jenkins-agent role",
            "properties": {
                "url": {
                    "type": "string",
                    "pattern": r"^https?://[^\s]+$",
                    "description": "the controller's base URL, https://jenkins.example.com",
                },
                "allow_http": {
                    "type": "boolean",
                    "description": "allow an http:// url (the API token would travel in clear)",
                },
                "user_env": {
                    "type": "string",
                    "pattern": _ENV_PATTERN,
                    "description": "environment variable holding the Jenkins user "
                    "(default JENKINS_USER)",
                },
                "token_env": {
                    "type": "string",
                    "pattern": _ENV_PATTERN,
                    "description": "environment variable holding that user's API token "
                    "(default JENKINS_API_TOKEN)",
                },
                "credentials_id": {
                    "type": "string",
                    "minLength": 1,
                    "description": "id of the controller's 'SSH Username with private key' "
                    "credential the SSH launcher logs in to agents with (user agent_user)",
                },
                "remote_root": {
                    "type": "string",
                    "pattern": "^/",
                    "description": "agent's remote root directory, owned by agent_user "
                    "(default /var/lib/jenkins-agent)",
                },
                "executors": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 64,
                    "description": "executors per agent (default 2; a host's executors wins)",
                },
                "labels": _tags(
                    "labels every agent gets after its detected arch (amd64, arm64, …); a "
                    "host's own labels come after these"
                ),
                "host_key_verification": {
                    "enum": ["manual", "known_hosts"],
                    "description": "manual (default): Jenkins accepts only the host key "
                    "archfleet verified over SSH; known_hosts: the controller's own "
                    "~/.ssh/known_hosts, which must then hold the agent's key",
                },
                "java_version": {
                    "type": "integer",
                    "minimum": 8,
                    "maximum": 99,
                    "description": "Java major the agents need (default 21: Jenkins 2.545+ "
                    "and LTS 2.555.1+ refuse older agents)",
                },
                "agent_user": {
                    "type": "string",
                    "pattern": r"^[a-z_][a-z0-9_-]{0,31}$",
                    "description": "user the agent runs as and owns remote_root (default "
                    "jenkins); credentials_id must be an SSH key of this user",
                },
                "agent_authorized_key": {
                    "type": "string",
                    "pattern": r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|"
                    r"sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\n]*)?$",
                    "description": "public half of the credentials_id key: put in agent_user's "
                    "~/.ssh/authorized_keys so the controller can log in",
                },
            },
        },
        "archfleet": {
            "type": "object",
            "additionalProperties": False,
            "required": ["version", "wheel", "sha256"],
            "description": "the archfleet tool that hosts with the merge-tool role get, pinned: "
            "a wheel and its sha256, its dependencies from a hash-checked lock",
            "properties": {
                "version": {
                    "type": "string",
                    "pattern": VERSION_PATTERN,
                    "description": "the version the wheel is (what `archfleet --version` says)",
                },
                "wheel": {
                    "type": "string",
                    "pattern": r"^[^\s]+$",
                    "description": "https:// URL of archfleet-<version>-….whl, or a path on this "
                    "machine (relative to this file's directory), uploaded over SFTP",
                },
                "sha256": {
                    "type": "string",
                    "pattern": r"^[a-f0-9]{64}$",
                    "description": "sha256 of the wheel (sha256sum); checked before pip sees it",
                },
                "requirements": {
                    "type": "string",
                    "minLength": 1,
                    "description": "the dependencies' lock, name==version --hash=sha256:… lines "
                    "(default: the one archfleet ships, ci-templates/image/requirements.txt); "
                    "a path relative to this file's directory",
                },
                "index_url": {
                    "type": "string",
                    "pattern": r"^[^\s]+$",
                    "description": "https:// package index (PEP 503) for the dependencies "
                    "(default: the host's pip configuration)",
                },
                "find_links": {
                    "type": "string",
                    "pattern": r"^[^\s]+$",
                    "description": "https:// page of links to the dependencies' wheels, searched "
                    "besides the index",
                },
            },
        },
        "hosts": {
            "type": "array",
            "minItems": 1,
            "description": "the build hosts, one native host per architecture or more",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "address", "roles"],
                "properties": {
                    "name": {
                        "type": "string",
                        "pattern": _NAME_PATTERN,
                        "description": "unique name: runner description, Jenkins node name, "
                        "--limit name",
                    },
                    "address": {
                        "type": "string",
                        "pattern": _ADDRESS_PATTERN,
                        "description": "hostname, IPv4 or IPv6 address (or an ssh config Host)",
                    },
                    "arch": {
                        "enum": _ARCHES,
                        "description": "declared arch (amd64, arm64, arm-v7, …, not uname's "
                        "x86_64/aarch64); provisioning refuses a host whose uname differs",
                    },
                    "roles": {
                        "type": "array",
                        "minItems": 1,
                        "uniqueItems": True,
                        "items": {"enum": list(ROLES)},
                        "description": "gitlab-runner (needs gitlab:), jenkins-agent (needs "
                        "jenkins:), merge-tool (needs archfleet:)",
                    },
                    "tags": _tags("this host's extra GitLab runner tags"),
                    "labels": _tags("this host's extra Jenkins agent labels"),
                    "ssh": {
                        "type": "object",
                        "additionalProperties": False,
                        "description": "this host's SSH access; each key overrides ssh:",
                        "properties": _SSH_PROPERTIES,
                    },
                    "executors": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 64,
                        "description": "this agent's executors (overrides jenkins.executors)",
                    },
                    "jenkins": {
                        "type": "object",
                        "additionalProperties": False,
                        "description": "how the Jenkins controller reaches this agent, when "
                        "not at address and ssh.port (an agent behind a bastion)",
                        "properties": {
                            "address": {
                                "type": "string",
                                "pattern": _ADDRESS_PATTERN,
                                "description": "hostname or IP the controller connects to "
                                "(the SSH launcher's host); required with ssh.jump_host, "
                                "which the controller cannot use",
                            },
                            "port": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 65535,
                                "description": "sshd port the controller connects to "
                                "(default: ssh.port)",
                            },
                        },
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True)
class Problem:
    """One finding in an inventory: where (file, 1-based line, dotted key path) and what.
    `str()` is the one-line form every task prints; `to_json()` is inventory-check --json's."""

    file: str
    line: int | None
    key: str  # "hosts[1].ssh.key"; "" when the problem is the file's as a whole
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "key": self.key,
            "message": self.message,
            "severity": self.severity,
        }

    @classmethod
    def from_text(cls, path: Path, text: str) -> Problem:
        """A problem written as `file[:line]: message` (the older string form)."""
        rest = text.removeprefix(f"{path}:") if text.startswith(f"{path}:") else text
        line: int | None = None
        head, sep, tail = rest.partition(":")
        if sep and head.isdigit():
            line, rest = int(head), tail
        return cls(str(path), line, "", rest.strip())


def in_file_order(problems: Iterable[Problem]) -> list[Problem]:
    """Sorted as they stand in the file (stable: same line keeps its order); the file's own
    problems (no line) first."""
    return sorted(problems, key=lambda p: p.line or 0)


class InventoryError(ValueError):
    """Every problem found in one file, one per line: file:line: key.path: what was expected,
    in file order. `problems` holds the lines, `items` the structured `Problem`s."""

    def __init__(self, path: Path, problems: Iterable[str | Problem]) -> None:
        self.path = path
        self.items = [p if isinstance(p, Problem) else Problem.from_text(path, p) for p in problems]
        self.problems = [str(p) for p in self.items]
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
    # "sudo": every host step runs through `sudo -n` (a login user that is not root).
    become: str | None = None
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
    # Least privilege: a group's (or a project's) runners, never the whole instance's unless
    # asked for. `parse` picks project_type when only gitlab.project is given.
    runner_type: str = "group_type"
    group: str | None = None
    project: str | None = None
    executor: str = "shell"
    allow_shared_shell: bool = False
    allow_http: bool = False
    docker_image: str = "alpine:3.20"
    docker_privileged: bool = False
    tags: tuple[str, ...] = ()
    concurrent: int = 2
    runner_version: str = DEFAULT_RUNNER_VERSION
    runner_url: str = DEFAULT_RUNNER_URL
    runner_checksums_url: str = DEFAULT_RUNNER_CHECKSUMS_URL
    runner_sha256: Mapping[str, str] = field(default_factory=dict)
    locked: bool = True
    # The component's archfleet_image, for doctor to look up (no other task reads it).
    tool_image: str | None = None
    tool_image_insecure: bool = False


@dataclass(frozen=True)
class JenkinsSettings:
    url: str
    credentials_id: str
    allow_http: bool = False
    user_env: str = "JENKINS_USER"
    token_env: str = "JENKINS_API_TOKEN"  # noqa: S105 - the name of a variable, not a secret
    remote_root: str = "/var/lib/jenkins-agent"
    executors: int = 2
    labels: tuple[str, ...] = ()
    # "manual": the host key archfleet verified is the only one Jenkins accepts;
    # "known_hosts": the controller's ~/.ssh/known_hosts decides (jenkins_config.py).
    host_key_verification: str = "manual"
    # Jenkins 2.545+ / LTS 2.555.1+ need Java 21 on every agent (toolkit/fleet/java.py).
    java_version: int = 21
    # The agent's own user (owns remote_root); the Jenkins credentials log in as it.
    agent_user: str = "jenkins"
    agent_authorized_key: str | None = None


@dataclass(frozen=True)
class ArchfleetSettings:
    """The pinned archfleet for merge-tool hosts (toolkit/fleet/merge_tool.py installs it)."""

    version: str
    # An https:// URL, or an absolute path on this machine (the inventory's relative path,
    # resolved against its directory).
    wheel: str
    sha256: str
    requirements: Path
    index_url: str | None = None
    find_links: str | None = None

    @property
    def wheel_url(self) -> str | None:
        return self.wheel if "://" in self.wheel else None

    @property
    def wheel_path(self) -> Path | None:
        return None if self.wheel_url else Path(self.wheel)

    @property
    def wheel_name(self) -> str:
        """The wheel's file name: pip needs it to be one, so the download is saved under it."""
        return self.wheel.rstrip("/").rsplit("/", 1)[-1]


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
    # hosts[].jenkins: where the controller's SSH launcher connects (an agent behind a
    # bastion); None: address and ssh.port, as archfleet itself connects.
    jenkins_address: str | None = None
    jenkins_port: int | None = None

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @property
    def jenkins_endpoint(self) -> tuple[str, int]:
        """(host, port) the Jenkins controller's SSH launcher connects to: hosts[].jenkins
        when given (an agent behind a bastion), else address and ssh.port."""
        return self.jenkins_address or self.address, self.jenkins_port or self.ssh.port


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: tuple[Host, ...]
    builder: BuilderSettings
    gitlab: GitLabSettings | None = None
    jenkins: JenkinsSettings | None = None
    archfleet: ArchfleetSettings | None = None
    # What load() found questionable but not wrong (a key file that does not exist here: the
    # task may not need that host); inventory-check reports the file ones as errors.
    warnings: tuple[Problem, ...] = ()

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
    "pattern": lambda v, e, _: not isinstance(v, str) or matches(e, v),
    "minLength": lambda v, e, _: not isinstance(v, str) or len(v) >= e,
    "minimum": lambda v, e, _: not _is_number(v) or v >= e,
    "maximum": lambda v, e, _: not _is_number(v) or v <= e,
    "exclusiveMinimum": lambda v, e, _: not _is_number(v) or v > e,
    "items": lambda v, e, _: not isinstance(v, list) or all(conforms(i, e) for i in v),
    "minItems": lambda v, e, _: not isinstance(v, list) or len(v) >= e,
    "uniqueItems": _check_unique,
}


def _anchored(pattern: str) -> str:
    """The schema's patterns end in `$`, which is the end of the string for JSON Schema
    (ECMA-262) but, in Python's re, also matches before a final newline: here it is `\\Z`."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + r"\Z"
    return pattern


def matches(pattern: str, value: str) -> bool:
    """JSON Schema's `pattern`, anchored as ECMA-262 anchors it (a name ending in a newline
    does not match `^[a-z]+$`)."""
    return re.search(_anchored(pattern), value) is not None


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


def _schema_problems(data: Any, path: Path, lines: _Lines) -> list[Problem]:
    """Every schema problem of `data`, as jsonschema finds them, with file, line and key path."""

    validator = _validator_class()(SCHEMA)
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        where = tuple(error.absolute_path)
        pointer = where
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            # Point at the unknown key itself, not at the mapping holding it.
            known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            pointer = (*where, min(k for k in error.instance if k not in known))
        line = lines.get(pointer) or lines.get(where) or lines.get(where[:-1])
        problems.append(Problem(str(path), line, _dotted(where), _describe(error)))
    return problems


def _validator_class() -> Any:
    """Draft 2020-12 with `pattern` anchored as in `matches` (jsonschema uses re.search)."""
    import jsonschema

    def pattern(
        validator: Any, expected: str, instance: Any, schema: Mapping[str, Any]
    ) -> Iterable[jsonschema.ValidationError]:
        if validator.is_type(instance, "string") and not matches(expected, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {expected!r}")

    extend: Any = jsonschema.validators.extend
    return extend(jsonschema.Draft202012Validator, {"pattern": pattern})


def _describe(error: jsonschema.ValidationError) -> str:
    """jsonschema's wording, made to say what was expected."""
    validator, value = error.validator, error.validator_value
    instance: Any = error.instance
    schema: Any = error.schema
    if validator == "additionalProperties":
        properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
        extra = sorted(set(instance) - set(properties), key=str)
        allowed = ", ".join(sorted(properties))
        guesses = [_did_you_mean(str(key), properties) for key in extra]
        hints = "; ".join(
            f"{key!r}: did you mean {g!r}?" for key, g in zip(extra, guesses, strict=True) if g
        )
        return f"unknown key(s) {', '.join(map(repr, extra))} (expected one of: {allowed})" + (
            f"; {hints}" if hints else ""
        )
    if validator == "required":
        return f"missing {error.message.split(' is a required')[0]}"
    if validator == "enum":
        choices: Any = value
        message = f"expected one of {', '.join(map(str, choices))}; got {instance!r}"
        where = list(error.absolute_path)
        if where[-1:] == ["arch"] and isinstance(instance, str):
            alias = _arch_alias(instance)
            if alias in choices and alias != instance.lower():
                return (
                    f"{message}; did you mean {alias}? ({instance} is the kernel's name, as "
                    "`uname -m` prints it; arch takes the image platform's: amd64, arm64, …)"
                )
        guess = _did_you_mean(str(instance), [str(c) for c in choices])
        return f"{message}; did you mean {guess}?" if guess else message
    if validator == "type":
        return (
            f"expected {'an' if str(value)[0] in 'aeiou' else 'a'} {value}; got {error.instance!r}"
        )
    if validator == "pattern":
        return f"{error.instance!r} does not match {value} (allowed characters only)"
    return error.message


def _did_you_mean(given: str, known: Iterable[str]) -> str | None:
    """The one known name `given` is most likely a misspelling of, or None."""
    import difflib

    names = list(known)
    folded = {name.lower().replace("-", "_"): name for name in names}
    if given.lower().replace("-", "_") in folded:  # case or - vs _ only
        return folded[given.lower().replace("-", "_")]
    close = difflib.get_close_matches(given, names, n=1, cutoff=0.6)
    return close[0] if close else None


def _arch_alias(given: str) -> str | None:
    """The arch tag (toolkit/archmap.py) of a `uname -m` name: x86_64 -> amd64,
    aarch64 -> arm64, armv7l -> arm-v7, i686 -> 386; None if it is none."""
    platform = UNAME_TO_PLATFORM.get(given.strip().lower())
    return Platform.parse(platform).tag_suffix if platform else None


def _dotted(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


_SSH_PATHS = ("key", "known_hosts", "ssh_config_file")


def _ssh_path(value: str) -> Path:
    """An ssh path as connect.py uses it: `~` expanded (relative: to the working directory)."""
    return Path(os.path.expanduser(value))


def _ssh(data: Mapping[str, Any], base: SshSettings) -> SshSettings:
    values: dict[str, Any] = {}
    for key, value in data.items():
        values[key] = _ssh_path(value) if key in _SSH_PATHS else value
    return replace(base, **values, given=base.given | frozenset(values))


def parse(
    data: Any,
    path: Path,
    text: str = "",
    *,
    duplicates: Iterable[Problem] = (),
    strict_files: bool = False,
) -> Inventory:
    """Validate a parsed document and build the model; every problem is reported at once, in
    file order. `duplicates`: the keys the YAML gave twice (`load` finds them). Files the
    ssh settings name that do not exist are warnings on the Inventory, or errors with
    `strict_files` (inventory-check): a task may not need that host, the check says it all."""
    lines = _Lines(text)
    problems = list(duplicates)
    schema = [] if conforms(data) else _schema_problems(data, path, lines)
    problems += schema
    files = _file_problems(data, path, lines, strict=strict_files)
    problems += [p for p in files if p.severity == "error"]
    if not schema:
        problems += _cross_checks(data, path, lines)
    if problems:
        raise InventoryError(path, in_file_order(problems))

    defaults = _ssh(data.get("ssh", {}), SshSettings())
    gitlab: dict[str, Any] = dict(data.get("gitlab") or {})
    jenkins: dict[str, Any] = dict(data.get("jenkins") or {})
    if gitlab:
        gitlab["runner_type"] = runner_type_of(gitlab)
    # YAML lists become tuples: the settings are frozen values.
    for section, key in ((gitlab, "tags"), (jenkins, "labels")):
        if key in section:
            section[key] = tuple(section[key])
    tool = data.get("archfleet")
    return Inventory(
        warnings=tuple(in_file_order(p for p in files if p.severity != "error")),
        path=path,
        builder=BuilderSettings(**data.get("builder", {})),
        gitlab=GitLabSettings(**gitlab) if gitlab else None,
        jenkins=JenkinsSettings(**jenkins) if jenkins else None,
        archfleet=_archfleet(tool, path) if tool else None,
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
                jenkins_address=(h.get("jenkins") or {}).get("address"),
                jenkins_port=(h.get("jenkins") or {}).get("port"),
            )
            for h in data["hosts"]
        ),
    )


_At = Callable[[tuple[str | int, ...], str], Problem]


def _file_problems(data: Any, path: Path, lines: _Lines, *, strict: bool) -> list[Problem]:
    """The files the ssh settings (top level and each host's) name, where they must exist:
    a key (an error with `strict`), an ssh config file that is read (idem), a known_hosts
    (always a warning: --accept-new-host-keys creates it). Defensive about the document's
    shape: this runs beside the schema check, so every problem comes out in one run."""
    if not isinstance(data, dict):
        return []
    places: list[tuple[tuple[str | int, ...], Any, Any]] = [(("ssh",), data.get("ssh"), None)]
    hosts = data.get("hosts")
    for index, host in enumerate(hosts if isinstance(hosts, list) else []):
        if isinstance(host, dict):
            places.append((("hosts", index, "ssh"), host.get("ssh"), data.get("ssh")))
    problems = []
    for where, ssh, defaults in places:
        if not isinstance(ssh, dict):
            continue
        merged = {**(defaults if isinstance(defaults, dict) else {}), **ssh}
        for key in _SSH_PATHS:
            value = ssh.get(key)
            if not isinstance(value, str) or not value:
                continue
            if key == "ssh_config_file" and merged.get("use_ssh_config") is False:
                continue  # a cross check says it would not be read
            file = _ssh_path(value)
            if file.is_file():
                continue
            what = {
                "key": "the private key SSH logs in with",
                "known_hosts": "the host keys to check (only --accept-new-host-keys creates "
                "it; without it every host key is refused)",
                "ssh_config_file": "the OpenSSH client config to read",
            }[key]
            found = "is not a file" if file.exists() else "does not exist"
            severity = "error" if strict and key != "known_hosts" else "warning"
            problems.append(
                Problem(
                    str(path),
                    lines.get((*where, key)),
                    _dotted((*where, key)),
                    # Relative paths are the working directory's, as connect.py opens them.
                    f"{file.absolute()} {found}: expected {what}",
                    severity,
                )
            )
    return problems


def _cross_checks(data: Mapping[str, Any], path: Path, lines: _Lines) -> list[Problem]:
    """What a schema cannot say: unique names, roles that need their server section, the
    Jenkins controller's own way to an agent behind a jump host."""
    problems = []

    def at(where: tuple[str | int, ...], message: str) -> Problem:
        return Problem(str(path), lines.get(where), _dotted(where), message)

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
        for role, section in ROLE_SECTIONS.items():
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
    for index, host in enumerate(data["hosts"]):
        problem = address_problem(host["address"])
        if problem:
            problems.append(at(("hosts", index, "address"), problem))
    for where, ssh in [(("ssh",), defaults)] + [
        (("hosts", i, "ssh"), h.get("ssh") or {}) for i, h in enumerate(data["hosts"])
    ]:
        jump = ssh.get("jump_host")
        problem = jump_host_problem(jump) if isinstance(jump, str) else None
        if problem:
            problems.append(at((*where, "jump_host"), problem))
    problems += _jenkins_host_checks(data, at)
    problems += _gitlab_checks(data.get("gitlab"), at)
    problems += _archfleet_checks(data.get("archfleet"), path, at)
    for section in ("gitlab", "jenkins"):
        settings = data.get(section) or {}
        url = str(settings.get("url", ""))
        if url.startswith("http://") and not settings.get("allow_http"):
            problems.append(
                at(
                    (section, "url"),
                    f"{url!r} is plain http: the API token would travel in clear; expected "
                    f"https://… (or set {section}.allow_http: true for a lab)",
                )
            )
    return problems


def _jenkins_host_checks(data: Mapping[str, Any], at: _At) -> list[Problem]:
    """hosts[].jenkins: a plain address, only on an agent; and an agent that archfleet reaches
    through a jump host must say where the controller reaches it: Jenkins' SSH launcher
    connects to its host:port directly (ssh-agents plugin SSHLauncher: no proxy or jump host
    setting), so the host's own address, which only the jump host can reach, would leave
    the node offline for good."""
    problems = []
    defaults = data.get("ssh") or {}
    for index, host in enumerate(data["hosts"]):
        own = host.get("ssh") or {}
        reach = host.get("jenkins") or {}
        agent = "jenkins-agent" in host["roles"]
        if "jenkins" in host and not agent:
            problems.append(
                at(
                    ("hosts", index, "jenkins"),
                    "set, but the host has no jenkins-agent role: it would not be used "
                    "(expected the role, or no jenkins: here)",
                )
            )
        if "address" in reach:
            problem = address_problem(reach["address"])
            if problem:
                problems.append(at(("hosts", index, "jenkins", "address"), problem))
        jump = own.get("jump_host") or defaults.get("jump_host")
        if agent and jump and "address" not in reach:
            where: tuple[str | int, ...] = (
                ("hosts", index, "ssh", "jump_host") if own.get("jump_host") else ("hosts", index)
            )
            origin = "" if own.get("jump_host") else " (the top-level ssh.jump_host)"
            problems.append(
                at(
                    where,
                    f"host {host['name']!r} is a Jenkins agent reached through jump host "
                    f"{jump!r}{origin}, but the Jenkins controller connects to its agents "
                    f"directly and cannot use the jump host: set hosts[{index}].jenkins.address "
                    "(and jenkins.port if not ssh.port) to the address the controller reaches "
                    "the agent at",
                )
            )
    return problems


def _gitlab_checks(gitlab: Mapping[str, Any] | None, at: _At) -> list[Problem]:
    if not gitlab:
        return []
    problems = []
    kind = runner_type_of(gitlab)
    needs = {"group_type": "group", "project_type": "project"}.get(kind)
    if needs and not gitlab.get(needs):
        where = ("gitlab", "runner_type") if "runner_type" in gitlab else ("gitlab",)
        default = "" if "runner_type" in gitlab else " (the default)"
        problems.append(
            at(
                where,
                f"runner_type {kind}{default} needs gitlab.{needs}: the group (or, with "
                "project_type, the project) whose runners these are",
            )
        )
    executor = gitlab.get("executor", "shell")
    if kind == "instance_type" and executor == "shell" and not gitlab.get("allow_shared_shell"):
        problems.append(
            at(
                ("gitlab", "runner_type"),
                "an instance_type runner with the shell executor runs every project's jobs on "
                "the build host as gitlab-runner (in the docker group, that is root): expected "
                "group_type or project_type, or set gitlab.allow_shared_shell: true",
            )
        )
    return problems


def shipped_lock() -> Path:
    """The lock of archfleet's own runtime dependencies that ships in the package (the tool
    image installs from it too): ci-templates/image/requirements.txt."""
    from .resources import data_path

    return data_path("ci-templates") / "image" / "requirements.txt"


def _local(value: str, inventory: Path) -> Path:
    """A path the inventory gives: `~` expanded, relative to the inventory's directory."""
    given = Path(os.path.expanduser(value))
    return given if given.is_absolute() else (inventory.parent / given).absolute()


def _archfleet(data: Mapping[str, Any], inventory: Path) -> ArchfleetSettings:
    wheel = str(data["wheel"])
    given = data.get("requirements")
    return ArchfleetSettings(
        version=data["version"],
        wheel=wheel if "://" in wheel else str(_local(wheel, inventory)),
        sha256=data["sha256"],
        requirements=_local(given, inventory) if given else shipped_lock(),
        index_url=data.get("index_url"),
        find_links=data.get("find_links"),
    )


def _https_problem(url: str, what: str) -> str | None:
    """None for a plain https URL; else what is wrong. No credentials and no query: they would
    be secrets on the host's command lines and in our error messages (so a URL with
    credentials is shown without them)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if "@" in parts.netloc:
        shown = url.replace(parts.netloc, "…@" + parts.netloc.rpartition("@")[2], 1)
        return (
            f"{shown!r} holds credentials: expected a URL without user:password@ (put them in "
            "the host's pip.conf or ~/.netrc, which never reach a command line)"
        )
    if not url.startswith("https://"):
        return f"{url!r}: expected an https:// URL ({what} is downloaded on the host over https)"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return f"{url!r} has a query or fragment: expected a plain https://host/path URL"
    if not parts.hostname:
        return f"{url!r} names no host: expected https://host/path"
    return None


def _archfleet_checks(tool: Mapping[str, Any] | None, path: Path, at: _At) -> list[Problem]:
    """The wheel (https URL or an existing file, named archfleet-<version>-….whl, with the
    sha256 given when it is local), the lock (every line pinned and hashed), https indexes."""
    import hashlib

    if not tool:
        return []
    problems = []
    version, wheel, sha256 = tool["version"], str(tool["wheel"]), tool["sha256"]
    where = ("archfleet", "wheel")
    name = wheel.rstrip("/").rsplit("/", 1)[-1]
    named = wheel_version(name, "archfleet")
    problem = _https_problem(wheel, "the wheel") if "://" in wheel else None
    if problem:
        problems.append(at(where, problem))
    elif named is None:
        problems.append(
            at(where, f"{name!r} is not a wheel of archfleet: expected archfleet-{version}-….whl")
        )
    elif named != version:
        problems.append(
            at(
                where,
                f"{name!r} is archfleet {named}, but archfleet.version is {version}: expected "
                f"archfleet-{version}-….whl (or the version of this wheel)",
            )
        )
    if "://" not in wheel:
        local = _local(wheel, path)
        try:
            digest = hashlib.sha256(local.read_bytes()).hexdigest()
        except OSError as exc:
            problems.append(
                at(
                    where,
                    f"cannot read the wheel {local} ({exc.strerror or exc}): expected an "
                    "https:// URL or an existing file",
                )
            )
        else:
            if digest != sha256:
                problems.append(
                    at(
                        ("archfleet", "sha256"),
                        f"{local} has sha256 {digest}, not {sha256}: expected the sha256 of "
                        "the wheel (sha256sum)",
                    )
                )
    for key in ("index_url", "find_links"):
        if key in tool:
            problem = _https_problem(str(tool[key]), "every dependency")
            if problem:
                problems.append(at(("archfleet", key), problem))
    problems += _lock_problems(tool, path, at)
    return problems


def _lock_problems(tool: Mapping[str, Any], path: Path, at: _At) -> list[Problem]:
    from .resources import ResourceError

    given = tool.get("requirements")
    where = ("archfleet", "requirements") if given else ("archfleet",)
    try:
        lock = _local(given, path) if given else shipped_lock()
        text = lock.read_text(encoding="utf-8")
    except ResourceError as exc:
        return [at(where, f"no archfleet.requirements given and {exc}")]
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        which = "" if given else " (no archfleet.requirements given: the shipped lock)"
        return [at(where, f"cannot read the lock {lock}{which} ({reason})")]
    check = check_lock(text)
    return [at(where, f"{lock}:{line}: {problem}") for line, problem in check.problems]


def runner_type_of(gitlab: Mapping[str, Any]) -> str:
    """The runner type asked for: explicit, else group_type, or project_type when only a
    project is named."""
    if "runner_type" in gitlab:
        return str(gitlab["runner_type"])
    return "project_type" if gitlab.get("project") and not gitlab.get("group") else "group_type"


_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")


def address_problem(address: str) -> str | None:
    """None for a hostname (or an ssh config Host alias of that form), an IPv4 or an IPv6
    address; else what is wrong. Nothing here can carry shell or ssh-config syntax."""
    import ipaddress

    expected = "expected a hostname, an IPv4 or an IPv6 address"
    if ":" in address:
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return f"{address!r} is not an IPv6 address; {expected} (no port: use ssh.port)"
        return None
    if "%" in address:
        return f"{address!r}: a %zone only goes with an IPv6 address; {expected}"
    labels = address.rstrip(".").split(".")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            return f"{address!r} is not an IPv4 address; {expected}"
        return None
    if len(address) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        return f"{address!r} is not a hostname (labels of letters, digits, '-'); {expected}"
    return None


def jump_host_problem(spec: str) -> str | None:
    """`[user@]host[:port]`, each part checked as the host's own are."""
    user, _, rest = spec.rpartition("@")
    if user and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}", user):
        return f"jump host user {user!r} is not a plain user name; expected [user@]host[:port]"
    host, port = rest, ""
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else tail
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        return f"jump host port {port!r}: expected 1..65535"
    problem = address_problem(host)
    return f"jump host {spec!r}: {problem}" if problem else None


class _Loader(yaml.SafeLoader):
    """PyYAML's SafeLoader, noting a mapping key given twice (`user: ci` then `user: root`):
    YAML says keys are unique, PyYAML silently keeps the last. Noting is cheap; where the
    duplicates are is worked out (`_duplicate_problems`) only for a file that has one."""

    duplicated = False

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if _duplicates_in(node):
            self.duplicated = True
        return super().construct_mapping(node, deep=deep)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _duplicates_in(node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
    """(first, again) key nodes of each scalar key `node` holds more than once (a `<<` merge
    key is YAML's way to override, not a duplicate)."""
    seen: dict[tuple[str, str], yaml.Node] = {}
    found: list[tuple[yaml.Node, yaml.Node]] = []
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
            continue
        first = seen.setdefault((key.tag, key.value), key)
        if first is not key:
            found.append((first, key))
    return found


def _duplicate_problems(text: str, path: Path) -> list[Problem]:
    """Each key given twice in its mapping, at the second place, naming both lines."""
    problems = []

    def walk(node: yaml.Node, where: tuple[str | int, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for first, again in _duplicates_in(node):
                problems.append(
                    Problem(
                        str(path),
                        again.start_mark.line + 1,
                        _dotted((*where, str(again.value))),
                        f"duplicate key {again.value!r} (also on line "
                        f"{first.start_mark.line + 1}): YAML keeps only the last one; "
                        "expected each key once",
                    )
                )
            for key, value in node.value:
                walk(value, (*where, str(key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*where, index))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return problems


def load(path: Path | str, *, strict_files: bool = False) -> Inventory:
    """The inventory at `path`, or an InventoryError with every problem in file order.
    `strict_files`: key and ssh config files that do not exist are errors, not warnings."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(path, [f"{path}: cannot read inventory ({exc.strerror})"]) from None
    try:
        loader = _Loader(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else f"{path}"
        raise InventoryError(
            path, [f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})"]
        ) from None
    duplicates = _duplicate_problems(text, path) if loader.duplicated else []
    return parse(data, path, text, duplicates=duplicates, strict_files=strict_files)
