"""A Jenkins permanent agent's config.xml, built and read without I/O.

What we write is what Jenkins itself stores for a `hudson.slaves.DumbSlave` (XStream writes
its root under the alias `<slave>`): an SSH launcher (ssh-slaves plugin) with host, port and
credentials id, labels, executors, remote root, mode EXCLUSIVE (only jobs that ask for one of
its labels land on it: an arm64 agent must never pick up "any" job) and
`RetentionStrategy$Always` (keep it connected).

Host keys (jenkins.host_key_verification):
- `manual` (the default): `ManuallyProvidedKeyVerificationStrategy` with the host key
  archfleet itself verified over SSH when it provisioned the host. Jenkins then accepts exactly
  that key and nothing else, from the first connection on. As the ssh-agents plugin stores it
  (src/main/java/hudson/plugins/sshslaves/verifiers/ManuallyProvidedKeyVerificationStrategy.java:
  one field `HostKey key`; HostKey.java: fields `String algorithm` and `byte[] key`, the raw
  key blob without the algorithm prefix), XStream writes
  `<key><algorithm>ssh-ed25519</algorithm><key>BASE64</key></key>`: byte[] goes through
  XStream's EncodedByteArrayConverter, which since XStream 1.4.11 uses java.util.Base64 — one
  line, no breaks, exactly the base64 of known_hosts and paramiko's `get_base64()`; on reading
  it uses the MIME decoder, so whitespace inside is ignored (here too). The algorithm must be a
  key format trilead knows (JenkinsTrilead9VersionSupport.parseKey via KeyAlgorithmManager:
  ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa, rsa-sha2-256/512, ssh-dss).
  The launcher offers that algorithm first (getPreferredKeyAlgorithms), and the plugin compares
  algorithm AND bytes (HostKey.equals) with what the connection negotiated
  (SSHLauncher.ServerHostKeyVerifierImpl: `new HostKey(serverHostKeyAlgorithm, key)`), so the
  algorithm written is the key's own type. Not verified here: an RSA-only host whose sshd
  refuses SHA-1 `ssh-rsa` signatures (OpenSSH 8.8+) may negotiate `rsa-sha2-*` and so not
  match an `ssh-rsa` entry; hosts with an ed25519 or ECDSA key (every current default) do not
  meet this.
- `known_hosts`: `KnownHostsFileKeyVerificationStrategy`, the controller's own
  `~/.ssh/known_hosts` — which someone must fill in before the agent can connect (nothing does
  by itself: a new agent stays offline with "no entry for host"). For controllers whose
  known_hosts is managed elsewhere.
Never written: `NonVerifying` (trusts anything), and `ManuallyTrusted` without
`requireInitialManualTrust` (trusts whatever key it sees first, the one moment an attacker in
the middle would choose). An existing node with another strategy than the inventory's is put
right, and so is a manual key that differs from the one archfleet verified (e.g. the host was
reinstalled: the node would never connect again).

Every value is text of an element and goes through ElementTree, which escapes it; values
XML cannot carry (control characters, CR) and labels that Jenkins would split are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

SSH_LAUNCHER = "hudson.plugins.sshslaves.SSHLauncher"
KNOWN_HOSTS_STRATEGY = "hudson.plugins.sshslaves.verifiers.KnownHostsFileKeyVerificationStrategy"
MANUAL_STRATEGY = "hudson.plugins.sshslaves.verifiers.ManuallyProvidedKeyVerificationStrategy"
# jenkins.host_key_verification -> the strategy class written.
STRATEGIES = {"manual": MANUAL_STRATEGY, "known_hosts": KNOWN_HOSTS_STRATEGY}
# Key formats trilead's KeyAlgorithmManager decodes (what parseKey accepts), per the plugin's
# ManuallyProvidedKeyVerificationStrategyTest; the rsa-sha2-* names carry an ssh-rsa blob.
HOST_KEY_ALGORITHMS = frozenset(
    {
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
        "rsa-sha2-256",
        "rsa-sha2-512",
        "ssh-dss",
    }
)
RETENTION_ALWAYS = "hudson.slaves.RetentionStrategy$Always"
MANAGED_DESCRIPTION = "managed by archfleet (provision-runners)"
# XStream's alias and the class name: Jenkins writes the first and reads both.
_ROOTS = ("slave", "hudson.slaves.DumbSlave")
LAUNCH_TIMEOUT_SECONDS = 60
MAX_RETRIES = 10
RETRY_WAIT_SECONDS = 15
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
    # "algorithm base64" of a ManuallyProvided strategy (the plugin's own getKey() format).
    host_key: str | None = None


def _text(what: str, value: str) -> str:
    bad = _NOT_XML.search(value)
    if bad:
        raise NodeConfigError(
            f"{what} {value!r} contains {bad.group()!r}, which a config.xml cannot hold"
        )
    return value


def check_host_key(node: str, host_key: tuple[str, str]) -> tuple[str, bytes]:
    """(algorithm, blob) of a host key given as (algorithm, base64), as the plugin's parseKey
    would accept it: a known key format and a blob whose own type name matches it."""
    algorithm, encoded = host_key
    if algorithm not in HOST_KEY_ALGORITHMS:
        raise NodeConfigError(
            f"node {node!r}: host key algorithm {algorithm!r} is not one the ssh-agents plugin "
            f"reads (expected one of {', '.join(sorted(HOST_KEY_ALGORITHMS))})"
        )
    try:
        blob = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise NodeConfigError(f"node {node!r}: host key is not base64") from None
    blob_type = _blob_type(blob)
    expected = "ssh-rsa" if algorithm.startswith("rsa-sha2-") else algorithm
    if blob_type != expected:
        raise NodeConfigError(
            f"node {node!r}: host key says {algorithm!r} but its key data is "
            f"{blob_type or 'not an SSH public key'!r}"
        )
    return algorithm, blob


def _blob_type(blob: bytes) -> str | None:
    """The key type an SSH public key blob starts with (a uint32-length string, RFC 4253)."""
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    if length > 64 or len(blob) < 4 + length:
        return None
    try:
        return blob[4 : 4 + length].decode("ascii")
    except UnicodeDecodeError:
        return None


def host_key_text(algorithm: str, blob: bytes) -> str:
    """ "algorithm base64", as the plugin's getKey() returns it and known_hosts writes it."""
    return f"{algorithm} {base64.b64encode(blob).decode()}"


