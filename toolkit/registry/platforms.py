"""containerd's platform rules, in one place: normalisation and the platform matcher.

Every client that picks an image out of an index (containerd, so Docker, nerdctl, BuildKit and
Kubernetes' CRI) first normalises both platforms with containerd/platforms, then compares them.
Whatever archfleet compares (a merge's `--source PLATFORM=` against the image's config, duplicate
children in an index, `verify --platforms`, the native guards' arch table) must agree with it,
or we refuse correct input and write indexes that clients read differently from us.

Ported from github.com/containerd/platforms at commit 09756f59cb1d6b3fb368f371043d36e634789537:
- `database.go`  normalizeOS, normalizeArch (the alias and variant rules), isKnownOS/isKnownArch
- `platforms.go` Normalize (what NewMatcher/OnlyStrict compare), Parse (the specifier syntax)
- `compare.go`   platformVector / Only (what a host of one platform can also run)

Pure string functions: `manifest.Platform` is built on them.
"""

from __future__ import annotations

from typing import NamedTuple

# database.go isKnownOS: "generated from https://golang.org/src/go/build/syslist.go".
KNOWN_OS = frozenset(
    [
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "hurd",
        "illumos",
        "ios",
        "js",
        "linux",
        "nacl",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "windows",
        "zos",
    ]
)
# database.go isKnownArch.
KNOWN_ARCH = frozenset(
    [
        "386",
        "amd64",
        "amd64p32",
        "arm",
        "armbe",
        "arm64",
        "arm64be",
        "ppc64",
        "ppc64le",
        "loong64",
        "mips",
        "mipsle",
        "mips64",
        "mips64le",
        "mips64p32",
        "mips64p32le",
        "ppc",
        "riscv",
        "riscv64",
        "s390",
        "s390x",
        "sparc",
        "sparc64",
        "wasm",
    ]
)

# compare.go arm64variantToVersion: arm64 variant -> (majors, highest minor per major). An
# arm64/v9.x CPU also runs v8.(x+5) and lower; v8.x runs v8.(x-1) and lower.
_ARM64_VERSIONS: dict[str, tuple[tuple[int, int], ...]] = {
    **{("v8" if m == 0 else f"v8.{m}"): ((8, m),) for m in range(10)},
    "v8.0": ((8, 0),),
    "v9": ((9, 0), (8, 5)),
    **{f"v9.{m}": ((9, m), (8, min(m + 5, 9))) for m in range(8)},
}


class Spec(NamedTuple):
    """os/architecture/variant as plain strings (OSVersion and OSFeatures are not modelled)."""

    os: str
    architecture: str
    variant: str = ""


def normalize_os(os: str) -> str:
    """database.go normalizeOS: lower case, `macos` -> `darwin`.

    containerd fills an empty OS with the running program's runtime.GOOS; a registry tool has no
    "own" platform to assume, so empty stays empty (and is refused where an OS is required).
    """
    os = os.lower()
    return "darwin" if os == "macos" else os


def normalize_arch(architecture: str, variant: str) -> tuple[str, str]:
    """database.go normalizeArch, rule for rule (both lower-cased first)."""
    arch, variant = architecture.lower(), variant.lower()
    if arch == "i386":  # database.go: case "i386": arch = "386"; variant = ""
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):  # case "x86_64", "x86-64", "amd64"
        return "amd64", "" if variant == "v1" else variant  # amd64 v1 is plain amd64
    if arch in ("aarch64", "arm64"):  # case "aarch64", "arm64"
        if variant in ("8", "v8", "v8.0"):  # v8 is arm64's baseline: no variant
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":  # case "armhf": arch = "arm"; variant = "v7"
        return "arm", "v7"
    if arch == "armel":  # case "armel": arch = "arm"; variant = "v6"
        return "arm", "v6"
    if arch == "arm":  # case "arm": "" and "7" -> v7; "5", "6", "8" -> "v" + variant
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


def normalize(os: str, architecture: str, variant: str = "") -> Spec:
    """platforms.go Normalize: the canonical value every matcher compares."""
    return Spec(normalize_os(os), *normalize_arch(architecture, variant))


