"""The inventory's Jenkins agents (and the shared library) as Configuration-as-Code YAML, for
controllers whose configuration is managed as code: there, what provisioning writes through
the REST API is reverted at the next CasC reload, so the same nodes go into the CasC file.

The values are the ones provisioning applies, planned once: `jenkins_agent.agent_node()`
(name, launcher endpoint, remote root, executors, credentials id, host key check) with the
labels of `plan.desired_agent_labels` and the library of publish-jenkins-library
(`publish.jenkins_library.LibrarySpec`). Only the spelling differs; it follows the real schema:

- Nodes: `jenkins: nodes: - permanent: {name, nodeDescription, remoteFS, numExecutors, mode,
  labelString, retentionStrategy, launcher}` — jenkinsci/configuration-as-code-plugin
  demos/build_agents/README.md (`permanent` is DumbSlave's symbol; numExecutors, labelString,
  mode, remoteFS as there), `retentionStrategy: always` (RetentionStrategy.Always's symbol).
- Launcher: `launcher: ssh: {host, port, credentialsId, launchTimeoutSeconds, maxNumRetries,
  retryWaitTime, tcpNoDelay, sshHostKeyVerificationStrategy}` — jenkinsci/ssh-slaves-plugin
  src/main/java/hudson/plugins/sshslaves/SSHLauncher.java (`@Symbol({"ssh", "sSHLauncher"})`,
  @DataBoundConstructor (host, port, credentialsId), @DataBoundSetter for the rest) and its
  CasC test src/test/resources/hudson/plugins/sshslaves/SSHCasCConfig.yml.
- Host key: the strategies have no @Symbol, so CasC names them by class, first letter lower
  case (as demos/build_agents' `manuallyTrustedKeyVerificationStrategy`):
  `manuallyProvidedKeyVerificationStrategy: {key: "ssh-ed25519 AAAA…"}` (verifiers/
  ManuallyProvidedKeyVerificationStrategy.java: @DataBoundConstructor(String key), the
  "algorithm base64" that getKey() returns), or `knownHostsFileKeyVerificationStrategy`
  (no fields: a bare name).
- Library: `unclassified: globalLibraries: libraries: - {name, defaultVersion, implicit,
  allowVersionOverride, retriever: modernSCM: {libraryPath, scm: git: {remote,
  credentialsId, traits}}}` — configuration-as-code-plugin demos/pipeline-groovy-lib/README.md;
  `modernSCM` is SCMSourceRetriever's symbol (pipeline-groovy-lib), `git` GitSCMSource's,
  `gitBranchDiscovery`/`gitTagDiscovery` the git plugin's trait symbols.

Every string goes through `_literal`: CasC resolves `${NAME}` in every value it reads
(docs/features/secrets.adoc), so a literal `${` is written `^${`, its escape.

For "manual" host key verification the key is the one archfleet verifies when it connects to
the host: the first entry for the host (`addr` or `[addr]:port`, after the ssh config) in the
inventory's known_hosts — paramiko offers that key type first (SSHClient.connect), so it is the
key `provision-runners` would hand to the API. Reading it needs no connection (`host_keys`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from ..archmap import UNAME_TO_PLATFORM, unames_for
from ..registry.manifest import Platform
from .jenkins_agent import AgentNode, agent_node
from .jenkins_config import (
    KNOWN_HOSTS_STRATEGY,
    LAUNCH_TIMEOUT_SECONDS,
    MANUAL_STRATEGY,
    MAX_RETRIES,
    RETRY_WAIT_SECONDS,
    STRATEGIES,
    NodeConfigError,
    check_host_key,
    host_key_text,
)

if TYPE_CHECKING:
    from ..inventory import Host, Inventory
    from ..publish.jenkins_library import LibrarySpec

# The git plugin's symbols of the traits publish-jenkins-library sets (LibrarySpec.fields()).
_TRAIT_SYMBOLS = {
    "BranchDiscoveryTrait": "gitBranchDiscovery",
    "TagDiscoveryTrait": "gitTagDiscovery",
}


class CascError(ValueError):
    """The inventory cannot be written as CasC; one line per host, naming what to set."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _casc_name(strategy_class: str) -> str:
    """CasC's name of a describable without @Symbol: its class name, first letter lower."""
    simple = strategy_class.rpartition(".")[2]
    return simple[0].lower() + simple[1:]


def platform_of(arch: str) -> Platform:
    """The platform of an inventory `arch:` (archmap's tag spelling: amd64, arm-v7, …)."""
    for spec in UNAME_TO_PLATFORM.values():
        platform = Platform.parse(spec)
        if platform.tag_suffix == arch:
            return platform
    raise ValueError(f"unknown arch {arch!r}")


