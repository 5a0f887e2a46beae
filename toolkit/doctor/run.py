"""One doctor run: every host probed in parallel (toolkit/fleet/parallel.py), the servers
probed meanwhile in the calling thread, then every finding evaluated (pure) into rows:
the hosts in inventory order, then GitLab, then Jenkins, then the tool image."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..archmap import UNAME_TO_PLATFORM
from ..fleet.connect import ConnectError
from ..fleet.facts import FactsError
from ..fleet.parallel import Outcome, for_each_host
from ..inventory import Inventory
from ..registry.manifest import Platform
from .checks import Check, blocker, redacted
from .gitlab import evaluate_gitlab
from .host import HostProbe, evaluate_host
from .jenkins import evaluate_jenkins
from .probe import probe_gitlab, probe_host, probe_jenkins, probe_tool_image
from .tool_image import ToolImageProbe, evaluate_tool_image


def server_checks(
    fleet: Inventory,
    env: Mapping[str, str],
    *,
    timeout: float,
    gitlab: bool = True,
    jenkins: bool = True,
) -> tuple[list[Check], list[str]]:
    """The GitLab and Jenkins rows, and the tokens that were used (to scrub)."""
    roles = {role for host in fleet.hosts for role in host.roles}
    checks: list[Check] = []
    tokens: list[str] = []
    if fleet.gitlab is not None and gitlab:
        runners = "gitlab-runner" in roles
        probe, token = probe_gitlab(fleet.gitlab, env, timeout=timeout, provisions_runners=runners)
        tokens.append(token or "")
        checks += evaluate_gitlab(fleet.gitlab, probe, provisions_runners=runners)
    if fleet.jenkins is not None and jenkins:
        has_agents = "jenkins-agent" in roles
        jprobe, token = probe_jenkins(fleet.jenkins, env, timeout=timeout, has_agents=has_agents)
        tokens.append(token or "")
        checks += evaluate_jenkins(fleet.jenkins, jprobe, has_agents=has_agents)
    return checks, tokens


def run_doctor(
    fleet: Inventory,
    env: Mapping[str, str],
    *,
    workers: int = 8,
    timeout: float = 10.0,
    gitlab: bool = True,
    jenkins: bool = True,
    on_host: Callable[[Outcome[HostProbe]], None] | None = None,
) -> list[Check]:
    servers: list[Check] = []
    secrets: list[str] = []  # the tokens the server probes sent
    image: list[ToolImageProbe] = []
    settings = fleet.gitlab

    def meanwhile() -> None:
        found, tokens = server_checks(fleet, env, timeout=timeout, gitlab=gitlab, jenkins=jenkins)
        servers.extend(found)
        secrets.extend(tokens)
        # Not under --no-gitlab's switch: the registry is not GitLab (a lab has one without).
        if settings is not None and settings.tool_image:
            image.append(
                probe_tool_image(
                    settings.tool_image,
                    env,
                    insecure=settings.tool_image_insecure,
                    timeout=timeout,
                )
            )

    outcomes = for_each_host(
        fleet.hosts,
        probe_host,
        workers=workers,
        # probe_host turns what a host can do wrong into findings; these are left over
        # (e.g. closing a connection that broke), reported for that host alone.
        expected=(ConnectError, FactsError, OSError, EOFError),
        on_done=on_host,
        meanwhile=meanwhile,
    )
    checks: list[Check] = []
    for outcome in outcomes:
        if outcome.value is not None:
            checks += evaluate_host(fleet, outcome.value)
        else:
            checks.append(
                blocker(
                    "ssh",
                    outcome.host.name,
                    f"the probe failed: {outcome.error}",
                    "run `archfleet fleet-facts --limit "
                    f"{outcome.host.name}` to see the host's own error",
                )
            )
    if settings is not None and image:
        runners, unknown = runner_platforms(fleet, outcomes)
        servers.append(evaluate_tool_image(settings, image[0], runners, unknown))
    return redacted(checks + servers, secrets)


def runner_platforms(
    fleet: Inventory, outcomes: Sequence[Outcome[HostProbe]]
) -> tuple[dict[Platform, list[str]], list[str]]:
    """The platform of each gitlab-runner host (its declared arch, else the one its probe
    found) with the hosts' names; and the hosts whose platform is not known."""
    probed = {o.host.name: o.value.facts for o in outcomes if o.value is not None}
    runners: dict[Platform, list[str]] = {}
    unknown: list[str] = []
    for host in fleet.hosts:
        if not host.has_role("gitlab-runner"):
            continue
        facts = probed.get(host.name)
        platform = (
            arch_platform(host.declared_arch)
            if host.declared_arch
            else facts.platform
            if facts is not None
            else None
        )
        if platform is None:
            unknown.append(host.name)
        else:
            runners.setdefault(platform, []).append(host.name)
    return runners, unknown


def arch_platform(arch: str) -> Platform | None:
    """An inventory arch (a tag suffix: amd64, arm64, arm-v7) -> its platform."""
    for text in UNAME_TO_PLATFORM.values():
        platform = Platform.parse(text)
        if platform.tag_suffix == arch:
            return platform
    return None
