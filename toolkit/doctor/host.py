"""Host checks, pure: what one SSH probe of a host found (HostProbe) -> Check rows.

The probe runs ONE command on the host: the facts script provisioning itself reads
(toolkit/fleet/facts.py) with SUDO_FRAGMENT after it, as the login user — not through
`ssh.become`, since whether sudo works is one of the questions. So the doctor judges the
arch, the builder and the merge tool from the very facts `provision-runners` plans with, and
its verdicts agree with the plan's (toolkit/fleet/plan.py: check_native, plan_builder,
plan_merge_tool).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..fleet.facts import HostFacts
from ..fleet.merge_tool import LINK
from ..inventory import Host, Inventory
from .checks import Check, blocker, ok, warn

# After the facts script, as the login user: can it become root without a password? A
# constant, like the facts script: no inventory value is pasted into it. `sudo -n` fails at
# once where a password would be asked; stdin is closed so nothing can wait for one.
SUDO_FRAGMENT = r"""
if [ "$(id -u)" != 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "doctor_sudo=missing"
  elif said=$(sudo -n true 2>&1 </dev/null); then
    echo "doctor_sudo=ok"
  else
    echo "doctor_sudo=refused"
    printf '%s\n' "$said" | grep -m1 . | sed 's/^/doctor_sudo_said=/'
  fi
fi
"""

SudoState = Literal["ok", "refused", "missing"]
HopRole = Literal["target", "jump host"]


@dataclass(frozen=True)
class Sudo:
    """What SUDO_FRAGMENT printed; `state` None: the login is root, nothing was asked."""

    state: SudoState | None
    said: str = ""


def parse_sudo(output: str) -> Sudo:
    values: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("doctor_sudo"):
            values.setdefault(key, value.strip())
    state = values.get("doctor_sudo")
    if state not in ("ok", "refused", "missing"):
        return Sudo(None)
    return Sudo(state, values.get("doctor_sudo_said", ""))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Hop:
    """One SSH hop as the connection resolved it (ssh config included)."""

    role: HopRole
    address: str
    port: int
    user: str

    def __str__(self) -> str:
        return f"{self.role} {self.address}:{self.port}"


@dataclass(frozen=True)
class SshFailure:
    """The connection failed; `failed` is the hop it failed at (the jump host when the jump
    host alone could not be reached either), `error` the connect error's message."""

    failed: Hop
    error: str
    key: Path | None
    via: Hop | None = None  # the jump host the target was tried through


@dataclass(frozen=True)
class HostProbe:
    host: Host
    facts: HostFacts | None = None
    sudo: Sudo = Sudo(None)
    ssh: SshFailure | None = None
    # The connection worked but the facts command did not (its message).
    error: str | None = None
    # The target's hop, as the connection resolved it (login user, port).
    login: Hop | None = None
    jump: Hop | None = None


def evaluate_host(inventory: Inventory, probe: HostProbe) -> list[Check]:
    """Every check of one host, in a fixed order: ssh, sudo, arch, builder, merge tool."""
    host = probe.host
    name = host.name
    if probe.ssh is not None:
        return [_ssh_blocker(name, probe.ssh)]
    login = probe.login or Hop("target", host.address, host.ssh.port, host.ssh.user)
    via = f" via {probe.jump}" if probe.jump else ""
    if probe.facts is None:
        return [
            ok("ssh", name, f"{login} as {login.user}{via}"),
            blocker(
                "facts",
                name,
                f"the facts command failed: {probe.error or 'no output'}",
                f"run `archfleet fleet-facts --limit {name}` and fix what the host lacks (a "
                "POSIX sh, coreutils)",
            ),
        ]
    facts = probe.facts
    checks = [ok("ssh", name, f"{login} as {facts.user or login.user}{via}")]
    checks.append(_sudo_check(host, facts, probe.sudo))
    checks.append(_arch_check(inventory, host, facts))
    if host.has_role("gitlab-runner") or host.has_role("jenkins-agent"):
        checks.append(_builder_check(inventory, host, facts))
    if host.has_role("jenkins-agent") and inventory.jenkins is not None:
        checks.append(_java_check(host, facts, inventory.jenkins.java_version))
    if host.has_role("merge-tool") and inventory.archfleet:
        checks.append(_merge_tool_check(host, facts, inventory.archfleet.version))
    return checks


# --- ssh ---------------------------------------------------------------------------------------


def _key_text(key: Path | None) -> str:
    return f"key {key}" if key else "the default keys (ssh agent, ~/.ssh/id_*)"


def _ssh_blocker(name: str, failure: SshFailure) -> Check:
    """The hop, the user and the key, each said once: connect.py's message may name some of
    them already (it says `user@address:port` and the key where it knows them)."""
    hop, error = failure.failed, failure.error
    through = f" (through {failure.via})" if failure.via and hop.role == "target" else ""
    for_target = " (the jump host of this host)" if hop.role == "jump host" else ""
    who = "" if f"{hop.user}@" in error else f" as {hop.user}"
    key = failure.key
    which = "" if key is not None and str(key) in error else f" with {_key_text(key)}"
    detail = f"{hop}{for_target}{through}{who}{which}: {error}"
    return blocker("ssh", name, detail, ssh_fix(error, hop, key))


def ssh_fix(error: str, hop: Hop, key: Path | None) -> str:
    """The one thing to do about a connect error at `hop` (its message as connect.py words
    it; matched loosely, so a reworded message still finds its fix)."""
    text = error.lower()
    where = f"{hop.address}:{hop.port}"
    if "authentication" in text or "permission denied" in text:
        return (
            f"let {hop.user} log in on the {hop.role} {where} with {_key_text(key)} (its "
            f"public key in ~{hop.user}/.ssh/authorized_keys there), or correct ssh.user / "
            "ssh.key in the inventory"
        )
    if "mismatch" in text or "differs" in text or "changed" in text:
        return (
            f"the {hop.role} {where} presents another host key than known_hosts holds: if it "
            "was reinstalled, check its new fingerprint and replace the known_hosts entry"
        )
    if "host key" in text or "known_hosts" in text:
        return (
            f"add the {hop.role}'s key to the inventory's known_hosts (ssh-keyscan -p "
            f"{hop.port} {hop.address}, after checking its fingerprint), or run with "
            "--accept-new-host-keys"
        )
    if "ssh config" in text:
        return "fix or remove ssh.ssh_config_file in the inventory"
    return (
        f"check that the {hop.role} {where} is up and its sshd listens there (address, "
        "ssh.port, firewall, ssh.connect_timeout)"
    )


# --- sudo --------------------------------------------------------------------------------------

_SUDOERS_FIX = (
    "give {user} passwordless sudo (a line '{user} ALL=(root) NOPASSWD: ALL' in "
    "/etc/sudoers.d/archfleet, mode 0440), or log in as root"
)


def _sudo_check(host: Host, facts: HostFacts, sudo: Sudo) -> Check:
    name, user = host.name, facts.user or host.ssh.user
    if user == "root":
        return ok("sudo", name, "logged in as root: no sudo needed")
    fix = _SUDOERS_FIX.format(user=user)
    if sudo.state == "missing":
        return blocker(
            "sudo", name, f"logged in as {user}, and sudo is not installed", f"install sudo; {fix}"
        )
    if sudo.state == "refused":
        said = f" ({sudo.said})" if sudo.said else ""
        return blocker("sudo", name, f"`sudo -n true` as {user} failed{said}", fix)
    if sudo.state is None:
        return warn(
            "sudo",
            name,
            f"logged in as {user}, but the sudo check printed nothing",
            f"run `sudo -n true` as {user} on {name} by hand; {fix}",
        )
    if host.ssh.become != "sudo":
        return blocker(
            "sudo",
            name,
            f"logged in as {user} (not root) and ssh.become is not sudo: provisioning steps "
            "(packages, /etc, services) would run without root",
            f"set ssh.become: sudo for {name} in the inventory ({user}'s sudo works)",
        )
    return ok("sudo", name, f"{user}: sudo without a password works (ssh.become: sudo)")


# --- arch --------------------------------------------------------------------------------------


def _arch_check(inventory: Inventory, host: Host, facts: HostFacts) -> Check:
    found = f"{facts.arch} (uname -m: {facts.machine})"
    if host.declared_arch is None:
        return ok("arch", host.name, f"{found}; the inventory declares none")
    if host.declared_arch == facts.arch:
        return ok("arch", host.name, found)
    return blocker(
        "arch",
        host.name,
        f"the inventory declares {host.declared_arch}, the host is {found}: provisioning "
        "refuses it (native or nothing)",
        f"set arch: {facts.arch} for {host.name} in {inventory.path}, or point its address at "
        f"the {host.declared_arch} machine it was meant to be",
    )


# --- builder -----------------------------------------------------------------------------------

_PACKAGES = {"buildah": "buildah and skopeo", "umoci": "umoci and skopeo"}


def _java_check(host: Host, facts: HostFacts, wanted: int) -> Check:
    """The agent's Java, judged as plan_jenkins judges it (toolkit/fleet/plan.py): enough,
    installable from the OS's packages (provisioning does it), or a blocker — the same
    sentence provisioning would stop with."""
    from ..fleet.java import java_package, no_package_message, parse_major

    name = host.name
    have = parse_major(facts.java)
    if have is not None and have >= wanted:
        return ok("java", name, f"Java {facts.java} (the agent needs {wanted}+)")
    package = java_package(facts.os_id, facts.os_version, wanted)
    if package is not None:
        return warn(
            "java",
            name,
            f"Java {facts.java or 'none'}; the agent needs {wanted}+: provision-runners "
            f"installs {package.package} ({package.manager})",
            "nothing to do if the host may install packages; else install it by hand",
        )
    message = no_package_message(name, facts.os_id, facts.os_version, wanted, facts.java)
    detail, _, fix = message.removeprefix(f"{name}: ").partition(". ")
    return blocker("java", name, detail, fix)


def _builder_check(inventory: Inventory, host: Host, facts: HostFacts) -> Check:
    builder = inventory.builder
    name = host.name
    if builder.tool in _PACKAGES:
        tool = facts.buildah if builder.tool == "buildah" else facts.umoci
        what = _PACKAGES[builder.tool]
        if tool and facts.skopeo:
            return ok("builder", name, f"{builder.tool} {tool}, skopeo {facts.skopeo}")
        missing = [n for n, v in ((builder.tool, tool), ("skopeo", facts.skopeo)) if not v]
        detail = f"builder.tool is {builder.tool}; missing: {', '.join(missing)}"
    else:
        what = "docker and its buildx plugin"
        if facts.docker and facts.buildx:
            return ok("builder", name, f"docker {facts.docker}, buildx {facts.buildx}")
        missing = [n for n, v in (("docker", facts.docker), ("buildx", facts.buildx)) if not v]
        detail = f"builder.tool is docker; missing: {', '.join(missing)}"
        if builder.install and facts.os_id == "debian" and facts.os_version.startswith("12"):
            return blocker(
                "builder",
                name,
                f"{detail}; Debian 12 has no docker-buildx package, so installing fails",
                "use builder.tool: buildah (what the shell runners build with), or install "
                "Docker's own docker-ce and docker-buildx-plugin packages on the host first",
            )
    if builder.install:
        return warn(
            "builder",
            name,
            f"{detail}; provision-runners installs {what} from the OS packages",
            "nothing to do if the host may install packages; else install them by hand",
        )
    return blocker(
        "builder",
        name,
        f"{detail}, and builder.install is false",
        f"install {what} on {name}, or set builder.install: true",
    )


# --- merge tool --------------------------------------------------------------------------------


def _merge_tool_check(host: Host, facts: HostFacts, version: str) -> Check:
    """Where a Jenkins merge agent looks for it: `archfleet` on PATH, our link."""
    name = host.name
    installed = facts.archfleet
    provision = f"run provision-runners --limit {name}"
    if installed == version:
        if facts.archfleet_linked:
            return ok("merge-tool", name, f"archfleet {version} at {LINK}")
        return warn(
            "merge-tool",
            name,
            f"archfleet {version} is installed but {LINK} does not point to it: a merge "
            "job's `archfleet` finds another one or none",
            f"{provision} (it links it)",
        )
    if installed is None and not facts.python3_venv and not facts.apt_get:
        has = f"python3 {facts.python3} without venv" if facts.python3 else "no python3"
        return blocker(
            "merge-tool",
            name,
            f"archfleet is not installed; the host has {has} and no apt-get to install it",
            f"install python3 (3.11+) with its venv module on {name}, then {provision}",
        )
    if installed is None:
        state = (
            "its virtualenv is there but does not run"
            if facts.archfleet_venv
            else "archfleet is not installed"
        )
        return warn(
            "merge-tool",
            name,
            f"{state}; the inventory pins {version}",
            f"{provision} (it installs archfleet {version})",
        )
    return warn(
        "merge-tool",
        name,
        f"archfleet {installed} is installed, the inventory pins {version}: the Jenkins "
        "step's preflight refuses a tool of another version than the library",
        f"{provision} (it upgrades it)",
    )
