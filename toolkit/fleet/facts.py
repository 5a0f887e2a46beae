"""ALL facts of a host in ONE remote command: the arch it really is, its OS, whether it could
emulate, its build tool, gitlab-runner and its registered runners, Java, free disk.

The script is a constant (no inventory string is ever pasted into it), prints `key=value`
lines, and never prints a secret: registered runners are reported by id, name and a hash of
their token, so "is this runner already registered" needs no token to leave the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..archmap import ArchError, platform_for_uname
from ..registry.manifest import Platform
from .gitlab_host import RUNNER_RUNNING_FUNCTION
from .merge_tool import FACTS_FRAGMENT as MERGE_TOOL_FACTS
from .merge_tool import PYTHON_FACTS_FRAGMENT, parse_version

_COMMON_FACTS = (
    r"""
export LC_ALL=C PATH="$PATH:/usr/local/bin:/usr/sbin:/sbin"
"""
    + RUNNER_RUNNING_FUNCTION
    + r"""
echo "machine=$(uname -m)"
if [ -r /etc/os-release ]; then
  . /etc/os-release
  echo "os_id=${ID:-}"
  echo "os_version=${VERSION_ID:-}"
fi
if [ -d /proc/sys/fs/binfmt_misc ]; then
  for f in /proc/sys/fs/binfmt_misc/qemu-*; do
    [ -f "$f" ] && head -n1 "$f" | grep -q enabled && echo "binfmt=${f##*/}"
  done
fi
if command -v docker >/dev/null 2>&1; then
  echo "docker=$(docker version --format '{{.Client.Version}}' 2>/dev/null | head -n1)"
  echo "buildx=$(docker buildx version 2>/dev/null | head -n1 | cut -d' ' -f2)"
fi
command -v buildah >/dev/null 2>&1 && echo "buildah=$(buildah --version | cut -d' ' -f3)"
command -v umoci >/dev/null 2>&1 && echo "umoci=$(umoci --version | sed -n 's/^umoci version *//p')"
command -v skopeo >/dev/null 2>&1 && echo "skopeo=$(skopeo --version | cut -d' ' -f3)"
if command -v gitlab-runner >/dev/null 2>&1; then
  echo "gitlab_runner=$(gitlab-runner --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1)"
  # Where `gitlab-runner install` (kardianos/service) puts the service, per init system.
  service=absent
  for unit in /etc/systemd/system/gitlab-runner.service /lib/systemd/system/gitlab-runner.service \
      /usr/lib/systemd/system/gitlab-runner.service /etc/init.d/gitlab-runner \
      /etc/rc.d/init.d/gitlab-runner /etc/init/gitlab-runner.conf; do
    [ -f "$unit" ] && service=installed
  done
  if [ "$service" = installed ]; then
    if runner_running; then service=running; else service=stopped; fi
  fi
  echo "runner_service=$service"
fi
if id gitlab-runner >/dev/null 2>&1; then
  echo "runner_user=$(id -Gn gitlab-runner | tr ' ' ',')"
  grep -q '^gitlab-runner:' /etc/subuid 2>/dev/null &&
    grep -q '^gitlab-runner:' /etc/subgid 2>/dev/null && echo "runner_user_subids=yes"
fi
config=/etc/gitlab-runner/config.toml
if [ -r "$config" ]; then
  echo "runner_config_mode=$(stat -c %a "$config")"
  # `concurrent` is a top-level key: before the first table.
  echo "runner_concurrent=$(awk '/^[ \t]*\[/ { exit }
    /^[ \t]*concurrent[ \t]*=/ { sub(/^[^=]*=[ \t]*/, ""); print; exit }' "$config")"
  awk '
    /^\[\[runners\]\]/ { if (n != "") print id "|" n "|" t; n = ""; id = ""; t = "" }
    /^[ \t]*name *=/  { sub(/^[^=]*= *"?/, ""); sub(/"? *$/, ""); n = $0 }
    /^[ \t]*id *=/    { sub(/^[^=]*= */, ""); id = $0 }
    /^[ \t]*token *=/ { sub(/^[^=]*= *"?/, ""); sub(/"? *$/, ""); t = $0 }
    END { if (n != "") print id "|" n "|" t }
  ' "$config" | while IFS='|' read -r id name token; do
    echo "runner=$id|$name|$(printf %s "$token" | sha256sum | cut -c1-16)"
  done
fi
if java=$(command -v java 2>/dev/null); then
  # The runtime's `release` file (JDK 9+) holds the version `java -version` prints, and
  # reading it starts no JVM; without one, ask java itself.
  home=$(readlink -f "$java" 2>/dev/null) && home=${home%/bin/java} || home=
  version=
  [ -n "$home" ] && [ -r "$home/release" ] &&
    version=$(sed -n 's/^JAVA_VERSION="\([^"]*\)"$/\1/p' "$home/release" | head -n1)
  [ -n "$version" ] ||
    version=$(java -version 2>&1 | head -n1 | sed 's/.*version "\([^"]*\)".*/\1/')
  echo "java=$version"