def parse(text: str) -> Spec:
    """`OS/ARCH[/VARIANT]`, normalised as containerd's Parse then Normalize leave it.

    Stricter than platforms.go Parse on purpose: it fills a missing OS or architecture from the
    running program (runtime.GOOS/GOARCH), which would make `--source arm64=` mean something
    different on every machine; here both are required. Components must match Parse's
    specifierRe `^[A-Za-z0-9_.-]+$` (OS options such as `windows(10.0.17763)` are not supported).
    """
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(
            f"invalid platform {text!r}: expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm64"
        )
    for part in parts:
        if not all(c.isascii() and (c.isalnum() or c in "_.-") for c in part):
            raise ValueError(
                f"invalid platform {text!r}: {part!r} may hold only letters, digits, '_', '.', '-'"
            )
    return normalize(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def fmt(spec: Spec) -> str:
    """platforms.go Format: path.Join(os, architecture, variant)."""
    return "/".join(p for p in spec if p)


def is_known(spec: Spec) -> bool:
    """database.go isKnownOS and isKnownArch, on a normalised platform."""
    return spec.os in KNOWN_OS and spec.architecture in KNOWN_ARCH


def compatible(host: Spec) -> tuple[Spec, ...]:
    """compare.go platformVector(Normalize(host)): what `Only(host)` matches, best first.

    amd64/vN also runs amd64/v(N-1)..v1, then 386; arm/vN runs arm/v(N-1)..v5; arm64 (v8) runs
    arm64 v8.x below its own, then arm/v8..v5 (32-bit). Results are normalised, as the
    matcher normalises both sides (platforms.go matcher.Match).
    """
    host = normalize(*host)
    os, arch, variant = host
    vector: list[Spec] = [host]
    if arch == "amd64":
        level = _version(variant)
        if level is not None and level > 1:
            vector += [normalize(os, arch, f"v{n}") for n in range(level - 1, 0, -1)]
        vector.append(Spec(os, "386"))
    elif arch == "arm":
        level = _version(variant)
        if level is not None and level > 5:
            vector += [Spec(os, "arm", f"v{n}") for n in range(level - 1, 4, -1)]
    elif arch == "arm64":
        wanted = variant or "v8"
        versions = _ARM64_VERSIONS.get(wanted)
        if versions is None:  # compare.go: an unknown arm64 variant matches nothing
            return ()
        vector = [
            normalize(os, "arm64", f"v{major}" if minor == 0 else f"v{major}.{minor}")
            for major, top in versions
            for minor in range(top, -1, -1)
        ]
        # "All arm64/v8.x and arm64/v9.x are compatible with arm/v8 (32-bits) and below."
        vector += compatible(Spec(os, "arm", "v8"))
    return tuple(dict.fromkeys(vector))


def matches(host: Spec, image: Spec) -> bool:
    """compare.go Only(host).Match(image): a `host` client can run (and may pick) `image`."""
    return normalize(*image) in compatible(host)


def spellings(canonical: Spec, *, bare_linux: bool = True) -> tuple[str, ...]:
    """Every `OS/ARCH[/VARIANT]` text (lower case) that normalises to `canonical` through
    database.go's alias and variant rules: `linux/arm/v7` <- `linux/arm`, `linux/armhf`,
    `linux/arm/7`; `linux/arm64` <- `linux/aarch64`, `linux/arm64/v8`, `linux/arm64/8`, ...

    For lookup tables in shell and Groovy, which cannot run normalize_arch. With `bare_linux`,
    linux platforms are also listed without `linux/` (`arm64`, `arm/v7`).
    """
    canonical = normalize(*canonical)
    names: list[str] = []
    for arch in _ARCH_SPELLINGS:
        for variant in ("", *_VARIANT_SPELLINGS):
            if variant and normalize_arch(arch, "x-ignored") == normalize_arch(arch, ""):
                continue  # i386, armhf, armel set the variant themselves
            if normalize(canonical.os, arch, variant) == canonical:
                names.append("/".join(p for p in (canonical.os, arch, variant) if p))
    if canonical.architecture not in _ARCH_SPELLINGS:  # an arch with no aliases: itself
        names.append(fmt(canonical))
    if bare_linux and canonical.os == "linux":
        names += [n.removeprefix("linux/") for n in names]
    return tuple(dict.fromkeys(names))


# The inputs database.go normalizeArch rewrites, and the variants it rewrites or keeps.
_ARCH_SPELLINGS: tuple[str, ...] = ("386", "i386", "amd64", "x86_64", "x86-64", "arm64", "aarch64")
_ARCH_SPELLINGS += ("arm", "armhf", "armel")
_VARIANT_SPELLINGS: tuple[str, ...] = ("v1", "v2", "v3", "v4", "5", "6", "7", "8", "v5", "v6")
_VARIANT_SPELLINGS += ("v7", "v8", "v8.0", "9", "9.0", "v9", "v9.0")


def _version(variant: str) -> int | None:
    """compare.go: strconv.Atoi(strings.TrimPrefix(variant, "v"))."""
    digits = variant.removeprefix("v")
    return int(digits) if digits.isdigit() else None
