"""Jenkins agent lifecycle: permanent SSH nodes through jenkinsapi, and the host side (Java,
the agent's remote root).

jenkinsapi's `create_node` returns an EXISTING node unchanged, and its SSH launcher helper
looks credentials up by description rather than id. So a node is created the plain way (a
JNLP node, exclusive, with its labels) and at once given its complete config.xml
(`jenkins_config.node_config_xml`: SSH launcher with the credentials id, and the host key
archfleet verified over SSH as the only key Jenkins accepts — or the controller's known_hosts,
by jenkins.host_key_verification); if that upload fails the node is deleted again, so no
half-made node stays behind. An existing node is reconciled through its config.xml, keeping
everything archfleet does not manage.

Where the node's SSH launcher connects is `launcher_endpoint(host)`: the host's
`jenkins.address`/`jenkins.port` when the inventory gives them (an agent that archfleet reaches
through a jump host, which the controller cannot use), else its address and ssh.port.
`agent_node()` gathers every value a node gets into one `AgentNode`, which both the API
(`JenkinsNodes.ensure_node`) and Configuration as Code (toolkit/fleet/jenkins_casc.py) apply.

The API token is handed to jenkinsapi and nowhere else: no message, repr or log line of this
module contains it (errors say which environment variables to check instead).
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import requests
from jenkinsapi.custom_exceptions import JenkinsAPIException
from jenkinsapi.jenkins import Jenkins
from jenkinsapi.node import Node

from ..inventory import Host, JenkinsSettings
from .errors import JenkinsAgentError
from .jenkins_config import (
    MANAGED_DESCRIPTION,
    NodeConfig,
    NodeConfigError,
    check_labels,
    node_config_xml,
    node_differences,
    parse_node_config,
    reconcile_node_config,
)
from .plan import NodeState
from .users import check_name, ensure_job_user_script

__all__ = [
    "AgentNode",
    "JenkinsAgentError",
    "JenkinsNodes",
    "NodeOutcome",
    "agent_node",
    "check_node_name",
    "ensure_agent_user_script",
    "launcher_endpoint",
    "node_config_xml",
]

# Jenkins.checkGoodName refuses these in any item or node name.
_UNSAFE_NAME_CHARS = set("?*/\\%!@#$^&|<>[]:;")
BUILT_IN = "Built-In Node"


def check_node_name(name: str) -> str:
    bad = sorted({c for c in name if c in _UNSAFE_NAME_CHARS or not c.isprintable()})
    if not name.strip() or name in (".", "..") or name == BUILT_IN or bad:
        why = f"contains {''.join(bad)!r}" if bad else "is reserved or empty"
        raise JenkinsAgentError(
            f"node name {name!r} {why}; Jenkins node names may not contain "
            f"{''.join(sorted(_UNSAFE_NAME_CHARS))} (expected e.g. 'build-arm64-1')"
        )
    return name


def launcher_endpoint(host: Host) -> tuple[str, int]:
    """(host, port) the controller's SSH launcher connects to: hosts[].jenkins.address and
    .port when given (the inventory refuses a jump-host agent without an address), else the
    address and ssh.port archfleet itself uses (Host.jenkins_endpoint)."""
    return host.jenkins_endpoint


@dataclass(frozen=True)
class AgentNode:
    """Everything archfleet sets on one permanent agent, planned once: what
    `JenkinsNodes.ensure_node` writes through the REST API and what jenkins-casc prints for a
    controller managed as code."""

    name: str
    host: str  # the launcher's host: launcher_endpoint()
    port: int
    labels: tuple[str, ...]
    executors: int
    remote_root: str
    credentials_id: str
    host_key_verification: str  # jenkins.host_key_verification: manual | known_hosts
    # (algorithm, base64): the key archfleet verified for the host (manual verification).
    host_key: tuple[str, str] | None = None
    description: str = MANAGED_DESCRIPTION

    def config_xml(self) -> str:
        """The node's config.xml (jenkins_config.node_config_xml); refuses what Jenkins could
        not hold (NodeConfigError), so both ways of applying refuse the same values."""
        check_node_name(self.name)
        return node_config_xml(
            self.name,
            address=self.host,
            port=self.port,
            labels=self.labels,
            executors=self.executors,
            remote_root=self.remote_root,
            credentials_id=self.credentials_id,
            description=self.description,
            host_key_verification=self.host_key_verification,
            host_key=self.host_key,
        )


def agent_node(
    host: Host,
    jenkins: JenkinsSettings,
    labels: Sequence[str],
    *,
    executors: int | None = None,
    host_key: tuple[str, str] | None = None,
) -> AgentNode:
    """The node of `host`: `labels` as planned (plan.desired_agent_labels: detected arch
    first), executors the host's own or jenkins.executors, the launcher at
    `launcher_endpoint(host)`."""
    address, port = launcher_endpoint(host)
    return AgentNode(
        name=host.name,
        host=address,
        port=port,
        labels=tuple(labels),
        executors=executors if executors is not None else host.executors or jenkins.executors,
        remote_root=jenkins.remote_root,
        credentials_id=jenkins.credentials_id,
        host_key_verification=jenkins.host_key_verification,
        host_key=host_key,
    )


@dataclass(frozen=True)
class NodeOutcome:
    """What `ensure` did to one node."""

    name: str
    action: Literal["created", "updated", "unchanged"]
    differences: tuple[str, ...]
    state: NodeState


class JenkinsNodes:
    """Permanent agent nodes of one Jenkins controller."""

    def __init__(
        self,
        jenkins: Any,
        *,
        url: str,
        user: str,
        credentials_hint: str,
        host_key_verification: str = "manual",
    ) -> None:
        self._jenkins = jenkins
        self.url = url
        self.user = user
        # jenkins.host_key_verification: "manual" (the verified key) or "known_hosts".
        self.host_key_verification = host_key_verification
        # e.g. "JENKINS_USER / JENKINS_API_TOKEN": what to check when Jenkins refuses us.
        self._credentials_hint = credentials_hint
        self._lock = threading.Lock()
        self._snapshot: Mapping[str, bool] | None = None

    def __repr__(self) -> str:
        return f"JenkinsNodes(url={self.url!r}, user={self.user!r})"

    @classmethod
    def from_settings(
        cls,
        settings: JenkinsSettings,
        env: Mapping[str, str],
        *,
        timeout: int = 30,
        ssl_verify: bool = True,
    ) -> JenkinsNodes:
        url = settings.url.rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise JenkinsAgentError(f"jenkins.url {settings.url!r} is not an http(s) URL")
        if parts.username or parts.password:
            raise JenkinsAgentError(
                f"jenkins.url contains credentials; put the user in {settings.user_env} and "
                f"the API token in {settings.token_env} instead"
            )
        hint = f"{settings.user_env} / {settings.token_env}"
        user, token = env.get(settings.user_env, ""), env.get(settings.token_env, "")
        missing = [n for n, v in ((settings.user_env, user), (settings.token_env, token)) if not v]
        if missing:
            raise JenkinsAgentError(
                f"Jenkins at {url} needs a user and an API token: set {' and '.join(missing)} "
                f"in the environment (user in {settings.user_env}, token in {settings.token_env})"
            )
        # lazy: jenkinsapi's own first request lists every job (and one more per folder);
        # the check that Jenkins answers and takes the credentials is the node listing,
        # which a fleet command needs anyway (`snapshot`).
        jenkins = Jenkins(
            url, username=user, password=token, timeout=timeout, ssl_verify=ssl_verify, lazy=True
        )
        nodes = cls(
            jenkins,
            url=url,
            user=user,
            credentials_hint=hint,
            host_key_verification=settings.host_key_verification,
        )
        try:
            nodes._snapshot = nodes._fetch_listing()
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise JenkinsAgentError(
                f"connecting to Jenkins at {url}: {_reason(exc, hint)}"
            ) from None
        return nodes

    # ------------------------------------------------------------------ plumbing

    def _node_url(self, name: str) -> str:
        return f"{self.url}/computer/{quote(name, safe='')}"

    def _node(self, name: str) -> Any:
        # poll=False: no request until we ask for something.
        return Node(self._jenkins, self._node_url(name), name, node_dict={}, poll=False)

    def _fail(self, what: str, exc: Exception) -> JenkinsAgentError:
        return JenkinsAgentError(f"{what} on {self.url}: {_reason(exc, self._credentials_hint)}")

    def _fetch_listing(self) -> dict[str, bool]:
        data = self._jenkins.get_data(
            f"{self.url}/computer/api/python", tree="computer[displayName,offline]"
        )
        return {
            str(computer.get("displayName")): not computer.get("offline", True)
            for computer in data.get("computer", [])
        }

    def _listing(self, what: str) -> dict[str, bool]:
        """name -> online, of every node (the built-in one too): ONE request for them all."""
        try:
            return self._fetch_listing()
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise self._fail(what, exc) from None

    def snapshot(self) -> Mapping[str, bool]:
        """The node listing (name -> online) as it was when this client connected (or at the
        first call): what one fleet command plans against, for all its hosts, instead of a
        listing per host. `find` without it, and every write, read the listing anew."""
        with self._lock:
            if self._snapshot is None:
                self._snapshot = self._listing("listing nodes")
            return self._snapshot

    def _exists(self, name: str) -> bool:
        try:
            return name in self._jenkins.get_nodes()
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise self._fail(f"listing nodes (looking for {name!r})", exc) from None

    def _config_xml(self, name: str) -> str:
        try:
            text: str = self._node(name).get_config()
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise self._fail(f"reading node {name!r} config.xml", exc) from None
        return text

    def _upload(self, name: str, config_xml: str) -> None:
        try:
            self._node(name).upload_config(config_xml)
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise self._fail(f"writing node {name!r} config.xml", exc) from None

    # ------------------------------------------------------------------ reading

    def config(self, name: str) -> NodeConfig | None:
        """The managed settings of node `name` as Jenkins stores them, or None."""
        check_node_name(name)
        if not self._exists(name):
            return None
        try:
            return parse_node_config(self._config_xml(name), node=name)
        except NodeConfigError as exc:
            raise JenkinsAgentError(f"{exc} (on {self.url})") from None

    def find(self, name: str, *, listing: Mapping[str, bool] | None = None) -> NodeState | None:
        """Node `name` as Jenkins stores it, or None: its config.xml, and whether it exists and
        is online from `listing` (e.g. `snapshot()`), else from a listing read now."""
        check_node_name(name)
        if listing is None:
            listing = self._listing(f"listing nodes (looking for {name!r})")
        if name not in listing:
            return None
        try:
            config = parse_node_config(self._config_xml(name), node=name)
        except NodeConfigError as exc:
            raise JenkinsAgentError(f"{exc} (on {self.url})") from None
        return NodeState(
            name=name,
            labels=config.labels,
            executors=config.executors,
            remote_root=config.remote_root,
            credentials_id=config.credentials_id,
            online=listing[name],
            host_key=config.host_key,
            host_key_strategy=config.host_key_strategy,
            launcher_host=config.host,
            launcher_port=config.port,
        )

    def is_online(self, name: str) -> bool:
        check_node_name(name)
        try:
            return bool(self._node(name).is_online())
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise self._fail(f"reading whether node {name!r} is online", exc) from None

    def online_by_label(self) -> dict[str, bool]:
        """label -> is at least one online node carrying it (one request for all nodes).
        A node's implicit self-label (its own name) is left out."""
        try:
            data = self._jenkins.get_data(
                f"{self.url}/computer/api/python",
                tree="computer[displayName,offline,assignedLabels[name]]",
            )
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise self._fail("listing nodes and their labels", exc) from None
        result: dict[str, bool] = {}
        for computer in data.get("computer", []):
            name = computer.get("displayName")
            online = not computer.get("offline", True)
            for entry in computer.get("assignedLabels") or []:
                label = entry.get("name")
                if label and label != name:
                    result[label] = result.get(label, False) or online
        return result

    # ------------------------------------------------------------------ writing

    def create(
        self,
        name: str,
        *,
        address: str,
        port: int,
        labels: Sequence[str],
        executors: int,
        remote_root: str,
        credentials_id: str,
        host_key: tuple[str, str] | None = None,
    ) -> NodeState:
        """Create node `name`; an existing node is an error (see `ensure`). Either the node
        ends complete, or it is deleted again and the error says so. `host_key`:
        (algorithm, base64) that archfleet verified on its own SSH connection to the host
        (paramiko `get_remote_server_key()`: `get_name()`, `get_base64()`)."""
        check_node_name(name)
        try:
            config_xml = node_config_xml(
                name,
                address=address,
                port=port,
                labels=labels,
                executors=executors,
                remote_root=remote_root,
                credentials_id=credentials_id,
                host_key_verification=self.host_key_verification,
                host_key=host_key,
            )
        except NodeConfigError as exc:
            raise JenkinsAgentError(str(exc)) from None
        if self._exists(name):
            raise JenkinsAgentError(
                f"node {name!r} already exists on {self.url}; update it instead of creating it"
            )
        try:
            self._jenkins.create_node(
                name,
                num_executors=executors,
                node_description=MANAGED_DESCRIPTION,
                remote_fs=remote_root,
                labels=" ".join(labels),
                exclusive=True,
            )
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise self._fail(f"creating node {name!r}", exc) from None
        try:
            self._upload(name, config_xml)
        except BaseException as exc:
            self._roll_back(name, exc)
            raise
        state = self.find(name)
        if state is None:
            raise JenkinsAgentError(f"node {name!r} was created on {self.url} but is not listed")
        return state

    def _roll_back(self, name: str, cause: BaseException) -> None:
        """Delete a node whose configuration did not go through; say what happened."""
        try:
            self._jenkins.delete_node(name)
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise JenkinsAgentError(
                f"{cause}; deleting the half-created node {name!r} failed too "
                f"({_reason(exc, self._credentials_hint)}): delete it by hand"
            ) from None
        if isinstance(cause, JenkinsAgentError):
            raise JenkinsAgentError(
                f"{cause}; the half-created node {name!r} was deleted again"
            ) from None

    def update(
        self,
        name: str,
        *,
        labels: Sequence[str],
        executors: int,
        remote_root: str,
        credentials_id: str,
        address: str | None = None,
        port: int | None = None,
        host_key: tuple[str, str] | None = None,
    ) -> tuple[str, ...]:
        """Set the managed settings of existing node `name` through its config.xml, keeping
        everything else. Returns the differences found; none means nothing was written.
        A `host_key` other than the node's (the host was reinstalled) is a difference."""
        check_node_name(name)
        if not self._exists(name):
            raise JenkinsAgentError(f"node {name!r} does not exist on {self.url}; create it")
        current_xml = self._config_xml(name)
        try:
            current = parse_node_config(current_xml, node=name)
            wanted = check_labels(name, labels)
            differences = node_differences(
                current,
                labels=wanted,
                executors=executors,
                remote_root=remote_root,
                credentials_id=credentials_id,
                address=address,
                port=port,
                host_key_verification=self.host_key_verification,
                host_key=host_key,
            )
            if not differences:
                return ()
            new_xml = reconcile_node_config(
                current_xml,
                node=name,
                labels=wanted,
                executors=executors,
                remote_root=remote_root,
                credentials_id=credentials_id,
                address=address,
                port=port,
                host_key_verification=self.host_key_verification,
                host_key=host_key,
            )
        except NodeConfigError as exc:
            raise JenkinsAgentError(f"{exc} (on {self.url})") from None
        self._upload(name, new_xml)
        return differences

    def ensure(
        self,
        name: str,
        *,
        address: str,
        port: int,
        labels: Sequence[str],
        executors: int,
        remote_root: str,
        credentials_id: str,
        host_key: tuple[str, str] | None = None,
    ) -> NodeOutcome:
        """Create the node, or reconcile the existing one; a second call changes nothing.
        `host_key` (algorithm, base64): the key archfleet verified on its SSH connection to the
        host, the only one Jenkins will accept (jenkins.host_key_verification "manual")."""
        settings: dict[str, Any] = {
            "labels": labels,
            "executors": executors,
            "remote_root": remote_root,
            "credentials_id": credentials_id,
            "host_key": host_key,
        }
        if not self._exists(name):
            created = self.create(name, address=address, port=port, **settings)
            return NodeOutcome(name, "created", (), created)
        differences = self.update(name, address=address, port=port, **settings)
        state = self.find(name)
        if state is None:
            raise JenkinsAgentError(f"node {name!r} vanished from {self.url} while updating it")
        return NodeOutcome(name, "updated" if differences else "unchanged", differences, state)

    def ensure_node(self, node: AgentNode) -> NodeOutcome:
        """`ensure` with an `agent_node()`'s values (its launcher endpoint included)."""
        if node.host_key_verification != self.host_key_verification:
            raise JenkinsAgentError(
                f"node {node.name!r}: planned with host key verification "
                f"{node.host_key_verification!r}, but this client writes "
                f"{self.host_key_verification!r} (one jenkins: section for both)"
            )
        return self.ensure(
            node.name,
            address=node.host,
            port=node.port,
            labels=node.labels,
            executors=node.executors,
            remote_root=node.remote_root,
            credentials_id=node.credentials_id,
            host_key=node.host_key,
        )

    def delete(self, name: str) -> bool:
        """Delete node `name`; False if there was none."""
        check_node_name(name)
        if not self._exists(name):
            return False
        try:
            self._jenkins.delete_node(name)
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise self._fail(f"deleting node {name!r}", exc) from None
        return True


