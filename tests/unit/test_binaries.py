"""Entrypoint ELF inspection over hand-built tar layers."""

from __future__ import annotations

import gzip
import io
import platform
import struct
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from toolkit.registry.binaries import (
    DEFAULT_PATH,
    BinaryCheckError,
    BinaryFinding,
    LayerLimitError,
    LayerLimits,
    UnsupportedLayer,
    architecture_matches,
    inspect_entrypoint,
)

TAR = "application/vnd.oci.image.layer.v1.tar"
TAR_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"
TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

EM_386, EM_MIPS, EM_PPC64, EM_S390, EM_ARM = 3, 8, 21, 22, 40
EM_X86_64, EM_AARCH64, EM_RISCV = 62, 183, 243


def elf_header(machine: int, *, bits: int = 64, little: bool = True) -> bytes:
    """An ELF header per the System V gABI: e_ident, then the class-sized fields."""
    order = "<" if little else ">"
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if little else 2, 1, 0]) + bytes(8)
    if bits == 64:
        # e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize,
        # e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        rest = struct.pack(
            f"{order}HHIQQQIHHHHHH", 2, machine, 1, 0x401000, 64, 0, 0, 64, 56, 0, 64, 0, 0
        )
    else:
        rest = struct.pack(
            f"{order}HHIIIIIHHHHHH", 2, machine, 1, 0x8000, 52, 0, 0, 52, 32, 0, 40, 0, 0
        )
    header = ident + rest
    assert len(header) == (64 if bits == 64 else 52)
    return header + b"\0" * 200  # some "code" after the header


AMD64 = elf_header(EM_X86_64)
ARM64 = elf_header(EM_AARCH64)
ARM = elf_header(EM_ARM, bits=32)


@dataclass(frozen=True)
class Member:
    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o755


def file(name: str, data: bytes, mode: int = 0o755) -> Member:
    return Member(name, tarfile.REGTYPE, data, mode=mode)


def directory(name: str) -> Member:
    return Member(name, tarfile.DIRTYPE)


