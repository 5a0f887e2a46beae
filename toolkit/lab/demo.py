"""The demo's story on one machine: a lab fleet, provisioned by the real code path, each host
building the sample app for its own arch over SSH and pushing by digest, one merge, a verify,
and skopeo as an amd64 and an arm64 client. No printing here: steps report through `progress`.

On one x86 machine the arm64 host's binaries run under QEMU; on a real fleet that host is an
arm64 machine, and everything here — provisioning, the per-host build, the merge — is the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fabric import Connection

from ..fleet.connect import connect
from ..fleet.errors import HOST_ERRORS
from ..fleet.parallel import Outcome, for_each_host
from ..fleet.provision import HostReport, Servers, provision_host
from ..inventory import Host, Inventory, load
from ..registry.client import RegistryClient
from ..registry.engine import MergeOptions, MergeResult, merge_manifest
from ..registry.manifest import Platform
from ..registry.merge import SourceSpec
from ..registry.reference import parse_reference
from ..registry.verify import VerifyReport, verify_manifest
from ..resources import data_path
from .containerfile import Recipe, parse_containerfile
from .fleet import DEFAULT_FIRST_ADDRESS, DEFAULT_SSH_PORT, Lab, lab_down, lab_up, load_lab
from .native_build import HostBuild, NativeBuildError, build_on_host
from .skopeo import inspect_command, resolved_digest

DEMO_REPOSITORY = "archfleet/demo"
DEMO_TAG = "1.0.0"
# The sample app shipped with archfleet (examples/app; inside a wheel, its packaged copy).
SAMPLE_APP = data_path("examples") / "app"

Progress = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo cannot start (e.g. the sample app is missing); says what to do."""


@dataclass
class ProvisionedHost:
    host: str
    arch: str = ""
    machine: str = ""
    applied: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class ArchBuild:
    platform: str
    host: str
    # What `uname -m` said on the host that built it.
    machine: str
    digest: str
    seconds: float


@dataclass
class ClientCheck:
    platform: str
    expected: str
    resolved: str
    command: str

    @property
    def ok(self) -> bool:
        return self.expected == self.resolved


@dataclass
class DemoReport:
    registry: str
    target: str
    hosts: list[ProvisionedHost] = field(default_factory=list)
    builds: list[ArchBuild] = field(default_factory=list)
    build_errors: list[str] = field(default_factory=list)
    merge: MergeResult | None = None
    merge_requests: int = 0
    verify: VerifyReport | None = None
    clients: list[ClientCheck] = field(default_factory=list)
    kept: bool = False
    lab_dir: str = ""
    inventory: str = ""

    @property
    def ok(self) -> bool:
        return bool(
            self.hosts
            and all(h.error is None for h in self.hosts)
            and not self.build_errors
            and len(self.builds) == len(self.hosts)
            and self.merge
            and self.verify
            and self.verify.ok
            and self.clients
            and all(c.ok for c in self.clients)
        )


def run_demo(
    directory: Path,
    progress: Progress,
    *,
    keep: bool = False,
    app: Path = SAMPLE_APP,
    first_address: str = DEFAULT_FIRST_ADDRESS,
    port: int = DEFAULT_SSH_PORT,
) -> DemoReport:
    """The whole story; the lab is torn down afterwards unless `keep` or it was up before."""
    containerfile = app / "Containerfile"
    if not containerfile.is_file():
        raise DemoError(f"no sample app at {app} (expected {containerfile}); pass --app DIR")
    # Refuse an app the lab cannot build before starting anything. Its base comes from the
    # lab's registry (there is no internet here), passed as the build argument BASE.
    _recipe(app, base="lab-registry/base")
    already_up = load_lab(directory)
    if already_up is not None:
        progress(f"the lab at {already_up.directory} is already up: using it, leaving it up")
    lab = already_up or lab_up(directory, progress, first_address=first_address, port=port)
    try:
        report = _story(lab, app, progress)
    finally:
        if already_up is None and not keep:
            lab_down(lab.directory, progress)
    report.kept = keep or already_up is not None
    return report


def _story(lab: Lab, app: Path, progress: Progress) -> DemoReport:
    repository = f"{lab.registry.address}/{DEMO_REPOSITORY}"
    report = DemoReport(
        registry=lab.registry.address,
        target=f"{repository}:{DEMO_TAG}",
        lab_dir=str(lab.directory),
        inventory=str(lab.inventory),
    )
    inventory = load(lab.inventory)
    ready = _provision(inventory, report, progress)
    if not ready:
        return report
    _build(ready, app, lab, repository, report, progress)
    if report.build_errors:
        progress("a host failed to build: nothing is merged, no tag moves")
        return report
    _merge_and_check(lab, report, progress)
    return report


