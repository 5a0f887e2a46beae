"""A Jenkins permanent agent's config.xml, built and read without I/O.

What we write is what Jenkins itself stores for a `hudson.slaves.DumbSlave` (XStream writes
its root under the alias `<slave>`): an SSH launcher (ssh-slaves plugin) with host, port and
credentials id, labels, executors, remote root, mode EXCLUSIVE (only jobs that ask for one of
its labels land on it: an arm64 agent must never pick up "any" job) and
`RetentionStrategy$Always` (keep it connected).

Host keys: `KnownHostsFileKeyVerificationStrategy` — the controller checks the agent's key
against its own `~/.ssh/known_hosts` and refuses an unknown or changed key. It never trusts
blindly: `NonVerifying` trusts anything, and `ManuallyTrusted` without
`requireInitialManualTrust` trusts whatever key it sees first (the one moment an attacker in
the middle would choose). The price: the controller's known_hosts must hold the agent's key
(the same line the inventory's known_hosts holds) before the agent can come online.

Every value is text of an element and goes through ElementTree, which escapes it; values
XML cannot carry (control characters, CR) and labels that Jenkins would split are refused.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

SSH_LAUNCHER = "hudson.plugins.sshslaves.SSHLauncher"
KNOWN_HOSTS_STRATEGY = "hudson.plugins.sshslaves.verifiers.KnownHostsFileKeyVerificationStrategy"
# Strategies that accept a key nobody checked; an existing node using one is put right.
UNSAFE_STRATEGIES = frozenset(
    {"", "hudson.plugins.sshslaves.verifiers.NonVerifyingKeyVerificationStrategy"}
)
RETENTION_ALWAYS = "hudson.slaves.RetentionStrategy$Always"
MANAGED_DESCRIPTION = "managed by archfleet (provision-runners)"
# XStream's alias and the class name: Jenkins writes the first and reads both.
_ROOTS = ("slave", "hudson.slaves.DumbSlave")
_LAUNCH_TIMEOUT_SECONDS = 60
_MAX_RETRIES = 10
_RETRY_WAIT_SECONDS = 15
# Characters XML 1.0 text cannot hold, plus CR (a parser turns it into LF).
_NOT_XML = re.compile("[\x00-\x08\x0b-\x0d\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


class NodeConfigError(ValueError):
    """A value cannot go into a node's config.xml, or a config.xml is not what was expected."""


@dataclass(frozen=True)
class NodeConfig:
    """The parts of a node's config.xml that archfleet manages (and reads back)."""

    name: str
    labels: tuple[str, ...]
    executors: int
    remote_root: str
    mode: str
    launcher: str
    host: str = ""
    port: int = 0
    credentials_id: str = ""
    host_key_strategy: str = ""
    description: str = ""


def _text(what: str, value: str) -> str:
    bad = _NOT_XML.search(value)
    if bad:
        raise NodeConfigError(
            f"{what} {value!r} contains {bad.group()!r}, which a config.xml cannot hold"
        )
    return value


def check_labels(node: str, labels: Sequence[str]) -> tuple[str, ...]:
    """Jenkins keeps labels as one space-separated string: a label with whitespace would
    silently become two, so it is refused here."""
    for label in labels:
        _text(f"node {node!r}: label", label)
        if not label or any(c.isspace() for c in label):
            raise NodeConfigError(
                f"node {node!r}: label {label!r} is empty or contains whitespace; Jenkins "
                "splits labels on whitespace (expected e.g. 'amd64')"
            )
    return tuple(dict.fromkeys(labels))