def symlink(name: str, target: str) -> Member:
    return Member(name, tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink(name: str, target: str) -> Member:
    return Member(name, tarfile.LNKTYPE, linkname=target)


def whiteout(path: str) -> Member:
    parent, _, name = path.rpartition("/")
    return file(f"{parent}/.wh.{name}" if parent else f".wh.{name}", b"", mode=0o644)


def opaque(dir_path: str) -> Member:
    return file(f"{dir_path}/.wh..wh..opq", b"", mode=0o644)


class Image:
    """Layers written into tmp_path, bottom first."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.layers: list[tuple[Path, str]] = []

    def layer(self, *members: Member, media_type: str = TAR) -> Image:
        path = self.tmp_path / f"layer{len(self.layers)}.tar"
        gzipped = "gzip" in media_type
        with tarfile.open(path, "w:gz") if gzipped else tarfile.open(path, "w:") as tar:
            for member in members:
                info = tarfile.TarInfo(member.name)
                info.type = member.kind
                info.mode = member.mode
                info.linkname = member.linkname
                info.size = len(member.data) if member.kind == tarfile.REGTYPE else 0
                tar.addfile(info, io.BytesIO(member.data) if info.size else None)
        self.layers.append((path, media_type))
        return self

    def inspect(self, **config: Any) -> BinaryFinding:
        return inspect_entrypoint({"architecture": "amd64", "config": config}, self.layers)


@pytest.fixture
def image(tmp_path: Path) -> Image:
    return Image(tmp_path)


# --- which executable ---------------------------------------------------------------------


def test_entrypoint_wins_over_cmd(image: Image) -> None:
    image.layer(file("bin/ep", ARM64), file("bin/cmd", AMD64))

    found = image.inspect(Entrypoint=["/bin/ep", "--flag"], Cmd=["/bin/cmd"])

    assert found.path == "/bin/ep"
    assert found.resolved_path == "/bin/ep"
    assert found.architecture == "arm64"
    assert found.via_interpreter is None


@pytest.mark.parametrize("entrypoint", [None, []])
def test_cmd_used_without_entrypoint(image: Image, entrypoint: list[str] | None) -> None:
    image.layer(file("bin/ep", ARM64), file("bin/cmd", AMD64))

    found = image.inspect(Entrypoint=entrypoint, Cmd=["/bin/cmd", "serve"])

    assert (found.path, found.architecture) == ("/bin/cmd", "amd64")


def test_neither_entrypoint_nor_cmd_is_an_error(image: Image) -> None:
    image.layer(file("bin/app", AMD64))

    with pytest.raises(BinaryCheckError, match="neither Entrypoint nor Cmd"):
        image.inspect(Env=["PATH=/bin"])


def test_config_without_config_section_is_an_error(image: Image) -> None:
    image.layer(file("bin/app", AMD64))

    with pytest.raises(BinaryCheckError, match="neither Entrypoint nor Cmd"):
        inspect_entrypoint({"architecture": "amd64"}, image.layers)


def test_path_lookup_takes_first_executable_hit_from_config_env(image: Image) -> None:
    image.layer(
        file("usr/bin/app", AMD64),
        file("opt/tools/app", ARM64),
        file("opt/early/app", ARM, mode=0o644),  # not executable: execvp skips it
    )

    found = image.inspect(Env=["LANG=C", "PATH=/opt/early:/opt/tools:/usr/bin"], Cmd=["app"])

    assert found.path == "app"
    assert found.resolved_path == "/opt/tools/app"
    assert found.architecture == "arm64"


def test_path_lookup_uses_default_path_without_env(image: Image) -> None:
    image.layer(file("usr/bin/app", ARM64), file("bin/app", AMD64))

    found = image.inspect(Entrypoint=["app"])

    assert DEFAULT_PATH.index("/usr/bin") < DEFAULT_PATH.index(":/bin")
    assert (found.resolved_path, found.architecture) == ("/usr/bin/app", "arm64")


def test_command_not_on_path_names_the_command_and_path(image: Image) -> None:
    image.layer(file("usr/bin/other", AMD64), file("opt/app", AMD64, mode=0o644))

    with pytest.raises(BinaryCheckError, match=r"'app'.*'/usr/bin:/opt'.*not executable"):
        image.inspect(Env=["PATH=/usr/bin:/opt"], Cmd=["app"])


def test_relative_path_is_resolved_from_working_dir(image: Image) -> None:
    image.layer(file("srv/app/run", ARM64), file("run", AMD64))

    found = image.inspect(WorkingDir="/srv/app", Entrypoint=["./run"])

    assert found.resolved_path == "/srv/app/run"
    assert found.architecture == "arm64"


def test_member_names_with_and_without_dot_slash(image: Image) -> None:
    image.layer(directory("./"), directory("./usr/"), file("./usr/a", ARM64))
    image.layer(file("usr/b", AMD64))

    assert image.inspect(Entrypoint=["/usr/a"]).architecture == "arm64"
    assert image.inspect(Entrypoint=["/usr/b"]).architecture == "amd64"


def test_upper_layer_overrides_lower_file(image: Image) -> None:
    image.layer(file("bin/app", AMD64))
    image.layer(file("bin/app", ARM64))

    assert image.inspect(Entrypoint=["/bin/app"]).architecture == "arm64"


def test_directories_listed_again_in_upper_layer_merge(image: Image) -> None:
    image.layer(directory("usr"), directory("usr/bin"), file("usr/bin/app", ARM64))
    # Real layers list every parent directory again; that must not hide lower contents.
    image.layer(directory("usr"), directory("usr/bin"), file("usr/bin/other", AMD64))

    assert image.inspect(Entrypoint=["/usr/bin/app"]).architecture == "arm64"


def test_file_in_upper_layer_hides_directory_below(image: Image) -> None:
    image.layer(file("opt/app/bin/tool", AMD64))
    image.layer(file("opt/app", b"not a dir any more\n"))

    with pytest.raises(BinaryCheckError, match=r"/opt/app is a regular file, not a directory"):
        image.inspect(Entrypoint=["/opt/app/bin/tool"])


# --- links ----------------------------------------------------------------------------------


def test_symlink_in_upper_layer_to_file_in_lower_layer(image: Image) -> None:
    image.layer(file("opt/app/bin/app-1.2", ARM64))
    image.layer(symlink("usr/local/bin/app", "/opt/app/bin/app-1.2"))

    found = image.inspect(Entrypoint=["/usr/local/bin/app"])

    assert found.path == "/usr/local/bin/app"
    assert found.resolved_path == "/opt/app/bin/app-1.2"
    assert found.architecture == "arm64"


def test_relative_symlink_resolves_from_links_directory(image: Image) -> None:
    image.layer(
        file("usr/lib/app/app", ARM64),
        file("usr/bin/app/app", AMD64),  # decoy if '..' were resolved from the wrong place
        symlink("usr/bin/app-link", "../lib/app/app"),
    )

    found = image.inspect(Entrypoint=["/usr/bin/app-link"])

    assert (found.resolved_path, found.architecture) == ("/usr/lib/app/app", "arm64")


def test_symlinked_directory_in_the_middle_of_the_path(image: Image) -> None:
    # usrmerge: /bin -> usr/bin, and the entrypoint is spelled /bin/...
    image.layer(file("usr/bin/server", ARM64), symlink("bin", "usr/bin"))
    image.layer(symlink("usr/bin/srv", "/bin/server"))

    found = image.inspect(Entrypoint=["/bin/srv"])

    assert found.resolved_path == "/usr/bin/server"
    assert found.architecture == "arm64"


def test_absolute_symlink_stays_inside_the_image_root(image: Image) -> None:
    image.layer(
        file("usr/bin/python3.11", ARM64),
        symlink("usr/bin/python3", "../../../../usr/bin/python3.11"),
    )

    found = image.inspect(Entrypoint=["python3"])

    assert found.resolved_path == "/usr/bin/python3.11"


def test_hardlink_resolves_to_its_targets_content(image: Image) -> None:
    image.layer(
        file("usr/bin/busybox", ARM, mode=0o755),
        file("usr/bin/other", AMD64),
        hardlink("bin/sh", "usr/bin/busybox"),
    )

    found = image.inspect(Entrypoint=["/bin/sh"])

    assert found.resolved_path == "/bin/sh"
    assert (found.architecture, found.elf_class) == ("arm", 1)


def test_hardlink_to_file_in_lower_layer(image: Image) -> None:
    image.layer(file("usr/bin/busybox", ARM64))
    image.layer(hardlink("bin/sh", "./usr/bin/busybox"))

    assert image.inspect(Entrypoint=["/bin/sh"]).architecture == "arm64"


def test_symlink_loop_is_an_error(image: Image) -> None:
    image.layer(symlink("bin/a", "b"), symlink("bin/b", "/bin/a"))

    loop = r"/bin/a \(config.Entrypoint\[0\]\): more than 40 symlinks.*loop"
    with pytest.raises(BinaryCheckError, match=loop):
        image.inspect(Entrypoint=["/bin/a"])


def test_dangling_symlink_names_the_link_and_missing_target(image: Image) -> None:
    image.layer(symlink("usr/bin/app", "/opt/app/app"), directory("opt"))

    with pytest.raises(BinaryCheckError) as caught:
        image.inspect(Entrypoint=["/usr/bin/app"])

    message = str(caught.value)
    assert "/opt/app does not exist" in message
    assert "/usr/bin/app -> /opt/app/app" in message


# --- whiteouts ------------------------------------------------------------------------------


def test_whiteout_deleting_the_binary_is_a_clear_error(image: Image) -> None:
    image.layer(file("usr/bin/app", AMD64), file("usr/bin/keep", AMD64))
    image.layer(whiteout("usr/bin/app"))

    assert image.inspect(Entrypoint=["/usr/bin/keep"]).architecture == "amd64"
    with pytest.raises(BinaryCheckError, match=r"/usr/bin/app does not exist.*whiteout in layer 2"):
        image.inspect(Entrypoint=["/usr/bin/app"])


def test_whiteout_of_a_directory_deletes_its_subtree(image: Image) -> None:
    image.layer(file("opt/app/bin/app", AMD64))
    image.layer(whiteout("opt/app"))

    with pytest.raises(BinaryCheckError, match="/opt/app does not exist"):
        image.inspect(Entrypoint=["/opt/app/bin/app"])


def test_file_re_added_after_whiteout_is_found(image: Image) -> None:
    image.layer(file("usr/bin/app", AMD64))
    image.layer(whiteout("usr/bin/app"))
    image.layer(file("usr/bin/app", ARM64))

    assert image.inspect(Entrypoint=["/usr/bin/app"]).architecture == "arm64"


def test_opaque_dir_hides_lower_layers_but_keeps_its_own_layer(image: Image) -> None:
    image.layer(file("opt/app/old", AMD64), file("opt/keep", AMD64))
    # The marker comes after this layer's own entry: it must still only hide lower layers.
    image.layer(directory("opt/app"), file("opt/app/new", ARM64), opaque("opt/app"))

    assert image.inspect(Entrypoint=["/opt/app/new"]).architecture == "arm64"
    assert image.inspect(Entrypoint=["/opt/keep"]).architecture == "amd64"
    with pytest.raises(BinaryCheckError, match=r"/opt/app/old does not exist.*layer 2"):
        image.inspect(Entrypoint=["/opt/app/old"])


# --- scripts --------------------------------------------------------------------------------


def test_script_reports_interpreters_machine(image: Image) -> None:
    image.layer(file("usr/bin/dash", ARM64), symlink("bin/sh", "/usr/bin/dash"))
    image.layer(file("entrypoint.sh", b"#!/bin/sh -e\nexec app\n"))

    found = image.inspect(Entrypoint=["/entrypoint.sh"])

    assert found.path == "/entrypoint.sh"
    assert found.resolved_path == "/entrypoint.sh"
    assert found.via_interpreter == "/usr/bin/dash"
    assert found.architecture == "arm64"


def test_env_shebang_looks_the_command_up_on_path(image: Image) -> None:
    image.layer(
        file("usr/bin/env", AMD64),
        file("usr/local/bin/python3.12", ARM64),
        symlink("usr/local/bin/python3", "python3.12"),
        file("usr/bin/python3", AMD64),  # later on PATH: must not be chosen
        file("app/main.py", b"#! /usr/bin/env python3\nprint('hi')\n", mode=0o755),
    )

    found = image.inspect(Env=["PATH=/usr/local/bin:/usr/bin"], Cmd=["/app/main.py"])

    assert found.via_interpreter == "/usr/local/bin/python3.12"
    assert found.architecture == "arm64"


def test_env_shebang_skips_env_options(image: Image) -> None:
    image.layer(
        file("usr/bin/env", AMD64),
        file("usr/bin/node", ARM64),
        file("app.js", b"#!/usr/bin/env -S NODE_ENV=production node --harmony\n"),
    )

    found = image.inspect(Entrypoint=["/app.js"])

    assert found.via_interpreter == "/usr/bin/node"


def test_script_with_missing_interpreter_names_both(image: Image) -> None:
    image.layer(file("run.sh", b"#!/bin/bash\n"))

    with pytest.raises(BinaryCheckError, match=r"/bin/bash.*interpreter of /run.sh"):
        image.inspect(Entrypoint=["/run.sh"])


def test_crlf_shebang_is_explained(image: Image) -> None:
    image.layer(file("bin/sh", AMD64), file("run.sh", b"#!/bin/sh\r\necho\r\n"))

    with pytest.raises(BinaryCheckError, match="CRLF"):
        image.inspect(Entrypoint=["/run.sh"])


def test_interpreter_that_is_itself_a_script_is_an_error(image: Image) -> None:
    image.layer(file("bin/wrapper", b"#!/bin/real\n"), file("run", b"#!/bin/wrapper\n"))

    with pytest.raises(BinaryCheckError, match=r"/bin/wrapper, which is itself a '#!' script"):
        image.inspect(Entrypoint=["/run"])


# --- layer formats --------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", [TAR_GZ, DOCKER_GZ])
def test_gzip_layers(image: Image, media_type: str) -> None:
    image.layer(file("bin/app", AMD64), media_type=media_type)
    image.layer(file("bin/filler", b"x" * 100_000), file("bin/app", ARM64), media_type=media_type)

    assert image.layers[0][0].read_bytes()[:2] == b"\x1f\x8b"
    assert image.inspect(Entrypoint=["/bin/app"]).architecture == "arm64"


def test_zstd_layer_is_unsupported_with_the_media_type_named(image: Image) -> None:
    image.layer(file("bin/app", AMD64))
    zstd = image.tmp_path / "zstd-layer"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(32))
    image.layers.append((zstd, TAR_ZSTD))

    with pytest.raises(UnsupportedLayer, match=r"layer 2 of 2.*tar\+zstd") as caught:
        image.inspect(Entrypoint=["/bin/app"])
    assert isinstance(caught.value, BinaryCheckError)


def test_unknown_media_type_is_unsupported(image: Image) -> None:
    image.layer(file("bin/app", AMD64))
    image.layers[0] = (image.layers[0][0], "application/vnd.cncf.helm.chart.content.v1.tar+rar")

    with pytest.raises(UnsupportedLayer, match="helm"):
        image.inspect(Entrypoint=["/bin/app"])


def test_corrupt_layer_names_the_layer(image: Image) -> None:
    bad = image.tmp_path / "bad.tar.gz"
    bad.write_bytes(b"definitely not gzip")
    image.layers.append((bad, TAR_GZ))

    with pytest.raises(BinaryCheckError, match=r"layer 1 of 1 \(bad.tar.gz"):
        image.inspect(Entrypoint=["/bin/app"])


# --- content checks -------------------------------------------------------------------------


def test_non_elf_file_is_a_clear_error(image: Image) -> None:
    image.layer(file("app.exe", b"MZ\x90\x00" + bytes(60)))

    with pytest.raises(
        BinaryCheckError, match=r"/app.exe \(config.Cmd\[0\]\) is not an ELF binary.*MZ"
    ):
        image.inspect(Cmd=["/app.exe"])


def test_directory_entrypoint_is_an_error(image: Image) -> None:
    image.layer(directory("app"), file("app/x", AMD64))

    with pytest.raises(BinaryCheckError, match=r"/app, which is a directory"):
        image.inspect(Entrypoint=["/app"])


def test_real_host_binary_header_matches_host_machine(image: Image) -> None:
    expected = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
    arch = expected.get(platform.machine().lower())
    binary = Path(sys.executable).resolve()
    if arch is None or sys.platform != "linux":
        pytest.skip(f"no expectation for {platform.machine()} on {sys.platform}")
    image.layer(file("usr/bin/real", binary.read_bytes()[:64]))

    assert image.inspect(Entrypoint=["/usr/bin/real"]).architecture == arch


def test_qemu_static_is_x86_64_when_present(image: Image) -> None:
    qemu = Path("/usr/bin/qemu-aarch64-static")
    if not qemu.is_file() or platform.machine() != "x86_64":
        pytest.skip("needs qemu-user-static on an x86-64 host")
    with qemu.open("rb") as handle:
        image.layer(file("usr/bin/qemu", handle.read(64)))

    found = image.inspect(Entrypoint=["/usr/bin/qemu"])

    assert (found.elf_machine, found.architecture) == (EM_X86_64, "amd64")


@pytest.mark.parametrize(
    ("header", "arch", "elf_class", "little"),
    [
        (elf_header(EM_X86_64), "amd64", 2, True),
        (elf_header(EM_AARCH64), "arm64", 2, True),
        (elf_header(EM_ARM, bits=32), "arm", 1, True),
        (elf_header(EM_386, bits=32), "386", 1, True),
        (elf_header(EM_PPC64), "ppc64le", 2, True),
        (elf_header(EM_PPC64, little=False), "ppc64", 2, False),
        (elf_header(EM_S390, little=False), "s390x", 2, False),
        (elf_header(EM_RISCV), "riscv64", 2, True),
        (elf_header(EM_MIPS), "mips64le", 2, True),
        (elf_header(EM_MIPS, bits=32), "mipsle", 1, True),
        (elf_header(EM_MIPS, bits=32, little=False), "mips", 1, False),
        (elf_header(0x1234), "unknown(4660)", 2, True),
    ],
)
def test_architecture_mapping(
    image: Image, header: bytes, arch: str, elf_class: int, little: bool
) -> None:
    image.layer(file("bin/app", header))

    found = image.inspect(Entrypoint=["/bin/app"])

    assert found.architecture == arch
    assert (found.elf_class, found.little_endian) == (elf_class, little)
    assert found.elf_machine == int.from_bytes(header[18:20], "little" if little else "big")


def _finding(arch: str) -> BinaryFinding:
    return BinaryFinding("/bin/app", "/bin/app", 0, 2, True, arch, None)


@pytest.mark.parametrize(
    ("found", "claimed", "matches"),
    [
        ("arm64", "arm64", True),
        ("arm64", "arm", False),
        ("arm", "arm64", False),
        ("386", "amd64", False),
        ("amd64", "386", False),
        ("arm", "arm/v7", True),  # the variant is not visible in ELF
        ("arm", "arm/v6", True),
        ("arm64", "arm64/v8", True),
        ("ppc64le", "ppc64", False),
        ("unknown(4660)", "amd64", False),
    ],
)
def test_architecture_matches(found: str, claimed: str, matches: bool) -> None:
    assert architecture_matches(_finding(found), claimed) is matches


# --- hostile layers: every read bounded, every limit named ---------------------------------


def crafted_header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    """A ustar header whose size field says `size` in GNU base-256 (0x80 positive, 0xff
    negative: tarfile's nti()/itn()), with a correct checksum, so tarfile believes it."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size = kind, 0o755, 0
    header = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    field = size if size >= 0 else 256**11 + size
    header[124:136] = (b"\x80" if size >= 0 else b"\xff") + field.to_bytes(11, "big")
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def raw_layer(image: Image, data: bytes, *, gzipped: bool = False) -> Image:
    path = image.tmp_path / f"layer{len(image.layers)}.raw"
    path.write_bytes(gzip.compress(data) if gzipped else data)
    image.layers.append((path, TAR_GZ if gzipped else TAR))
    return image


def test_negative_member_size_is_refused(image: Image) -> None:
    """Size -1 once made the read-back `read(-1)`: the rest of a gzip bomb into memory."""
    data = crafted_header("bin/app", -1) + AMD64.ljust(512, b"\0") + bytes(1024)
    raw_layer(image, data, gzipped=True)
    with pytest.raises(LayerLimitError, match=r"'bin/app' declares a negative size \(-1\)"):
        image.inspect(Entrypoint=["/bin/app"])


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_2_to_40_byte_member_in_a_small_layer_is_refused(image: Image, gzipped: bool) -> None:
    """It used to be walked block by block for minutes (tarfile trusts the header)."""
    data = crafted_header("bin/app", 2**40) + AMD64.ljust(512, b"\0") + bytes(1024)
    raw_layer(image, data, gzipped=gzipped)
    why = "DEFLATE's maximum ratio" if gzipped else "its size"
    with pytest.raises(LayerLimitError) as info:
        image.inspect(Entrypoint=["/bin/app"])
    assert f"declares {2**40} bytes, more than the layer can hold" in str(info.value)
    assert why in str(info.value)


def test_deep_symlink_chain_stops_at_the_named_hop_limit(image: Image) -> None:
    links = [symlink(f"bin/l{i}", f"l{i + 1}") for i in range(60)]
    image.layer(*links, file("bin/l60", AMD64))
    with pytest.raises(LayerLimitError) as info:
        image.inspect(Entrypoint=["/bin/l0"])
    assert "more than 40 symlinks to follow (LayerLimits.max_symlink_hops" in str(info.value)
    # Within the limit the same chain resolves.
    short = Image(image.tmp_path / "short")
    short.tmp_path.mkdir()
    short.layer(*links[50:], file("bin/l60", AMD64))
    assert short.inspect(Entrypoint=["/bin/l50"]).architecture == "amd64"


def test_overlong_symlink_target_is_refused(image: Image) -> None:
    image.layer(symlink("bin/app", "a/" * 3000 + "app"))
    with pytest.raises(LayerLimitError, match=r"longer than 4096 \(Linux's PATH_MAX"):
        image.inspect(Entrypoint=["/bin/app"])


def test_gzip_bomb_stops_at_the_byte_limit(image: Image) -> None:
    """16 MiB of zeros in a ~16 KiB gzip layer, as 1 MiB members (each one plausible): reading
    stops at the (lowered) byte limit, so memory and time stay bounded; the error names it."""
    bomb = [file(f"filler{i}", bytes(1 << 20)) for i in range(16)]
    image.layer(*bomb, file("bin/app", AMD64), media_type=TAR_GZ)
    assert image.layers[0][0].stat().st_size < 1 << 20
    limits = LayerLimits(max_bytes=4 << 20)
    with pytest.raises(LayerLimitError) as info:
        inspect_entrypoint({"config": {"Entrypoint": ["/bin/app"]}}, image.layers, limits)
    assert "more than 4 MiB of decompressed tar read" in str(info.value)
    assert "LayerLimits.max_bytes" in str(info.value)


def test_member_count_is_capped(image: Image) -> None:
    image.layer(*[file(f"f{i}", b"") for i in range(50)], file("bin/app", AMD64))
    with pytest.raises(LayerLimitError, match="more than 20 tar members in all"):
        inspect_entrypoint(
            {"config": {"Entrypoint": ["/bin/app"]}}, image.layers, LayerLimits(max_entries=20)
        )


def test_oversized_pax_header_is_refused_before_tarfile_reads_it(image: Image) -> None:
    data = crafted_header("././@PaxHeader", 8 << 20, tarfile.XHDTYPE) + bytes(1024)
    raw_layer(image, data, gzipped=True)
    with pytest.raises(LayerLimitError, match=r"more than 1 MiB \(LayerLimits.max_header_bytes\)"):
        image.inspect(Entrypoint=["/bin/app"])


def test_default_limits_leave_normal_layers_alone(image: Image) -> None:
    image.layer(file("bin/app", AMD64), symlink("bin/sh", "app"), media_type=TAR_GZ)
    assert image.inspect(Entrypoint=["/bin/sh"]).architecture == "amd64"