def _provision(inventory: Inventory, report: DemoReport, progress: Progress) -> list[Host]:
    """provision-runners' own code path, servers off: arch checked, builder installed."""
    progress(
        f"provision-runners --inventory {inventory.path} --no-gitlab --no-jenkins "
        "(the lab has no GitLab or Jenkins server: runners and agents are not registered)"
    )

    def done(outcome: Outcome[HostReport]) -> None:
        if outcome.value is None:
            progress(f"  {outcome.host.name}: FAILED: {outcome.error}")
            return
        value = outcome.value
        what = "; ".join(value.applied) if value.applied else "no change"
        progress(f"  {value.host}: {value.arch} (uname -m: {value.machine}): {what}")

    outcomes = for_each_host(
        inventory.hosts,
        lambda host: provision_host(inventory, host, Servers()),
        expected=HOST_ERRORS,
        on_done=done,
    )
    ready = []
    for outcome in outcomes:
        value = outcome.value
        report.hosts.append(
            ProvisionedHost(
                outcome.host.name,
                arch=value.arch if value else "",
                machine=value.machine if value else "",
                applied=list(value.applied) if value else [],
                planned=list(value.planned) if value else [],
                error=outcome.error,
            )
        )
        if outcome.ok:
            ready.append(outcome.host)
    return ready if len(ready) == len(outcomes) else []


def _build(
    hosts: list[Host],
    app: Path,
    lab: Lab,
    repository: str,
    report: DemoReport,
    progress: Progress,
) -> None:
    recipe = _recipe(app, base=lab.base_image)
    arches = {h.host: h.arch for h in report.hosts}
    progress(f"building {app.name} on each host for its own arch (FROM {recipe.base})")

    def build(host: Host) -> HostBuild:
        connection: Connection = connect(host)
        try:
            # A scratch tag per host: the digest, not the tag, is what the merge uses.
            target = f"{repository}:build-{host.name}"
            return build_on_host(connection, host, recipe, app, target, insecure=True)
        finally:
            connection.close()

    def done(outcome: Outcome[HostBuild]) -> None:
        if outcome.value is None:
            progress(f"  {outcome.host.name}: build FAILED: {outcome.error}")
        else:
            built = outcome.value
            progress(
                f"  {built.host} (uname -m: {built.machine}) pushed {built.digest} "
                f"in {built.seconds:.1f} s"
            )

    outcomes = for_each_host(hosts, build, expected=(*HOST_ERRORS, NativeBuildError), on_done=done)
    for outcome in outcomes:
        if outcome.value is None:
            report.build_errors.append(f"{outcome.host.name}: {outcome.error}")
            continue
        built = outcome.value
        platform = f"linux/{arches[built.host]}"
        report.builds.append(
            ArchBuild(platform, built.host, built.machine, built.digest, built.seconds)
        )


def _recipe(app: Path, *, base: str) -> Recipe:
    path = app / "Containerfile"
    return parse_containerfile(
        path.read_text(encoding="utf-8"), path=str(path), build_args={"BASE": base}
    )


def _merge_and_check(lab: Lab, report: DemoReport, progress: Progress) -> None:
    client = RegistryClient(lab.registry.address, insecure=True, use_env_credentials=False)
    target_ref = parse_reference(report.target)
    # Each digest is claimed as the arch its host really is; the merge re-checks the config.
    sources = [
        SourceSpec.parse(f"{b.platform}=@{b.digest}", target=target_ref) for b in report.builds
    ]
    progress(f"merging {len(sources)} digests into {report.target}")
    mark = lab.registry.mark()
    report.merge = merge_manifest(client, [target_ref], sources, MergeOptions())
    report.merge_requests = len(lab.registry.requests_since(mark))
    progress(f"  index {report.merge.plan.digest} ({report.merge_requests} registry requests)")
    progress("verifying: platforms, configs, and each entrypoint's ELF machine")
    report.verify = verify_manifest(
        client,
        target_ref,
        [Platform.parse(b.platform) for b in report.builds],
        check_binaries=True,
    )
    for build in report.builds:
        resolved = resolved_digest(report.target, build.platform)
        report.clients.append(
            ClientCheck(
                build.platform,
                build.digest,
                resolved,
                inspect_command(report.target, build.platform),
            )
        )
        progress(f"  skopeo as a {build.platform} client gets {resolved}")
