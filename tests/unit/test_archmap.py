"""The one arch mapping: uname -m -> OCI platform -> runner tag / agent label."""

import pytest

from toolkit.archmap import ArchError, export, platform_for_uname, runner_tag, unames_for
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
    assert data["platforms"]["linux/amd64"] == {"tag": "amd64", "unames": ["amd64", "x86_64"]}
    for machine, platform in data["unameToPlatform"].items():
        assert machine in data["platforms"][platform]["unames"]