def _checked(
    name: str, labels: Sequence[str], executors: int, remote_root: str, credentials_id: str
) -> tuple[str, ...]:
    _text("node name", name)
    if not name.strip():
        raise NodeConfigError("node name is empty")
    if isinstance(executors, bool) or not isinstance(executors, int) or executors < 1:
        raise NodeConfigError(f"node {name!r}: executors {executors!r}: expected an integer >= 1")
    _text(f"node {name!r}: remote root", remote_root)
    if not remote_root.startswith("/"):
        raise NodeConfigError(
            f"node {name!r}: remote root {remote_root!r}: expected an absolute path"
        )
    _text(f"node {name!r}: credentials id", credentials_id)
    if not credentials_id.strip():
        raise NodeConfigError(f"node {name!r}: credentials id is empty")
    return check_labels(name, labels)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _launcher(name: str, address: str, port: int, credentials_id: str) -> ET.Element:
    _text(f"node {name!r}: address", address)
    if not address.strip():
        raise NodeConfigError(f"node {name!r}: address is empty")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise NodeConfigError(f"node {name!r}: SSH port {port!r}: expected 1..65535")
    launcher = ET.Element("launcher", {"class": SSH_LAUNCHER})
    _sub(launcher, "host", address)
    _sub(launcher, "port", str(port))
    _sub(launcher, "credentialsId", credentials_id)
    _sub(launcher, "launchTimeoutSeconds", str(_LAUNCH_TIMEOUT_SECONDS))
    _sub(launcher, "maxNumRetries", str(_MAX_RETRIES))
    _sub(launcher, "retryWaitTime", str(_RETRY_WAIT_SECONDS))
    launcher.append(ET.Element("sshHostKeyVerificationStrategy", {"class": KNOWN_HOSTS_STRATEGY}))
    _sub(launcher, "tcpNoDelay", "true")
    return launcher


def _serialise(root: ET.Element) -> str:
    ET.indent(root)
    return f"<?xml version='1.1' encoding='UTF-8'?>\n{ET.tostring(root, encoding='unicode')}\n"


def node_config_xml(
    name: str,
    *,
    address: str,
    port: int,
    labels: Sequence[str],
    executors: int,
    remote_root: str,
    credentials_id: str,
    description: str = MANAGED_DESCRIPTION,
) -> str:
    """The complete config.xml of a permanent SSH agent (see the module docstring)."""
    unique = _checked(name, labels, executors, remote_root, credentials_id)
    _text(f"node {name!r}: description", description)
    root = ET.Element("slave")
    _sub(root, "name", name)
    _sub(root, "description", description)
    _sub(root, "remoteFS", remote_root)
    _sub(root, "numExecutors", str(executors))
    _sub(root, "mode", "EXCLUSIVE")
    root.append(ET.Element("retentionStrategy", {"class": RETENTION_ALWAYS}))
    root.append(_launcher(name, address, port, credentials_id))
    _sub(root, "label", " ".join(unique))
    _sub(root, "nodeProperties")
    return _serialise(root)


def _parse(config_xml: str, node: str) -> ET.Element:
    try:
        root = ET.fromstring(config_xml.encode())  # noqa: S314 -- Jenkins' own answer
    except ET.ParseError as exc:
        raise NodeConfigError(f"node {node!r}: its config.xml is not XML ({exc})") from None
    if root.tag not in _ROOTS:
        raise NodeConfigError(
            f"node {node!r}: config.xml has root <{root.tag}>, expected <slave> "
            "(hudson.slaves.DumbSlave, a permanent agent)"
        )
    return root


def _child(parent: ET.Element | None, tag: str) -> str:
    found = parent.find(tag) if parent is not None else None
    return (found.text or "") if found is not None else ""


def parse_node_config(config_xml: str, *, node: str) -> NodeConfig:
    """Read what `node_config_xml` writes (and what Jenkins returns for any permanent agent)."""
    root = _parse(config_xml, node)
    executors_text = _child(root, "numExecutors").strip() or "1"
    try:
        executors = int(executors_text)
    except ValueError:
        raise NodeConfigError(
            f"node {node!r}: numExecutors {executors_text!r} is not a number"
        ) from None
    launcher = root.find("launcher")
    launcher_class = launcher.get("class", "") if launcher is not None else ""
    port_text = _child(launcher, "port").strip()
    strategy = launcher.find("sshHostKeyVerificationStrategy") if launcher is not None else None
    return NodeConfig(
        name=_child(root, "name"),
        labels=tuple(_child(root, "label").split()),
        executors=executors,
        remote_root=_child(root, "remoteFS"),
        mode=_child(root, "mode").strip() or "NORMAL",
        launcher=launcher_class,
        host=_child(launcher, "host"),
        port=int(port_text) if port_text.isdigit() else 0,
        credentials_id=_child(launcher, "credentialsId"),
        host_key_strategy=strategy.get("class", "") if strategy is not None else "",
        description=_child(root, "description"),
    )


