"""The one arch mapping: uname -m -> OCI platform -> runner tag / agent label."""

import pytest

from toolkit.archmap import (
    UNAME_TO_PLATFORM,
    ArchError,
    export,
    platform_for_uname,
    runner_tag,
    spellings,
    unames_for,
)
from toolkit.registry.manifest import Platform


@pytest.mark.parametrize(
    ("machine", "platform", "tag"),
    [
        ("x86_64", "linux/amd64", "amd64"),
        ("aarch64", "linux/arm64", "arm64"),
        ("armv7l", "linux/arm/v7", "arm-v7"),
        ("ppc64le", "linux/ppc64le", "ppc64le"),
        ("s390x", "linux/s390x", "s390x"),
        ("riscv64", "linux/riscv64", "riscv64"),
        ("i686", "linux/386", "386"),
        ("x86_64\n", "linux/amd64", "amd64"),
    ],
)
def test_uname_to_platform_and_tag(machine: str, platform: str, tag: str) -> None:
    detected = platform_for_uname(machine)
    assert str(detected) == platform
    assert runner_tag(detected) == tag


def test_unknown_uname_is_named() -> None:
    with pytest.raises(ArchError, match="'sparc64'"):
        platform_for_uname("sparc64")


def test_patterns() -> None:
    arm = Platform.parse("linux/arm/v7")
    assert runner_tag(arm, "{os}-{arch}") == "linux-arm-v7"
    assert runner_tag(Platform.parse("linux/arm64"), "native-{architecture}") == "native-arm64"
    with pytest.raises(ArchError, match="nope"):
        runner_tag(arm, "{nope}")


def test_guard_unames_and_export_agree() -> None:
    assert unames_for(Platform.parse("linux/arm64")) == ["aarch64", "arm64"]
    data = export()
    amd64 = data["platforms"]["linux/amd64"]
    assert (amd64["tag"], amd64["unames"]) == ("amd64", ["amd64", "x86_64"])
    for machine, platform in data["unameToPlatform"].items():
        assert machine in data["platforms"][platform]["unames"]


def test_table_values_are_canonical() -> None:
    """The uname table's platforms are already what containerd's Normalize makes of them."""
    for platform in UNAME_TO_PLATFORM.values():
        assert str(Platform.parse(platform)) == platform


@pytest.mark.parametrize(
    ("spelling", "platform"),
    [
        # containerd/platforms database.go normalizeArch, as the guards' lookup table has it
        ("linux/arm", "linux/arm/v7"),  # case "arm": "", "7" -> v7
        ("arm", "linux/arm/v7"),
        ("linux/armhf", "linux/arm/v7"),  # case "armhf"
        ("linux/armel", "linux/arm/v6"),  # case "armel"
        ("linux/arm64/v8", "linux/arm64"),  # case "aarch64", "arm64": "8", "v8", "v8.0"
        ("arm64/8", "linux/arm64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/x86_64", "linux/amd64"),  # case "x86_64", "x86-64", "amd64"
        ("amd64/v1", "linux/amd64"),  # ... if variant == "v1" { variant = "" }
        ("linux/i386", "linux/386"),  # case "i386"
    ],
)
def test_exported_spellings_follow_containerd(spelling: str, platform: str) -> None:
    data = export()
    owners = [p for p, entry in data["platforms"].items() if spelling in entry["spellings"]]
    assert owners == [platform]
    assert data["platforms"][platform]["spellings"][0] == platform
    assert spellings(Platform.parse(platform))[0] == platform
