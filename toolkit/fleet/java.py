"""Java for a Jenkins agent, without I/O: which major a host has, which OS package gives the
major Jenkins needs, and the POSIX sh that installs it and checks `java` on PATH afterwards.

Why 21: Jenkins weekly 2.545 and LTS 2.555.1 dropped Java 17; they need Java 21 (or 25) on
the controller AND every agent ("These requirements apply to all components of the Jenkins
system, including the Jenkins controller, all types of agents" — jenkins.io
doc/book/platform-information/support-policy-java; jenkins.io doc/upgrade-guide/2.555/: "now
requires Java 21 for controllers and agents"). An agent on 17 fails at launch with
UnsupportedClassVersionError from remoting's agent.jar, the way Java 8 agents failed after
2.361.1 (jenkins.io doc/upgrade-guide/2.361/).

Why `java` on PATH: the ssh-agents plugin runs `java -version` and then the agent with the
`java` it finds on the login's PATH unless the node sets `javaPath`
(ssh-agents-plugin src/main/java/hudson/plugins/sshslaves/SSHLauncher.java,
`checkJavaIsInPath`). Installing a second JDK is not enough when the alternatives system keeps
an older one first (Debian/Ubuntu `update-alternatives` in manual mode, RHEL `alternatives`):
the script points `java` at the new runtime, or fails saying so.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from .apt import APT_GET_FUNCTION

# Exit codes of install_java_script, for the apply step's message.
EXIT_NO_MANAGER = 3
EXIT_NO_JAVA = 4
EXIT_TOO_OLD = 5

_MAJOR = re.compile(r"^(\d+)(?:\.(\d+))?")


def parse_major(version: str | None) -> int | None:
    """The feature release of a Java version string as facts report it (the runtime's
    `release` file or `java -version`): "17.0.12" -> 17, "21" -> 21, "21-ea" -> 21,
    "1.8.0_402" -> 8 (the pre-9 scheme). None when missing or unreadable."""
    if not version:
        return None
    found = _MAJOR.match(version.strip().strip('"'))
    if not found:
        return None
    first = int(found.group(1))
    if first == 1 and found.group(2) is not None:
        return int(found.group(2))
    return first


@dataclass(frozen=True)
class JavaPackage:
    """The OS package that provides a headless Java runtime of `major`, and how to install it."""

    package: str
    manager: str  # apt-get, dnf, yum, apk
    major: int


class NoJavaPackage(ValueError):
    """The host's OS has no package of the Java major Jenkins needs; the message says what to do."""


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


# Which headless runtimes each release ships, from the distributions' package lists:
# Debian 12 (bookworm) has openjdk-17 only, Debian 13 (trixie) openjdk-21 only; Ubuntu 22.04
# and 24.04 have openjdk-17 and openjdk-21; RHEL 8.9+/9.3+ and rebuilds (Rocky, Alma, CentOS
# Stream), Fedora 39+: java-17/21-openjdk; Alpine 3.19+ community: openjdk17/21.
# (family, minimum version, majors); the first row whose minimum the host meets applies.
_RELEASES: dict[str, tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]] = {
    "debian": (((13,), (21,)), ((12,), (17,)), ((11,), (11, 17))),
    "ubuntu": (((22, 4), (17, 21)), ((20, 4), (11, 17))),
    "rhel": (((8,), (17, 21)),),
    "fedora": (((39,), (21,)), ((35,), (17,))),
    "alpine": (((3, 19), (17, 21)), ((3, 15), (17,))),
}
_FAMILY = {
    "debian": "debian",
    "raspbian": "debian",
    "ubuntu": "ubuntu",
    "rhel": "rhel",
    "rocky": "rhel",
    "almalinux": "rhel",
    "centos": "rhel",
    "ol": "rhel",
    "fedora": "fedora",
    "alpine": "alpine",
}
_PACKAGE = {
    "debian": ("openjdk-{major}-jre-headless", "apt-get"),
    "ubuntu": ("openjdk-{major}-jre-headless", "apt-get"),
    "rhel": ("java-{major}-openjdk-headless", "dnf"),
    "fedora": ("java-{major}-openjdk-headless", "dnf"),
    "alpine": ("openjdk{major}-jre-headless", "apk"),
}


def available_majors(os_id: str, os_version: str) -> tuple[int, ...]:
    """The Java majors the OS's own repositories ship (empty: unknown OS or too old)."""
    family = _FAMILY.get(os_id.strip().lower())
    if family is None:
        return ()
    version = _version_tuple(os_version)
    if not version:
        return ()
    for minimum, majors in _RELEASES[family]:
        if version >= minimum:
            return majors
    return ()


def java_package(os_id: str, os_version: str, major: int) -> JavaPackage | None:
    """The package giving Java `major` or the lowest newer major the OS ships (a newer runtime
    runs the agent too), or None when the OS has none."""
    family = _FAMILY.get(os_id.strip().lower())
    candidates = [m for m in available_majors(os_id, os_version) if m >= major]
    if family is None or not candidates:
        return None
    template, manager = _PACKAGE[family]
    chosen = min(candidates)
    return JavaPackage(template.format(major=chosen), manager, chosen)