def node_differences(
    current: NodeConfig,
    *,
    labels: Sequence[str],
    executors: int,
    remote_root: str,
    credentials_id: str,
    address: str | None = None,
    port: int | None = None,
) -> tuple[str, ...]:
    """`what: old -> new` for each managed setting that differs. Label order is not a
    difference (Jenkins treats labels as a set)."""
    out = []
    if set(current.labels) != set(labels):
        out.append(f"labels: {' '.join(current.labels)!r} -> {' '.join(labels)!r}")
    if current.executors != executors:
        out.append(f"executors: {current.executors} -> {executors}")
    if current.remote_root != remote_root:
        out.append(f"remote root: {current.remote_root!r} -> {remote_root!r}")
    if current.launcher != SSH_LAUNCHER:
        out.append(f"launcher: {current.launcher or 'none'} -> {SSH_LAUNCHER}")
    else:
        if current.credentials_id != credentials_id:
            out.append(f"credentials id: {current.credentials_id!r} -> {credentials_id!r}")
        if address is not None and current.host != address:
            out.append(f"host: {current.host!r} -> {address!r}")
        if port is not None and current.port != port:
            out.append(f"port: {current.port} -> {port}")
        if current.host_key_strategy in UNSAFE_STRATEGIES:
            strategy = current.host_key_strategy.rpartition(".")[2] or "none (trusts any key)"
            out.append(f"host key verification: {strategy} -> KnownHostsFileKeyVerification")
    return tuple(out)


def _set(parent: ET.Element, tag: str, text: str) -> None:
    element = parent.find(tag)
    if element is None:
        element = ET.SubElement(parent, tag)
    element.text = text


def reconcile_node_config(
    config_xml: str,
    *,
    node: str,
    labels: Sequence[str],
    executors: int,
    remote_root: str,
    credentials_id: str,
    address: str | None = None,
    port: int | None = None,
) -> str:
    """The existing config.xml with the managed settings set and everything else kept
    (node properties, description, mode, JVM options, other plugins' elements).

    A launcher that is not SSH is replaced only when `address` and `port` say where to
    connect; an SSH launcher with no (or a trust-anything) host key check gets ours."""
    unique = _checked(node, labels, executors, remote_root, credentials_id)
    root = _parse(config_xml, node)
    _set(root, "remoteFS", remote_root)
    _set(root, "numExecutors", str(executors))
    _set(root, "label", " ".join(unique))
    launcher = root.find("launcher")
    if launcher is None or launcher.get("class") != SSH_LAUNCHER:
        if address is None or port is None:
            found = launcher.get("class", "none") if launcher is not None else "none"
            raise NodeConfigError(
                f"node {node!r} has launcher {found}, not {SSH_LAUNCHER}; give its address "
                "and port to replace it"
            )
        replacement = _launcher(node, address, port, credentials_id)
        if launcher is None:
            root.append(replacement)
        else:
            index = list(root).index(launcher)
            root.remove(launcher)
            root.insert(index, replacement)
        return _serialise(root)
    _set(launcher, "credentialsId", credentials_id)
    if address is not None:
        _set(launcher, "host", _text(f"node {node!r}: address", address))
    if port is not None:
        if isinstance(port, bool) or not 1 <= port <= 65535:
            raise NodeConfigError(f"node {node!r}: SSH port {port!r}: expected 1..65535")
        _set(launcher, "port", str(port))
    strategy = launcher.find("sshHostKeyVerificationStrategy")
    if strategy is None or strategy.get("class", "") in UNSAFE_STRATEGIES:
        if strategy is not None:
            launcher.remove(strategy)
        launcher.append(
            ET.Element("sshHostKeyVerificationStrategy", {"class": KNOWN_HOSTS_STRATEGY})
        )
    return _serialise(root)