def _reason(exc: BaseException, credentials_hint: str) -> str:
    """What went wrong, without request bodies, headers or URLs' query strings."""
    status: int | None = None
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
    elif isinstance(exc, JenkinsAPIException):
        text = str(exc)
        marker = text.find("status=")
        if marker >= 0:
            digits = text[marker + 7 : marker + 10]
            status = int(digits) if digits.isdigit() else None
    if status in (401, 403):
        return (
            f"HTTP {status}: Jenkins refused the user or API token ({credentials_hint}), "
            "or the user lacks Agent/Create, Configure or Delete"
        )
    if status == 404:
        return "HTTP 404: not found"
    if status is not None:
        return f"HTTP {status}"
    if isinstance(exc, requests.RequestException):
        return f"{type(exc).__name__}: cannot reach Jenkins"
    return type(exc).__name__


# ---------------------------------------------------------------------- host side (pure)


def ensure_agent_user_script(
    user: str, remote_root: str, docker_group: str | None, authorized_key: str | None = None
) -> str:
    """POSIX sh, run as root (or with sudo) over the provisioning login: the user the Jenkins
    agent runs as (jenkins.agent_user) exists and can build.

    - the user is created if missing (`useradd`, or busybox `adduser` on Alpine), a regular
      user with a home (its ~/.ssh/authorized_keys must hold the public half of the Jenkins
      credentials `jenkins.credentials_id`: the SSH launcher logs in as this user), with no
      password ("*", not locked "!", which sshd without PAM refuses even for key logins);
    - the remote root is created, owned by the user and its group, mode 0750 (it holds the
      workspaces and agent.jar);
    - with `docker_group` (builder docker) the user is added to that group, created if the
      Docker package has not done so yet;
    - the user gets subordinate uid and gid ranges in /etc/subuid and /etc/subgid if it has
      none: rootless buildah maps the container's ids there ("there might not be enough IDs
      available in the namespace" otherwise). A free range of 65536 after the highest in use,
      as useradd picks one for a new regular user.
    """
    check_name("jenkins.agent_user", user)
    if docker_group is not None:
        check_name("builder.group", docker_group)
    if not remote_root.startswith("/") or "\x00" in remote_root:
        raise ValueError(f"remote root {remote_root!r}: expected an absolute path")
    root = shlex.quote(remote_root)
    return ensure_job_user_script(
        user,
        comment="Jenkins agent",
        groups=(docker_group,) if docker_group else (),
        subids=True,
        ssh_login=True,
    ) + (
        f'mkdir -p -- {root}\nchown -- "$user:$group" {root}\nchmod 0750 -- {root}\n'
        + (_authorized_key_lines(authorized_key) if authorized_key else "")
    )


def _authorized_key_lines(key: str) -> str:
    """The controller's key in the agent user's ~/.ssh/authorized_keys (once; sshd's
    StrictModes wants the directory 0700 and the file 0600, owned by the user)."""
    if any(c in key for c in "\r\n\x00"):
        raise ValueError("jenkins.agent_authorized_key: expected one line")
    k = shlex.quote(key.strip())
    keys = '"$home/.ssh/authorized_keys"'
    return (
        'home=$(getent passwd "$user" | cut -d: -f6)\n'
        'mkdir -p "$home/.ssh"\n'
        f"touch {keys}\n"
        f"grep -qxF {k} {keys} || printf '%s\\n' {k} >>{keys}\n"
        'chown -R "$user:$group" "$home/.ssh"\n'
        'chmod 700 "$home/.ssh"\n'
        f"chmod 600 {keys}\n"
    )