def declared_labels(host: Host, inventory: Inventory) -> tuple[str, ...]:
    """plan.desired_agent_labels for the arch the inventory declares (provisioning uses the
    arch it detects, which must equal the declared one: plan.check_native)."""
    from .facts import HostFacts
    from .plan import desired_agent_labels

    assert inventory.jenkins is not None and host.declared_arch is not None
    platform = platform_of(host.declared_arch)
    facts = HostFacts(machine=unames_for(platform)[0], platform=platform)
    return desired_agent_labels(host, facts, inventory.jenkins)


@dataclass(frozen=True)
class CascPlan:
    nodes: tuple[AgentNode, ...]
    library: LibrarySpec | None = None


def plan_casc(
    inventory: Inventory,
    host_keys: Mapping[str, tuple[str, str] | None],
    library: LibrarySpec | None = None,
    *,
    hops: Mapping[str, str | None] | None = None,
) -> CascPlan:
    """The nodes of the inventory's jenkins-agent hosts (pure). `host_keys`: host name ->
    (algorithm, base64) of its verified key, needed for manual host key verification.
    `hops`: host name -> the jump host or proxy command the ssh config puts in front of it
    (`ssh_hops`); like the inventory's jump_host, it needs hosts[].jenkins.address.
    Every problem of every host is collected into one CascError."""
    jenkins = inventory.jenkins
    agents = [h for h in inventory.hosts if h.has_role("jenkins-agent")]
    if jenkins is None or not agents:
        raise CascError([f"{inventory.path}: no host has the jenkins-agent role"])
    problems: list[str] = []
    nodes = []
    for index, host in enumerate(inventory.hosts):
        if host not in agents:
            continue
        where = f"{inventory.path}: hosts[{index}] ({host.name})"
        if host.declared_arch is None:
            problems.append(
                f"{where}: no arch: a node's first label is its arch, which provisioning "
                "reads from the host; jenkins-casc connects to no host: declare arch: (amd64, "
                "arm64, …)"
            )
            continue
        hop = (hops or {}).get(host.name)
        if hop and host.jenkins_address is None:
            problems.append(
                f"{where}: the ssh config reaches it through {hop} (ProxyJump/ProxyCommand), "
                "but the Jenkins controller connects to its agents directly and cannot use "
                f"that hop: set hosts[{index}].jenkins.address to where the controller "
                "reaches the agent"
            )
            continue
        key = host_keys.get(host.name)
        if jenkins.host_key_verification == "manual" and key is None:
            problems.append(
                f"{where}: no host key for it in its known_hosts "
                f"({host.ssh.known_hosts or 'ssh.known_hosts not set'}): the node accepts only "
                "the key archfleet verified; run `archfleet fleet-facts "
                "--accept-new-host-keys` once (or set jenkins.host_key_verification: "
                "known_hosts)"
            )
            continue
        node = agent_node(
            host,
            jenkins,
            declared_labels(host, inventory),
            host_key=key if jenkins.host_key_verification == "manual" else None,
        )
        try:
            node.config_xml()  # refuses what provisioning would refuse
        except (NodeConfigError, ValueError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        nodes.append(node)
    if problems:
        raise CascError(problems)
    return CascPlan(tuple(nodes), library)


def _strategy(node: AgentNode) -> str | dict[str, Any]:
    strategy = STRATEGIES[node.host_key_verification]
    if strategy == MANUAL_STRATEGY:
        assert node.host_key is not None  # plan_casc and config_xml() checked it
        key = host_key_text(*check_host_key(node.name, node.host_key))
        return {_casc_name(MANUAL_STRATEGY): {"key": key}}
    assert strategy == KNOWN_HOSTS_STRATEGY
    return _casc_name(KNOWN_HOSTS_STRATEGY)


def node_casc(node: AgentNode) -> dict[str, Any]:
    """One `jenkins.nodes` entry: what node_config_xml writes, in CasC's names."""
    return {
        "permanent": {
            "name": node.name,
            "nodeDescription": node.description,
            "remoteFS": node.remote_root,
            "numExecutors": node.executors,
            "mode": "EXCLUSIVE",
            "labelString": " ".join(dict.fromkeys(node.labels)),
            "retentionStrategy": "always",
            "launcher": {
                "ssh": {
                    "host": node.host,
                    "port": node.port,
                    "credentialsId": node.credentials_id,
                    "launchTimeoutSeconds": LAUNCH_TIMEOUT_SECONDS,
                    "maxNumRetries": MAX_RETRIES,
                    "retryWaitTime": RETRY_WAIT_SECONDS,
                    "tcpNoDelay": True,
                    "sshHostKeyVerificationStrategy": _strategy(node),
                }
            },
        }
    }


def library_casc(library: LibrarySpec) -> dict[str, Any]:
    """One `unclassified.globalLibraries.libraries` entry: LibrarySpec.fields() in CasC's
    names (what publish-jenkins-library's console script sets)."""
    fields = library.fields()
    git: dict[str, Any] = {"remote": fields["remote"]}
    if fields["credentialsId"]:
        git["credentialsId"] = fields["credentialsId"]
    git["traits"] = [_TRAIT_SYMBOLS[t] for t in fields["traits"]]
    retriever: dict[str, Any] = {}
    if fields["libraryPath"]:
        retriever["libraryPath"] = fields["libraryPath"]
    retriever["scm"] = {"git": git}
    return {
        "name": fields["name"],
        "defaultVersion": fields["defaultVersion"],
        "implicit": fields["implicit"],
        "allowVersionOverride": fields["allowVersionOverride"],
        "retriever": {"modernSCM": retriever},
    }


def _literal(value: Any) -> Any:
    """`value` with every string escaped from CasC's variable substitution (`${X}` ->
    `^${X}`, configuration-as-code-plugin docs/features/secrets.adoc), so what Jenkins stores
    is the inventory's text, as through the API, and never a secret CasC would put there."""
    if isinstance(value, str):
        return value.replace("${", "^${")
    if isinstance(value, dict):
        return {key: _literal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_literal(item) for item in value]
    return value


def casc_document(plan: CascPlan) -> dict[str, Any]:
    document: dict[str, Any] = {"jenkins": {"nodes": [node_casc(n) for n in plan.nodes]}}
    if plan.library is not None:
        document["unclassified"] = {"globalLibraries": {"libraries": [library_casc(plan.library)]}}
    escaped: dict[str, Any] = _literal(document)
    return escaped


def render(plan: CascPlan, source: str) -> str:
    """The CasC YAML, with a header saying where it came from and what it does not hold."""
    header = (
        f"# Jenkins Configuration as Code: the agents of {source} (archfleet jenkins-casc).\n"
        "# The SSH credential each launcher names (credentialsId) is not here: create it as\n"
        "# 'SSH Username with private key' (user: jenkins.agent_user) in the controller.\n"
    )
    body = yaml.safe_dump(
        casc_document(plan), sort_keys=False, default_flow_style=False, width=1000
    )
    return header + body


# ------------------------------------------------------------------ reading (no connection)


def known_host_key(host: Host) -> tuple[str, str] | None:
    """The key archfleet would verify for `host`: paramiko's lookup in the inventory's
    known_hosts of the name it connects to (`addr`, or `[addr]:port`; HostName and Port from
    the ssh config), first entry first, as SSHClient.connect prefers it. None: no entry (or
    no known_hosts). Opens no connection."""
    from .connect import ConnectError, connection_for

    if host.ssh.known_hosts is None or not host.ssh.known_hosts.is_file():
        return None
    try:
        connection = connection_for(host)
    except ConnectError:
        return None
    port = int(connection.port)
    name = connection.host if port == 22 else f"[{connection.host}]:{port}"
    entries = connection.client.get_host_keys().lookup(name)
    if not entries:
        return None
    key = next(iter(entries.values()))
    return key.get_name(), key.get_base64()


def host_keys(hosts: Sequence[Host]) -> dict[str, tuple[str, str] | None]:
    return {host.name: known_host_key(host) for host in hosts}


def ssh_hop(host: Host) -> str | None:
    """The hop the ssh config (not the inventory: its jump_host is checked at load) puts in
    front of `host`: Fabric's gateway from a ProxyJump (a Connection) or ProxyCommand (a
    string), as connect.connection_for builds it. Opens no connection."""
    from .connect import ConnectError, connection_for

    if host.ssh.jump_host or not host.ssh.use_ssh_config:
        return None
    try:
        gateway = connection_for(host).gateway
    except ConnectError:
        return None
    if gateway is None:
        return None
    if isinstance(gateway, str):
        return f"ProxyCommand {gateway!r}"
    return f"jump host {gateway.host}:{gateway.port}"


def ssh_hops(hosts: Sequence[Host]) -> dict[str, str | None]:
    return {host.name: ssh_hop(host) for host in hosts}