def fingerprint(host_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of "algorithm base64" (what `ssh-keygen -l` shows)."""
    encoded = host_key.partition(" ")[2]
    digest = hashlib.sha256(base64.b64decode(encoded)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _verification(node: str, verification: str) -> str:
    strategy = STRATEGIES.get(verification)
    if strategy is None:
        raise NodeConfigError(
            f"node {node!r}: host key verification {verification!r}: expected one of "
            f"{', '.join(STRATEGIES)}"
        )
    return strategy


def _strategy_element(node: str, verification: str, host_key: tuple[str, str] | None) -> ET.Element:
    strategy = _verification(node, verification)
    element = ET.Element("sshHostKeyVerificationStrategy", {"class": strategy})
    if strategy == MANUAL_STRATEGY:
        if host_key is None:
            raise NodeConfigError(
                f"node {node!r}: host key verification 'manual' needs the host key archfleet "
                "verified over SSH (none was given)"
            )
        algorithm, blob = check_host_key(node, host_key)
        key = ET.SubElement(element, "key")
        _sub(key, "algorithm", algorithm)
        _sub(key, "key", base64.b64encode(blob).decode())
    return element


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


def _launcher(
    name: str,
    address: str,
    port: int,
    credentials_id: str,
    verification: str,
    host_key: tuple[str, str] | None,
) -> ET.Element:
    _text(f"node {name!r}: address", address)
    if not address.strip():
        raise NodeConfigError(f"node {name!r}: address is empty")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise NodeConfigError(f"node {name!r}: SSH port {port!r}: expected 1..65535")
    launcher = ET.Element("launcher", {"class": SSH_LAUNCHER})
    _sub(launcher, "host", address)
    _sub(launcher, "port", str(port))
    _sub(launcher, "credentialsId", credentials_id)
    _sub(launcher, "launchTimeoutSeconds", str(LAUNCH_TIMEOUT_SECONDS))
    _sub(launcher, "maxNumRetries", str(MAX_RETRIES))
    _sub(launcher, "retryWaitTime", str(RETRY_WAIT_SECONDS))
    launcher.append(_strategy_element(name, verification, host_key))
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
    host_key_verification: str = "manual",
    host_key: tuple[str, str] | None = None,
) -> str:
    """The complete config.xml of a permanent SSH agent (see the module docstring).
    `host_key` is (algorithm, base64) as archfleet verified it (paramiko's
    `get_name()`, `get_base64()`); needed for `host_key_verification` "manual"."""
    unique = _checked(name, labels, executors, remote_root, credentials_id)
    _text(f"node {name!r}: description", description)
    root = ET.Element("slave")
    _sub(root, "name", name)
    _sub(root, "description", description)
    _sub(root, "remoteFS", remote_root)
    _sub(root, "numExecutors", str(executors))
    _sub(root, "mode", "EXCLUSIVE")
    root.append(ET.Element("retentionStrategy", {"class": RETENTION_ALWAYS}))
    root.append(_launcher(name, address, port, credentials_id, host_key_verification, host_key))
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
    strategy_class = strategy.get("class", "") if strategy is not None else ""
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
        host_key_strategy=strategy_class,
        description=_child(root, "description"),
        host_key=_stored_key(strategy) if strategy_class == MANUAL_STRATEGY else None,
    )


def _stored_key(strategy: ET.Element | None) -> str | None:
    """The ManuallyProvided key as the plugin reads it back: `key/algorithm` and the base64 of
    `key/key` (whitespace ignored, as XStream's MIME decoder does); None if unreadable."""
    key = strategy.find("key") if strategy is not None else None
    if key is None:
        return None
    algorithm = _child(key, "algorithm").strip()
    encoded = "".join(_child(key, "key").split())
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return host_key_text(algorithm, blob) if algorithm and blob else None


def node_differences(
    current: NodeConfig,
    *,
    labels: Sequence[str],
    executors: int,
    remote_root: str,
    credentials_id: str,
    address: str | None = None,
    port: int | None = None,
    host_key_verification: str = "manual",
    host_key: tuple[str, str] | None = None,
) -> tuple[str, ...]:
    """`what: old -> new` for each managed setting that differs. Label order is not a
    difference (Jenkins treats labels as a set). With "manual" and no `host_key`, a node that
    already has a manual key keeps it (nothing to compare it with)."""
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
        change = _strategy_difference(current, host_key_verification, host_key)
        if change:
            out.append(change)
    return tuple(out)


def _strategy_difference(
    current: NodeConfig, verification: str, host_key: tuple[str, str] | None
) -> str | None:
    """What the host key check of `current` lacks against the inventory's, or None."""
    wanted = _verification(current.name or "?", verification)
    verified = None
    if wanted == MANUAL_STRATEGY and host_key is not None:
        verified = host_key_text(*check_host_key(current.name or "?", host_key))
    if current.host_key_strategy != wanted:
        old = current.host_key_strategy.rpartition(".")[2].removesuffix("Strategy")
        new = wanted.rpartition(".")[2].removesuffix("Strategy")
        if verified is not None:
            new += f" ({verified.partition(' ')[0]} {fingerprint(verified)})"
        return f"host key verification: {old or 'none (trusts any key)'} -> {new}"
    if verified is not None and current.host_key != verified:
        old = "unreadable"
        if current.host_key:
            old = f"{current.host_key.partition(' ')[0]} {fingerprint(current.host_key)}"
        return f"host key: {old} -> {verified.partition(' ')[0]} {fingerprint(verified)}"
    return None


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
    host_key_verification: str = "manual",
    host_key: tuple[str, str] | None = None,
) -> str:
    """The existing config.xml with the managed settings set and everything else kept
    (node properties, description, mode, JVM options, other plugins' elements).

    A launcher that is not SSH is replaced only when `address` and `port` say where to
    connect; an SSH launcher gets the inventory's host key check (and the verified key)."""
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
        replacement = _launcher(
            node, address, port, credentials_id, host_key_verification, host_key
        )
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
    current = parse_node_config(_serialise(root), node=node)
    if _strategy_difference(current, host_key_verification, host_key) is not None:
        replacement = _strategy_element(node, host_key_verification, host_key)
        if strategy is None:
            launcher.append(replacement)
        else:
            index = list(launcher).index(strategy)
            launcher.remove(strategy)
            launcher.insert(index, replacement)
    return _serialise(root)