def no_package_message(
    host: str, os_id: str, os_version: str, major: int, current: str | None
) -> str:
    """Why the host cannot get Java `major` from its OS, and what the user can do."""
    os_name = f"{os_id or 'an unknown OS'} {os_version}".strip()
    has = f"it has Java {current}" if current else "it has no Java"
    shipped = available_majors(os_id, os_version)
    ships = (
        f"{os_name} ships Java {', '.join(map(str, shipped))} only"
        if shipped
        else f"archfleet knows no Java package for {os_name}"
    )
    upgrade = " or upgrade the host to Debian 13 (trixie)" if os_id == "debian" else ""
    return (
        f"{host}: the Jenkins agent needs Java {major} (jenkins.java_version; current Jenkins, "
        f"2.545+ and LTS 2.555.1+, refuses older agents) but {has} and {ships}. "
        f"Install a Java {major} runtime yourself (e.g. Eclipse Temurin {major} from "
        f"Adoptium's repository) so that `java` on the agent user's PATH is {major}+{upgrade}; "
        f"or set jenkins.java_version to what your Jenkins needs"
    )


_MANAGERS = {
    # apt_get (apt.py): a bounded wait for the locks of a fresh host's unattended-upgrades.
    "apt-get": "apt_get update -qq && apt_get install -y -qq --no-install-recommends {p}",
    "dnf": "dnf install -y -q {p}",
    "yum": "yum install -y -q {p}",
    "apk": "apk add --no-cache -q {p}",
}

# `java_major CMD`: the feature release of a java binary (1.8 -> 8), 0 when it does not run.
_JAVA_MAJOR_FUNCTION = r"""
java_major() {
  v=$("$1" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
  case $v in 1.*) v=${v#1.} ;; esac
  v=${v%%[!0-9]*}
  echo "${v:-0}"
}
"""

# Point `java` on PATH at a runtime >= $want: through the alternatives system when it manages
# java (Debian/Ubuntu update-alternatives, RHEL alternatives), else Alpine's default-jvm link.
_REPOINT = r"""
repoint_java() {
  for alt in update-alternatives alternatives; do
    command -v "$alt" >/dev/null 2>&1 || continue
    # Debian lists paths with --list NAME; RHEL's alternatives shows them with --display.
    for candidate in $({ "$alt" --list java; "$alt" --display java; } 2>/dev/null |
        grep -o '/[^ ]*/bin/java' | sort -u); do
      [ -x "$candidate" ] || continue
      if [ "$(java_major "$candidate")" -ge "$want" ]; then
        "$alt" --set java "$candidate" >/dev/null
        echo "java on PATH now points at $candidate ($alt)"
        return 0
      fi
    done
  done
  if [ -L /usr/lib/jvm/default-jvm ]; then
    for dir in /usr/lib/jvm/java-"$want"-openjdk /usr/lib/jvm/java-"$want"-*; do
      if [ -x "$dir/bin/java" ] && [ "$(java_major "$dir/bin/java")" -ge "$want" ]; then
        ln -sfn "${dir##*/}" /usr/lib/jvm/default-jvm
        echo "java on PATH now points at $dir (/usr/lib/jvm/default-jvm)"
        return 0
      fi
    done
  fi
  return 1
}
"""


def install_java_script(major: int, package: str, manager: str) -> str:
    """POSIX sh: make `java` on PATH Java `major` or newer — nothing when it already is,
    else install `package` with `manager` and check again, repointing the alternatives when an
    older runtime stays first. Exit 3: no `manager` on the host; 4: no java after installing;
    5: java on PATH still older than `major` (the message names what is installed)."""
    if isinstance(major, bool) or not isinstance(major, int) or major < 8:
        raise ValueError(f"Java major {major!r}: expected an integer >= 8")
    if manager not in _MANAGERS:
        raise ValueError(f"package manager {manager!r}: expected one of {', '.join(_MANAGERS)}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+_-]*", package):
        raise ValueError(f"package {package!r}: expected a package name")
    q_package, q_manager = shlex.quote(package), shlex.quote(manager)
    install = _MANAGERS[manager].format(p=q_package)
    return (
        "set -e\n"
        'export PATH="$PATH:/usr/local/bin:/usr/sbin:/sbin"\n'
        f"want={major}\n"
        f"{APT_GET_FUNCTION}{_JAVA_MAJOR_FUNCTION}{_REPOINT}"
        "have=0\n"
        "if command -v java >/dev/null 2>&1; then have=$(java_major java); fi\n"
        'if [ "$have" -ge "$want" ]; then\n'
        '  echo "java $have already installed (>= $want)"\n'
        "  exit 0\n"
        "fi\n"
        f"if ! command -v {q_manager} >/dev/null 2>&1; then\n"
        f'  echo "cannot install {package}: no {manager} on this host; install a Java $want '
        f'runtime by hand" >&2\n'
        f"  exit {EXIT_NO_MANAGER}\n"
        "fi\n"
        f"{install}\n"
        "hash -r 2>/dev/null || true\n"
        "if ! command -v java >/dev/null 2>&1; then\n"
        f'  echo "{package} installed but there is no java on PATH" >&2\n'
        f"  exit {EXIT_NO_JAVA}\n"
        "fi\n"
        "have=$(java_major java)\n"
        'if [ "$have" -lt "$want" ]; then\n'
        "  repoint_java || true\n"
        "  hash -r 2>/dev/null || true\n"
        "  have=$(java_major java)\n"
        "fi\n"
        'if [ "$have" -lt "$want" ]; then\n'
        f'  echo "{package} is installed but java on PATH ($(command -v java)) is Java $have, '
        "not $want+; the agent would start that one. Make a Java $want runtime the default "
        '(update-alternatives --config java) or remove the older one" >&2\n'
        f"  exit {EXIT_TOO_OLD}\n"
        "fi\n"
        "java -version 2>&1 | head -n1\n"
    )
