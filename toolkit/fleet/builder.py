"""Host-side scripts for the build tooling: install buildah, docker+buildx or umoci+skopeo from
the OS packages (the job users' groups: toolkit/fleet/users.py). Pure: they return POSIX sh;
every value that comes from the inventory goes through shlex.quote."""

from __future__ import annotations

from .apt import APT_GET_FUNCTION, FAILURE_MARKER

# Per package manager: what provides each builder. buildah needs skopeo beside it to push by
# digest (the templates and the Jenkins step copy the OCI layout with skopeo). umoci edits OCI
# layouts with no daemon and no namespaces; skopeo moves them to and from the registry.
_PACKAGES = {
    "apt-get": {
        "buildah": "buildah skopeo",
        "docker": "docker.io docker-buildx",
        "umoci": "umoci skopeo",
    },
    "dnf": {
        "buildah": "buildah skopeo",
        "docker": "moby-engine docker-buildx",
        "umoci": "umoci skopeo",
    },
    "yum": {"buildah": "buildah skopeo", "docker": "docker docker-buildx", "umoci": "umoci skopeo"},
    "apk": {
        "buildah": "buildah skopeo",
        "docker": "docker docker-cli-buildx",
        "umoci": "umoci skopeo",
    },
}
# What proves the install worked, per builder.
_CHECKS = {
    "buildah": "buildah --version",
    "docker": "docker buildx version",
    "umoci": "umoci --version && skopeo --version",
}
_INSTALL = {
    # apt_get: apt-get with a bounded wait for the locks of a host's unattended-upgrades.
    "apt-get": "apt_get update -qq && apt_get install -y -qq --no-install-recommends",
    "dnf": "dnf install -y -q",
    "yum": "yum install -y -q",
    "apk": "apk add --no-cache -q",
}


def install_builder_script(tool: str) -> str:
    if tool not in _CHECKS:
        raise ValueError(f"unknown builder {tool!r}: expected one of {', '.join(_CHECKS)}")
    branches = []
    for manager, packages in _PACKAGES.items():
        branches.append(
            f"if command -v {manager} >/dev/null 2>&1; then {_INSTALL[manager]} {packages[tool]}"
        )
    check = _CHECKS[tool]
    # set -e stops at a failed dnf/yum/apk; apt_get ends the script itself (apt.py), with
    # its cause in one FAILURE_MARKER line, as do the two failures below.
    return (
        "set -e\n"
        + APT_GET_FUNCTION
        + "\nel".join(branches)
        + f"\nelse echo '{FAILURE_MARKER}no supported package manager (apt-get, dnf, yum, apk) "
        "on this host; fix: install the builder yourself and set builder.install: false' >&2; "
        "exit 3\nfi\n"
        + f"if ! {{ {check}; }} >/dev/null; then\n"
        + f"  echo '{FAILURE_MARKER}the packages are installed but `{check}` fails' >&2\n"
        + "  exit 4\nfi\n"
    )
