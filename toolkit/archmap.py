"""THE mapping between CPU architectures as machines report them (`uname -m`), OCI platforms,
and the runner tags / agent labels archfleet gives them.

One piece of code for provisioning (tags a runner with what its CPU really is), the GitLab
templates and the Jenkins step (native guard: the job's `uname -m` must be its platform's).
The templates and the shared library embed `export()`'s JSON, generated from here and checked
by the tests to be in sync.
"""

from __future__ import annotations

import re
from typing import Any

from .registry import platforms
from .registry.manifest import Platform

# `uname -m` -> OCI platform. armv8l is a 32-bit arm userland on a 64-bit CPU: it runs arm/v7.
# These are the kernel's machine names, not OCI spellings, so containerd's normalizeArch does not
# cover them all (armv7l, armv6l, armv8l, i686); the values are canonical platforms (a unit test
# checks that Platform.parse leaves each as it is).
UNAME_TO_PLATFORM: dict[str, str] = {
    "x86_64": "linux/amd64",
    "amd64": "linux/amd64",
    "aarch64": "linux/arm64",
    "arm64": "linux/arm64",
    "armv8l": "linux/arm/v7",
    "armv7l": "linux/arm/v7",
    "armv6l": "linux/arm/v6",
    "i386": "linux/386",
    "i686": "linux/386",
    "ppc64le": "linux/ppc64le",
    "s390x": "linux/s390x",
    "riscv64": "linux/riscv64",
}

DEFAULT_TAG_PATTERN = "{arch}"
_TAG_RE = re.compile(r"^[A-Za-z0-9_.:/ -]{1,255}$")


class ArchError(ValueError):
    pass


def platform_for_uname(machine: str) -> Platform:
    """`uname -m` as a host prints it -> the OCI platform it natively runs."""
    try:
        return Platform.parse(UNAME_TO_PLATFORM[machine.strip()])
    except KeyError:
        known = ", ".join(sorted(UNAME_TO_PLATFORM))
        raise ArchError(
            f"unknown machine architecture {machine.strip()!r} (known: {known})"
        ) from None


def spellings(platform: Platform) -> list[str]:
    """The texts a platforms list may use for `platform`, as containerd normalises them
    (toolkit/registry/platforms.py, from containerd/platforms database.go normalizeArch):
    `linux/arm/v7` is also `linux/arm`, `arm`, `linux/armhf`, `linux/arm/7`; `linux/arm64` is
    also `linux/aarch64`, `linux/arm64/v8`, `arm64/8`, .... The canonical name comes first.

    For the GitLab templates' `archfleet_platform_canonical` and the Jenkins table, which cannot
    run Python: they look a spelling up instead of normalising it.
    """
    names = platforms.spellings(platform.spec)
    canonical = str(platform)
    return [canonical, *sorted(n for n in names if n != canonical)]


def unames_for(platform: Platform) -> list[str]:
    """The `uname -m` values of a machine that runs `platform` natively."""
    return sorted(m for m, p in UNAME_TO_PLATFORM.items() if Platform.parse(p) == platform)


def runner_tag(platform: Platform, pattern: str = DEFAULT_TAG_PATTERN) -> str:
    """The runner tag / agent label for a platform: `{arch}` is `amd64`, `arm64`, `arm-v7`;
    `{os}`, `{architecture}` and `{variant}` are there for other schemes (`linux-{arch}`)."""
    try:
        tag = pattern.format(
            arch=platform.tag_suffix,
            os=platform.os,
            architecture=platform.architecture,
            variant=platform.variant,
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise ArchError(
            f"tag pattern {pattern!r}: {exc!r}; use {{arch}}, {{os}}, {{variant}}"
        ) from None
    if not _TAG_RE.match(tag):
        raise ArchError(f"tag pattern {pattern!r} gives {tag!r}, not a usable runner tag")
    return tag


def export() -> dict[str, Any]:
    """The mapping as data, for the CI templates and the Jenkins library."""
    known = sorted({str(Platform.parse(p)) for p in UNAME_TO_PLATFORM.values()})
    return {
        "unameToPlatform": {
            m: str(Platform.parse(p)) for m, p in sorted(UNAME_TO_PLATFORM.items())
        },
        "platforms": {
            p: {
                "tag": runner_tag(Platform.parse(p)),
                "unames": unames_for(Platform.parse(p)),
                "spellings": spellings(Platform.parse(p)),
            }
            for p in known
        },
        "defaultTagPattern": DEFAULT_TAG_PATTERN,
    }
