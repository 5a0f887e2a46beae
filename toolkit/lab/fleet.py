"""The lab fleet: a registry and one SSH host per arch on loopback, with an inventory for them.

`lab_up` starts what is not running yet (so running it twice starts nothing twice), writes
`inventory.yml` and `known_hosts` for the fleet commands, puts a multi-arch busybox base in
the registry for the sample app, and records what it started in `lab.json`; `lab_down`
stops exactly that, by pid, and unmounts the hosts' mounts — safe to run twice. The hosts'
roots stay on disk (with what provisioning installed), so the next `lab_up` takes seconds.
Nothing here prints: callers get `progress` lines and return values.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..registry.client import RegistryClient, RegistryError
from ..registry.engine import MergeOptions, merge_manifest
from ..registry.merge import SourceSpec
from ..registry.reference import parse_reference
from .cache import cache_dir, file_lock
from .hosts import LabHost, LabHostError, lab_keypair, load_hosts, start_host, write_known_hosts
from .images import build_image, host_debian_arch
from .registry import LocalRegistry, RegistryStartError, start_registry
from .rootfs import build_rootfs, cached_rootfs

Progress = Callable[[str], None]

LAB_ARCHES = ("amd64", "arm64")
DEFAULT_FIRST_ADDRESS = "127.0.0.51"
# A fixed port keeps known_hosts and the inventory valid from one `lab.up` to the next.
DEFAULT_SSH_PORT = 2222
BASE_REPOSITORY = "archfleet/busybox"
BASE_TAG = "base"
STATE_FILE = "lab.json"
HOSTS_DIR = "hosts"


class LabError(RuntimeError):
    """The lab could not be brought up, read or taken down; says what and where."""


@dataclass(frozen=True)
class HostSpec:
    name: str
    arch: str
    address: str
    port: int


@dataclass
class Lab:
    directory: Path
    registry: LocalRegistry
    hosts: list[LabHost]
    key: Path
    known_hosts: Path
    inventory: Path
    # The multi-arch base image the sample app builds FROM.
    base_image: str


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    kind: str  # "registry" or "host"
    running: bool
    detail: str


def default_lab_dir() -> Path:
    return cache_dir() / "lab"


def host_specs(
    first_address: str = DEFAULT_FIRST_ADDRESS, port: int = DEFAULT_SSH_PORT
) -> list[HostSpec]:
    """One host per lab arch on consecutive loopback addresses from `first_address`."""
    try:
        first = ipaddress.IPv4Address(first_address)
    except ValueError:
        raise LabError(f"lab address {first_address!r} is not an IPv4 address") from None
    addresses = [first + n for n in range(len(LAB_ARCHES))]
    if not all(address.is_loopback for address in addresses):
        raise LabError(f"lab addresses from {first_address} must stay in 127.0.0.0/8")
    return [
        HostSpec(f"lab-{arch}", arch, str(address), port)
        for arch, address in zip(LAB_ARCHES, addresses, strict=True)
    ]


def lab_up(
    directory: Path,
    progress: Progress,
    *,
    first_address: str = DEFAULT_FIRST_ADDRESS,
    port: int = DEFAULT_SSH_PORT,
    mirror: str | None = None,
) -> Lab:
    """Start the registry and the hosts that are not running yet; everything else is reused.

    If a part fails to start, what this call started is stopped again before the error
    propagates, so a failed `lab.up` leaves no half-started lab behind.
    """
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    # One lab command at a time per lab dir: a second `lab.up` waits, then finds it up.
    with file_lock(directory / ".lock"):
        state = _read_state(directory)
        started: list[LocalRegistry | LabHost] = []
        try:
            registry = _ensure_registry(directory, state, progress, started)
            key, public_key = lab_keypair(directory)
            hosts = [
                _ensure_host(directory, spec, public_key, mirror, progress, started)
                for spec in host_specs(first_address, port)
            ]
            known_hosts = write_known_hosts(directory / "known_hosts", hosts)
            inventory = write_lab_inventory(directory / "inventory.yml", hosts, key, known_hosts)
            base_image = _ensure_base_image(registry, progress)
        except BaseException:
            for part in reversed(started):
                part.stop()
            raise
        lab = Lab(directory, registry, hosts, key, known_hosts, inventory, base_image)
        _write_state(lab)
        return lab


def lab_down(directory: Path, progress: Progress, *, purge: bool = False) -> int:
    """Stop every host and the registry this lab dir holds; how many were running.

    With `purge`, the hosts' roots and the registry's storage are deleted too.
    """
    directory = directory.resolve()
    if not directory.is_dir():
        progress(f"no lab at {directory}: nothing to stop")
        return 0
    # One lab command at a time per lab dir: a second `lab.up` waits, then finds it up.
    with file_lock(directory / ".lock"):
        stopped = 0
        # Every host ever started here, whatever lab.json says: a crashed lab.up may have
        # started one before it could write the state.
        for host in load_hosts(directory / HOSTS_DIR):
            was_running = host.running or bool(host.processes())
            if purge:
                host.remove()
            else:
                host.stop()
            if was_running:
                stopped += 1
                progress(f"host {host.name} stopped (sshd pid {host.pid}), mounts undone")
        registry = _registry_from(_read_state(directory))
        if registry is not None and registry.running:
            registry.stop()
            stopped += 1
            progress(f"registry on {registry.address} stopped (pid {registry.pid})")
        (directory / STATE_FILE).unlink(missing_ok=True)
        if purge:
            shutil.rmtree(directory / "registry", ignore_errors=True)
        if not stopped:
            progress(f"the lab at {directory} was not running: nothing to stop")
        return stopped


def lab_status(directory: Path) -> list[ComponentStatus]:
    """What runs of the lab at `directory`; empty when it was never brought up."""
    directory = directory.resolve()
    state = _read_state(directory)
    statuses: list[ComponentStatus] = []
    registry = _registry_from(state)
    if registry is not None:
        statuses.append(
            ComponentStatus(
                "registry",
                "registry",
                registry.running,
                f"{registry.url} (pid {registry.pid})",
            )
        )
    if (directory / HOSTS_DIR).is_dir():
        for host in load_hosts(directory / HOSTS_DIR):
            statuses.append(
                ComponentStatus(
                    host.name,
                    "host",
                    host.running,
                    f"{host.arch} sshd on {host.address}:{host.port} (pid {host.pid})",
                )
            )
    return statuses


def load_lab(directory: Path) -> Lab | None:
    """The lab at `directory` if lab.json says it is up and every part still runs."""
    directory = directory.resolve()
    state = _read_state(directory)
    registry = _registry_from(state)
    if state is None or registry is None or not registry.running:
        return None
    try:
        hosts = [
            LabHost.load(directory / HOSTS_DIR / name / "host.json") for name in state["hosts"]
        ]
        lab = Lab(
            directory,
            registry,
            hosts,
            Path(state["key"]),
            Path(state["known_hosts"]),
            Path(state["inventory"]),
            str(state["base_image"]),
        )
    except (KeyError, TypeError, LabHostError):
        return None
    return lab if all(host.running for host in hosts) else None


def write_lab_inventory(path: Path, hosts: list[LabHost], key: Path, known_hosts: Path) -> Path:
    """An archfleet inventory of the lab hosts: the same file format a platform team writes."""
    lines = [
        "# The lab fleet, written by `invoke lab.up`. Same format as any archfleet inventory.",
        "# The lab has no GitLab or Jenkins: run the fleet commands with --no-gitlab --no-jenkins.",
        "ssh:",
        "  user: root",
        f"  key: {json.dumps(str(key))}",
        f"  known_hosts: {json.dumps(str(known_hosts))}",
        "  use_ssh_config: false",
        "  connect_timeout: 30",
        "builder:",
        "  tool: umoci  # umoci + skopeo: builds with no namespaces, so even in an emulated root",
        "  install: true",
        "gitlab: {url: 'https://gitlab.lab.invalid', group: lab, tags: [lab]}",
        "jenkins: {url: 'https://jenkins.lab.invalid', credentials_id: lab-ssh}",
        "hosts:",
    ]
    for host in hosts:
        lines += [
            f"  - name: {host.name}",
            f"    address: {host.address}",
            f"    arch: {host.arch}",
            f"    ssh: {{port: {host.port}}}",
            "    roles: [gitlab-runner, jenkins-agent]",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _ensure_registry(
    directory: Path,
    state: dict[str, Any] | None,
    progress: Progress,
    started: list[LocalRegistry | LabHost],
) -> LocalRegistry:
    previous = _registry_from(state)
    if previous is not None and previous.running:
        progress(f"registry already running on {previous.address} (pid {previous.pid})")
        return previous
    # The same port as last time when it is free, so image references stay valid.
    registry: LocalRegistry | None = None
    if previous is not None:
        with contextlib.suppress(RegistryStartError):
            registry = start_registry(directory / "registry", port=previous.port, detach=True)
    if registry is None:
        registry = start_registry(directory / "registry", detach=True)
    started.append(registry)
    progress(
        f"registry (Debian's docker-registry) started on {registry.address}, pid {registry.pid}"
    )
    return registry


def _ensure_host(
    directory: Path,
    spec: HostSpec,
    public_key: str,
    mirror: str | None,
    progress: Progress,
    started: list[LocalRegistry | LabHost],
) -> LabHost:
    state_path = directory / HOSTS_DIR / spec.name / "host.json"
    if state_path.is_file():
        previous = LabHost.load(state_path)
        if previous.running and (previous.address, previous.port) == (spec.address, spec.port):
            progress(f"host {spec.name} already running on {spec.address}:{spec.port}")
            return previous
        if previous.running:
            previous.stop()  # asked for another address: restart it there
    rootfs = cached_rootfs(spec.arch)
    if rootfs is None:
        progress(
            f"building the {spec.arch} host root with debootstrap (first time only; minutes"
            + (", its second stage runs under QEMU)" if spec.arch != host_debian_arch() else ")")
        )
        rootfs = build_rootfs(spec.arch, mirror=mirror)
    progress(
        f"starting host {spec.name}: {spec.arch} root, sshd on {spec.address}:{spec.port}"
        + (" (every binary runs under QEMU)" if spec.arch != host_debian_arch() else "")
    )
    host = start_host(
        spec.name,
        spec.arch,
        spec.address,
        spec.port,
        directory / HOSTS_DIR,
        authorized_keys=[public_key],
        rootfs=rootfs,
    )
    started.append(host)
    progress(f"  {host.name} up, host key {host.host_key_fingerprint}")
    return host


def _ensure_base_image(registry: LocalRegistry, progress: Progress) -> str:
    """`<registry>/archfleet/busybox:base`, one busybox-static image per lab arch."""
    base = f"{registry.address}/{BASE_REPOSITORY}"
    target = parse_reference(f"{base}:{BASE_TAG}")
    client = RegistryClient(registry.address, insecure=True, use_env_credentials=False)
    with contextlib.suppress(RegistryError):
        if client.head_manifest(target.repository, BASE_TAG) is not None:
            return str(target)
    progress(f"putting a multi-arch busybox base into {base}:{BASE_TAG}")
    sources = []
    for arch in LAB_ARCHES:
        built = build_image(f"linux/{arch}", f"{base}:{BASE_TAG}-{arch}")
        sources.append(SourceSpec.parse(f"linux/{arch}=@{built.digest}", target=target))
    merge_manifest(client, [target], sources, MergeOptions(child_tags=False))
    return str(target)


def _read_state(directory: Path) -> dict[str, Any] | None:
    path = directory / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise LabError(f"cannot read lab state {path}: {error}") from None
    if not isinstance(state, dict):
        raise LabError(f"lab state {path} is not a JSON object")
    return state


def _write_state(lab: Lab) -> None:
    state = {
        "registry": lab.registry.to_state(),
        "hosts": [host.name for host in lab.hosts],
        "key": str(lab.key),
        "known_hosts": str(lab.known_hosts),
        "inventory": str(lab.inventory),
        "base_image": lab.base_image,
    }
    path = lab.directory / STATE_FILE
    partial = path.with_name(f".{STATE_FILE}.tmp")
    partial.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def _registry_from(state: dict[str, Any] | None) -> LocalRegistry | None:
    if not state or "registry" not in state:
        return None
    try:
        return LocalRegistry.from_state(state["registry"])
    except RegistryStartError:
        return None