fi
echo "disk_free_kb=$(df -Pk / | awk 'NR==2 {print $4}')"
echo "user=$(id -un)"
echo "groups=$(id -Gn | tr ' ' ',')"
"""
    + MERGE_TOOL_FACTS
)
_DONE = 'echo "facts=done"\n'


def facts_script(*, python: bool) -> str:
    """The facts command; with `python`, also python3's version and venv and apt-get, which
    only the merge-tool role's planning reads (toolkit/fleet/plan.py)."""
    return _COMMON_FACTS + (PYTHON_FACTS_FRAGMENT if python else "") + _DONE


# Every fact, as a merge-tool host is asked.
FACTS_SCRIPT = facts_script(python=True)


class FactsError(RuntimeError):
    pass


@dataclass(frozen=True)
class RegisteredRunner:
    id: str
    name: str
    token_hash: str


@dataclass(frozen=True)
class HostFacts:
    machine: str
    platform: Platform
    os_id: str = ""
    os_version: str = ""
    emulators: tuple[str, ...] = ()
    docker: str | None = None
    buildx: str | None = None
    buildah: str | None = None
    umoci: str | None = None
    skopeo: str | None = None
    gitlab_runner: str | None = None
    runners: tuple[RegisteredRunner, ...] = ()
    runner_config_mode: str | None = None
    java: str | None = None
    disk_free_kb: int = 0
    user: str = ""
    groups: tuple[str, ...] = field(default=())
    # gitlab-runner's service: "absent" (no service definition), "stopped", "running"; None
    # when gitlab-runner itself is not installed.
    runner_service: str | None = None
    # The gitlab-runner user's groups; None: no such user.
    runner_user_groups: tuple[str, ...] | None = None
    runner_user_subids: bool = False
    runner_concurrent: int | None = None
    # The merge-tool role's archfleet (toolkit/fleet/merge_tool.py): the version its
    # `--version` says (None: not installed, or it does not run), whether its virtualenv is
    # there at all (there but no version: broken), the sha256 of the wheel it was made from,
    # and whether `archfleet` on PATH is our link to it.
    archfleet: str | None = None
    archfleet_venv: bool = False
    archfleet_wheel_sha256: str | None = None
    archfleet_linked: bool = False
    # python3's version, and whether it can make a virtualenv (venv + ensurepip).
    python3: str | None = None
    python3_venv: bool = False
    apt_get: bool = False

    @property
    def arch(self) -> str:
        """The OCI arch as runner tags spell it: amd64, arm64, arm-v7."""
        return self.platform.tag_suffix

    @property
    def can_emulate(self) -> bool:
        """binfmt handlers registered: builds for other arches would silently run under QEMU."""
        return bool(self.emulators)

    def runner_named(self, name: str) -> RegisteredRunner | None:
        return next((r for r in self.runners if r.name == name), None)


def parse_facts(output: str, *, host: str) -> HostFacts:
    values: dict[str, list[str]] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key.strip(), []).append(value.strip())
    if values.get("facts") != ["done"] or not values.get("machine"):
        raise FactsError(f"{host}: the facts command did not complete (output: {output[-300:]!r})")

    def one(key: str) -> str | None:
        found = values.get(key)
        return found[0] if found and found[0] else None

    machine = values["machine"][0]
    try:
        platform = platform_for_uname(machine)
    except ArchError as exc:
        raise FactsError(f"{host}: {exc}") from None
    runners = []
    for entry in values.get("runner", []):
        runner_id, name, token_hash = [*entry.split("|"), "", ""][:3]
        runners.append(RegisteredRunner(runner_id, name, token_hash))
    disk = one("disk_free_kb") or "0"
    runner_user = values.get("runner_user")
    concurrent = one("runner_concurrent") or ""
    return HostFacts(
        machine=machine,
        platform=platform,
        os_id=one("os_id") or "",
        os_version=one("os_version") or "",
        emulators=tuple(sorted(values.get("binfmt", []))),
        docker=one("docker"),
        buildx=one("buildx"),
        buildah=one("buildah"),
        umoci=one("umoci"),
        skopeo=one("skopeo"),
        gitlab_runner=one("gitlab_runner"),
        runners=tuple(runners),
        runner_config_mode=one("runner_config_mode"),
        java=one("java"),
        disk_free_kb=int(disk) if disk.isdigit() else 0,
        user=one("user") or "",
        groups=tuple(g for g in (one("groups") or "").split(",") if g),
        runner_service=one("runner_service"),
        runner_user_groups=(
            tuple(g for g in runner_user[0].split(",") if g) if runner_user is not None else None
        ),
        runner_user_subids=one("runner_user_subids") == "yes",
        runner_concurrent=int(concurrent) if concurrent.isdigit() else None,
        archfleet=parse_version(one("archfleet")),
        archfleet_venv=one("archfleet_venv") == "yes",
        archfleet_wheel_sha256=one("archfleet_wheel_sha256"),
        archfleet_linked=one("archfleet_linked") == "yes",
        python3=one("python3"),
        python3_venv=one("python3_venv") == "yes",
        apt_get=one("apt_get") == "yes",
    )
