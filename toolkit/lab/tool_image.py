"""The archfleet tool image, built in the lab the way a pipeline builds it: per arch, then merged.

ci-templates/image/Containerfile is the recipe a pipeline uses; this module supplies what no
pipeline here can pull: a Python base per architecture, made from Debian packages with
debootstrap (minbase + python3 + python3-venv, from the machine's own apt mirror, as
toolkit/lab/rootfs.py does) and cached as a tarball. The arm64 root is built and later run
under qemu-user through binfmt_misc: these machines have no arm64 CPU.

The flow, on a private Docker engine (toolkit/lab/docker_engine.py) and a loopback registry:
1. make each base root an image for its platform (`FROM scratch` + `ADD root.tar /`; see
   import_base for why not `docker import`), push it, and merge the per-arch bases into one
   index with archfleet's engine — the stand-in for a Python image pinned by digest;
2. a build context: the Containerfile, requirements.txt, and wheels/ with the archfleet wheel
   and the dependency wheels the lock pins (downloaded once, hash-checked, cached);
3. per arch: `docker build --network none --platform linux/<arch> --build-arg BASE_IMAGE=
   <registry>/…@sha256:<base index>` (nothing can be fetched while it builds), push, note the
   digest;
4. merge the digests into `<registry>/archfleet:<version>` and verify it (`--check-binaries`:
   each child's `archfleet` script runs an interpreter of the claimed architecture) — both run by
   archfleet from the freshly built image for this machine's architecture, as the component's
   own pipeline runs them.

Pure parts (lock parsing, wheel names, build arguments) are separate from the commands. The
base reuses rootfs.py's debootstrap, packing and unmount helpers under names of its own; that
module's recipe and RECIPE_REVISION (which key every lab host root in the cache) are untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.lab import rootfs
from toolkit.lab.cache import cache_dir, file_lock
from toolkit.lab.docker_engine import DockerEngine
from toolkit.lab.images import debian_arch_for, ensure_binfmt, host_debian_arch
from toolkit.registry.client import RegistryClient
from toolkit.registry.engine import MergeOptions, merge_manifest
from toolkit.registry.manifest import ImageManifest, Platform, parse_manifest
from toolkit.registry.merge import SourceSpec
from toolkit.registry.reference import parse_reference
from toolkit.resources import data_path

Progress = Callable[[str], None]

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")
TOOL_REPOSITORY = "archfleet"
BASE_REPOSITORY = "archfleet-lab/python"
# Engine-local name of a base made from a cached root (never pushed; see import_base).
LOCAL_BASE_REPOSITORY = "archfleet-lab/base-source"
CONTAINERFILE = "Containerfile"
REQUIREMENTS = "requirements.txt"
WHEELS_DIR = "wheels"
# Build arguments the Containerfile reads (BASE_IMAGE has no default there).
BUILD_ARGS = ("BASE_IMAGE", "BASE_DIGEST", "ARCHFLEET_VERSION", "ARCHFLEET_SHA256")
IMAGE_PATH_DIR = "/opt/archfleet/bin"

# The lab's Python base: its own recipe and cache names, beside (never instead of) the lab
# host roots of rootfs.py, whose RECIPE_REVISION keys everybody's cached hosts.
# Bump when the recipe changes, so a tarball made by an older recipe is not reused.
PYTHON_BASE_REVISION = 1
PYTHON_BASE_PACKAGES = ("python3", "python3-venv")
PYTHON_BASE_MARKER = "etc/archfleet-python-base.json"
# What the base must have, relative and resolved through merged-/usr links.
PYTHON_BASE_REQUIRED = ("usr/bin/python3", "bin/sh", "usr/bin/cat", "etc/debian_version")
# Trimmed from the root: documentation and caches no job reads (copyright files stay).
_TRIM_DIRS = ("usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/debconf")
# The PATH of Docker's default and of the official images, for an imported root without one.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# A wheel file name (PEP 427 / the binary distribution format spec):
# {distribution}-{version}(-{build tag})?-{python tag}-{abi tag}-{platform tag}.whl
_WHEEL_NAME = re.compile(
    r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.!+]+)(?:-(?P<build>\d[^-]*))?"
    r"-(?P<python>[^-]+)-(?P<abi>[^-]+)-(?P<platform>[^-]+)\.whl$"
)
_REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)$")
_HASH = re.compile(r"^--hash=sha256:(?P<hex>[0-9a-f]{64})$")
_SHA256_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_PIP_TIMEOUT = 600.0


class ToolImageError(RuntimeError):
    """A step of the tool image's build did not work: names the step, file or command."""


# ----------------------------------------------------------------------------- pure parts


@dataclass(frozen=True)
class LockedRequirement:
    """One `name==version --hash=sha256:…` entry of a requirements lock."""

    name: str
    version: str
    hashes: tuple[str, ...]
    line: int

    @property
    def normalized_name(self) -> str:
        return normalize_name(self.name)


def normalize_name(name: str) -> str:
    """PEP 503's normalised project name: runs of `-`, `_`, `.` become one `-`, lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str, where: str) -> tuple[LockedRequirement, ...]:
    """The entries of a hash-pinned requirements file (pip's format, `\\` continuations).

    Every entry must be `name==version` with at least one `--hash=sha256:<64 hex>`; anything
    else (a range, a URL, an option line, an entry without a hash) is an error naming `where`,
    the line, and what was expected — pip's `--require-hashes` would refuse it too, later.
    """
    entries: list[LockedRequirement] = []
    seen: dict[str, int] = {}
    logical: list[tuple[int, str]] = []
    start = 0
    parts: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not parts:
            start = number
        continued = line.endswith("\\")
        parts.append(line[:-1] if continued else line)
        if not continued:
            joined = " ".join(p.strip() for p in parts).strip()
            if joined:
                logical.append((start, joined))
            parts = []
    if parts and " ".join(parts).strip():
        logical.append((start, " ".join(p.strip() for p in parts).strip()))
    for number, entry in logical:
        words = entry.split()
        match = _REQUIREMENT.match(words[0])
        if match is None:
            raise ToolImageError(
                f"{where}:{number}: expected `name==version --hash=sha256:<64 hex>`, got "
                f"{words[0]!r} (only exact pins can be hash-checked)"
            )
        hashes = []
        for word in words[1:]:
            found = _HASH.match(word)
            if found is None:
                raise ToolImageError(
                    f"{where}:{number}: {match['name']}: expected only --hash=sha256:<64 "
                    f"lower-case hex> after the pin, got {word!r}"
                )
            hashes.append(found["hex"])
        if not hashes:
            raise ToolImageError(
                f"{where}:{number}: {match['name']}=={match['version']} has no "
                "--hash=sha256:…; pip install --require-hashes refuses it"
            )
        name = normalize_name(match["name"])
        if name in seen:
            raise ToolImageError(
                f"{where}:{number}: {match['name']} is pinned twice (also line {seen[name]})"
            )
        seen[name] = number
        entries.append(LockedRequirement(match["name"], match["version"], tuple(hashes), number))
    if not entries:
        raise ToolImageError(f"{where}: no pinned requirement in it")
    return tuple(entries)


@dataclass(frozen=True)
class WheelName:
    name: str
    version: str
    python_tag: str
    abi_tag: str
    platform_tag: str

    @property
    def pure(self) -> bool:
        """A pure-Python wheel: the same file installs on every architecture."""
        return self.abi_tag == "none" and self.platform_tag == "any"


def parse_wheel_name(filename: str) -> WheelName:
    match = _WHEEL_NAME.match(filename)
    if match is None:
        raise ToolImageError(
            f"{filename!r} is not a wheel file name "
            "(expected {name}-{version}[-{build}]-{python}-{abi}-{platform}.whl)"
        )
    return WheelName(
        match["name"], match["version"], match["python"], match["abi"], match["platform"]
    )


def archfleet_wheel_version(wheel: Path) -> str:
    """The version of an archfleet wheel, from its file name; refuses another project's or a
    platform-specific wheel (the tool image installs one file on every architecture)."""
    parsed = parse_wheel_name(wheel.name)
    if normalize_name(parsed.name) != "archfleet":
        raise ToolImageError(f"{wheel} is a wheel of {parsed.name!r}, not of archfleet")
    if not parsed.pure:
        raise ToolImageError(f"{wheel} is not a pure-Python (none-any) wheel")
    return parsed.version


@dataclass(frozen=True)
class BuildSpec:
    """One arch's `docker build` of the tool image: everything the command line needs."""

    platform: str
    base_image: str
    version: str
    wheel_sha256: str
    tag: str

    def __post_init__(self) -> None:
        try:
            Platform.parse(self.platform)
        except ValueError as error:
            raise ToolImageError(f"platform {self.platform!r}: {error}") from None
        try:
            parse_reference(self.tag)
            reference = parse_reference(self.base_image)
        except ValueError as error:
            raise ToolImageError(f"tag or BASE_IMAGE: {error}") from None
        if reference.digest is None:
            raise ToolImageError(
                f"BASE_IMAGE {self.base_image!r} is not pinned by digest (…@sha256:<hex>)"
            )
        if not re.fullmatch(r"[0-9a-f]{64}", self.wheel_sha256):
            raise ToolImageError(
                f"archfleet wheel sha256 {self.wheel_sha256!r} is not 64 lower-case hex digits"
            )

    @property
    def base_digest(self) -> str:
        digest = parse_reference(self.base_image).digest
        assert digest is not None  # checked in __post_init__
        return digest

    def build_args(self) -> dict[str, str]:
        return {
            "BASE_IMAGE": self.base_image,
            "BASE_DIGEST": self.base_digest,
            "ARCHFLEET_VERSION": self.version,
            "ARCHFLEET_SHA256": self.wheel_sha256,
        }

    def docker_build_args(self, context: Path) -> list[str]:
        """`docker build` arguments: no network while it builds, one platform, the tag."""
        args = ["build", "--network", "none", "--platform", self.platform]
        for key, value in self.build_args().items():
            args += ["--build-arg", f"{key}={value}"]
        return [*args, "--file", str(context / CONTAINERFILE), "--tag", self.tag, str(context)]


def merge_args(target: str, digests: Mapping[str, str]) -> list[str]:
    """`archfleet merge-manifest` arguments: each platform's image by digest, in the target's
    repository (`PLATFORM=@sha256:…`, what a CI job that pushed by digest has in hand)."""
    args = ["merge-manifest", "--insecure", "--json", "--target", target]
    for platform, digest in digests.items():
        if not _SHA256_DIGEST.match(digest):
            raise ToolImageError(f"{platform}: {digest!r} is not a sha256 digest")
        args += ["--source", f"{platform}={'@'}{digest}"]
    return args


def containerfile_path() -> Path:
    """ci-templates/image/Containerfile as shipped (the wheel's copy, else the checkout's)."""
    return data_path("ci-templates") / "image" / CONTAINERFILE


def requirements_path() -> Path:
    return data_path("ci-templates") / "image" / REQUIREMENTS


def arch_of(platform: str) -> str:
    """`amd64` for linux/amd64: the suffix of per-arch tags and cache names."""
    return Platform.parse(platform).architecture


# ------------------------------------------------------------------------ the python base


def python_base_name(debian_arch: str, suite: str = rootfs.DEFAULT_SUITE) -> str:
    rootfs.check_suite(suite)
    return f"python-base-{debian_arch}-{suite}-r{PYTHON_BASE_REVISION}"


def python_base_rootfs(
    debian_arch: str,
    *,
    suite: str = rootfs.DEFAULT_SUITE,
    mirror: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """The cached tarball of a Debian minbase root with python3 and its venv module.

    Built on first use with debootstrap (foreign arches under QEMU), from `mirror` or the
    machine's own apt mirror (rootfs.debian_mirror); one builder per tarball (file_lock).
    """
    if debian_arch not in rootfs.SUPPORTED_ARCHES:
        raise ValueError(
            f"unsupported architecture {debian_arch!r} for the Python base; "
            f"use one of {rootfs.SUPPORTED_ARCHES}"
        )
    directory = cache_dir() / "tool-image"
    directory.mkdir(parents=True, exist_ok=True)
    name = python_base_name(debian_arch, suite)
    cached = rootfs._cached_tarball(directory, name)
    if cached is not None:
        return cached
    with file_lock(directory / f".{name}.lock"):
        cached = rootfs._cached_tarball(directory, name)
        if cached is not None:
            return cached
        rootfs._check_build_prerequisites(debian_arch)
        source = mirror or rootfs.debian_mirror(suite=suite)
        if progress:
            progress(f"debootstrap {suite} {debian_arch} + python3 from {source} (once; minutes)")
        return _build_python_base(directory, name, debian_arch, suite, source)


def _build_python_base(
    directory: Path, name: str, debian_arch: str, suite: str, mirror: str
) -> Path:
    log_path = directory / f"{name}.build.log"
    work = Path(tempfile.mkdtemp(prefix=f".build-{name}-", dir=directory))
    try:
        root = work / "root"
        started = time.monotonic()
        packages = sorted(PYTHON_BASE_PACKAGES)
        script = rootfs._debootstrap(root, debian_arch, suite, packages, mirror, log_path)
        python_version = _check_python_base(root, debian_arch, log_path)
        _trim_root(root)
        marker = {
            "arch": debian_arch,
            "suite": suite,
            "debian_version": (root / "etc" / "debian_version").read_text().strip(),
            "python": python_version,
            "debootstrap_script": script,
            "revision": PYTHON_BASE_REVISION,
            "packages": packages,
            "mirror": mirror,
            "debootstrap_seconds": round(time.monotonic() - started, 1),
        }
        (root / PYTHON_BASE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        suffix, compressor = rootfs._compressor()
        partial = work / f"{name}{suffix}"
        rootfs._pack(root, partial, compressor)
        tarball = directory / f"{name}{suffix}"
        partial.rename(tarball)  # whole, so no reader sees half a tarball
        return tarball
    finally:
        rootfs._remove_build_dir(work)


def _check_python_base(root: Path, debian_arch: str, log_path: Path) -> str:
    """The root's python3 runs (under QEMU for a foreign arch), is >= 3.11 and has venv and
    ensurepip; returns its version."""
    missing = [path for path in PYTHON_BASE_REQUIRED if not rootfs._exists_in_root(root, path)]
    if missing:
        raise ToolImageError(
            f"the {debian_arch} Python base {root} lacks {', '.join(missing)}; log {log_path}"
        )
    probe = (
        "import sys, venv, ensurepip; "
        "assert sys.version_info >= (3, 11), sys.version; "
        "print('%d.%d.%d' % sys.version_info[:3])"
    )
    done = subprocess.run(
        ["chroot", str(root), "/usr/bin/python3", "-I", "-c", probe],
        capture_output=True,
        text=True,
        env={"PATH": DEFAULT_PATH, "LC_ALL": "C"},
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise ToolImageError(
            f"python3 in the {debian_arch} Python base does not run or lacks venv/ensurepip "
            f"(>= 3.11 needed): {done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout.strip()


def _trim_root(root: Path) -> None:
    """Drop what no job reads: apt's lists and caches, docs (not copyrights), man, locales."""
    for cache in (root / "var" / "cache" / "apt").rglob("*"):
        if cache.is_file():
            cache.unlink()
    for listed in (root / "var" / "lib" / "apt" / "lists").iterdir():
        if listed.is_file():
            listed.unlink()
    for relative in _TRIM_DIRS:
        directory = root / relative
        if directory.is_dir() and not directory.is_symlink():
            for child in directory.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    for path in sorted((root / "usr" / "share" / "doc").rglob("*"), reverse=True):
        if path.is_symlink() or path.is_file():
            if path.name != "copyright":
                path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    for log in (root / "var" / "log").rglob("*"):
        if log.is_file():
            log.unlink()


# ----------------------------------------------------------------------- the lock's wheels


def lock_wheels(requirements: Path, *, progress: Progress | None = None) -> Path:
    """A cached directory with exactly the wheels `requirements` pins, each hash-checked by
    pip; filled once from the package indexes pip is configured with (keyed by the lock)."""
    text = requirements.read_text(encoding="utf-8")
    parse_lock(text, str(requirements))  # a bad lock fails here, naming the line
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    directory = cache_dir() / "tool-image" / f"wheels-{key}"
    ready = directory / ".ready"
    if ready.exists():
        return directory
    with file_lock(cache_dir() / "tool-image" / f".wheels-{key}.lock"):
        if ready.exists():
            return directory
        if progress:
            progress(f"downloading the wheels {requirements.name} pins (once)")
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--require-hashes",
            "--requirement",
            str(requirements),
            "--dest",
            str(directory),
        ]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=_PIP_TIMEOUT, check=False
        )
        if done.returncode != 0:
            raise ToolImageError(
                f"pip download of the wheels {requirements} pins failed "
                f"({done.returncode}):\n{_tail(done.stdout + done.stderr)}"
            )
        ready.write_text(key + "\n")
    return directory


def prepare_context(
    directory: Path,
    wheel: Path,
    *,
    containerfile: Path | None = None,
    requirements: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """A build context: the Containerfile, requirements.txt and wheels/ (archfleet's wheel and
    the locked dependency wheels), in `directory` (created; must be empty)."""
    containerfile = containerfile or containerfile_path()
    requirements = requirements or requirements_path()
    archfleet_wheel_version(wheel)
    if directory.exists() and any(directory.iterdir()):
        raise ToolImageError(f"build context {directory} is not empty")
    wheels = directory / WHEELS_DIR
    wheels.mkdir(parents=True)
    shutil.copy2(containerfile, directory / CONTAINERFILE)
    shutil.copy2(requirements, directory / REQUIREMENTS)
    for locked in sorted(lock_wheels(requirements, progress=progress).glob("*.whl")):
        shutil.copy2(locked, wheels / locked.name)
    shutil.copy2(wheel, wheels / wheel.name)
    return directory


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------ engine steps


# The base image's recipe: the root as its one layer; PATH and LANG as official images set them.
BASE_CONTAINERFILE = f"""FROM scratch
ADD root.tar /
ENV PATH={DEFAULT_PATH} LANG=C.UTF-8
CMD ["/bin/sh"]
"""


def import_base(engine: DockerEngine, tarball: Path, platform: str, tag: str) -> str:
    """Make a cached root the image `tag` for `platform`, push it; returns its manifest digest.

    Not `docker import --platform`: Docker 20.10 ignores that flag and writes the host's
    architecture into the config (moby/moby#42813, fixed by moby/moby#43103 in Docker 23), and
    archfleet's merge then rightly refuses an "arm64" image whose config says amd64. BuildKit
    `FROM scratch` + `ADD root.tar /` with `--platform` is the workaround that issue names. ADD
    unpacks plain, gzip, bzip2 or xz tar, not zstd: a .tar.zst is unpacked first."""
    # A cached engine keeps the image under a local name tied to this very tarball (name, size,
    # mtime): a later run tags it again instead of unpacking and hashing 130 MB.
    stat = tarball.stat()
    source_tag = f"{LOCAL_BASE_REPOSITORY}:{_root_stem(tarball)}-{stat.st_size}-{stat.st_mtime_ns}"
    if engine.docker("image", "inspect", source_tag, check=False).returncode == 0:
        engine.docker("tag", source_tag, tag)
        return push(engine, tag)
    with tempfile.TemporaryDirectory(dir=engine.directory) as tmp:
        context = Path(tmp)
        root_tar = context / "root.tar"
        if tarball.name.endswith(".zst"):
            with root_tar.open("wb") as out:
                done = subprocess.run(
                    ["zstd", "-dcq", str(tarball)], stdout=out, stderr=subprocess.PIPE, check=False
                )
            if done.returncode != 0:
                raise ToolImageError(f"cannot unpack {tarball}: {done.stderr.decode().strip()}")
        else:
            shutil.copyfile(tarball, root_tar)
        (context / CONTAINERFILE).write_text(BASE_CONTAINERFILE, encoding="utf-8")
        engine.docker(
            "build",
            "--network",
            "none",
            "--platform",
            platform,
            "--file",
            str(context / CONTAINERFILE),
            "--tag",
            source_tag,
            "--tag",
            tag,
            str(context),
        )
    return push(engine, tag)


def _root_stem(tarball: Path) -> str:
    name = tarball.name
    for suffix in (".tar.zst", ".tar.gz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def push(engine: DockerEngine, tag: str) -> str:
    """`docker push` a tag; returns the digest the registry now holds for it."""
    engine.docker("push", tag)
    reference = parse_reference(tag)
    name = f"{reference.registry}/{reference.repository}"
    done = engine.docker("image", "inspect", "--format", "{{json .RepoDigests}}", tag)
    for repo_digest in json.loads(done.stdout) or []:
        repo, _, digest = str(repo_digest).partition("@")
        if repo == name and _SHA256_DIGEST.match(digest):
            return digest
    raise ToolImageError(f"docker push {tag} left no digest for {name} ({done.stdout.strip()})")


def merge_base(registry: str, suite: str, digests: Mapping[str, str]) -> str:
    """Merge the per-arch bases into `<registry>/archfleet-lab/python:<suite>` with archfleet's
    engine, in process; returns the index digest (what BASE_IMAGE is pinned to)."""
    target = parse_reference(f"{registry}/{BASE_REPOSITORY}:{suite}")
    sources = [
        SourceSpec.parse(f"{platform}=@{digest}", target=target)
        for platform, digest in digests.items()
    ]
    client = RegistryClient(registry, insecure=True, use_env_credentials=False)
    result = merge_manifest(client, [target], sources, MergeOptions(child_tags=False))
    return result.plan.digest


@dataclass(frozen=True)
class ArchImage:
    platform: str
    digest: str
    # Compressed bytes a pull downloads: the layers, as listed in the manifest.
    layer_bytes: int
    config_bytes: int
    layers: int


@dataclass(frozen=True)
class ToolImage:
    """A built, merged and verified tool image in a lab registry."""

    registry: str
    version: str
    index_digest: str
    base_image: str
    children: tuple[ArchImage, ...]
    # How merge and verify ran: the image they ran in, or this process's Python.
    merged_by: str = ""
    seconds: Mapping[str, float] = field(default_factory=dict)

    @property
    def tag_ref(self) -> str:
        return f"{self.registry}/{TOOL_REPOSITORY}:{self.version}"

    def child(self, platform: str) -> ArchImage:
        wanted = Platform.parse(platform)
        for child in self.children:
            if Platform.parse(child.platform) == wanted:
                return child
        raise KeyError(platform)

    def child_ref(self, platform: str) -> str:
        return f"{self.registry}/{TOOL_REPOSITORY}@{self.child(platform).digest}"


def build_tool_image(
    engine: DockerEngine,
    registry: str,
    wheel: Path,
    work: Path,
    *,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    suite: str = rootfs.DEFAULT_SUITE,
    mirror: str | None = None,
    progress: Progress | None = None,
) -> ToolImage:
    """Build, push, merge and verify `<registry>/archfleet:<wheel's version>` (see the module
    docstring); `work` holds the build context. Raises ToolImageError naming the failed step."""
    say = progress or (lambda _message: None)
    version = archfleet_wheel_version(wheel)
    wheel_sha256 = sha256_file(wheel)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    arches = {platform: debian_arch_for(platform) for platform in platforms}
    for arch in arches.values():
        ensure_binfmt(arch)
    tarballs = {
        platform: python_base_rootfs(arch, suite=suite, mirror=mirror, progress=say)
        for platform, arch in arches.items()
    }
    seconds["python base roots"] = time.monotonic() - started

    mark = time.monotonic()
    base_digests = {}
    for platform, tarball in tarballs.items():
        tag = f"{registry}/{BASE_REPOSITORY}:{suite}-{arch_of(platform)}"
        say(f"base image {tag} from {tarball.name} (--platform {platform}), push")
        base_digests[platform] = import_base(engine, tarball, platform, tag)
    base_index = merge_base(registry, suite, base_digests)
    base_image = f"{registry}/{BASE_REPOSITORY}@{base_index}"
    seconds["import + push bases"] = time.monotonic() - mark

    context = prepare_context(work / "context", wheel, progress=say)
    digests: dict[str, str] = {}
    for platform in platforms:
        mark = time.monotonic()
        spec = BuildSpec(
            platform=platform,
            base_image=base_image,
            version=version,
            wheel_sha256=wheel_sha256,
            tag=f"{registry}/{TOOL_REPOSITORY}:{version}-{arch_of(platform)}",
        )
        say(f"docker build --platform {platform} (BASE_IMAGE={base_image})")
        engine.docker(*spec.docker_build_args(context))
        digests[platform] = push(engine, spec.tag)
        seconds[f"build + push {platform}"] = time.monotonic() - mark

    mark = time.monotonic()
    target = f"{registry}/{TOOL_REPOSITORY}:{version}"
    runner = _native_runner(engine, registry, digests)
    say(f"merge {target} with archfleet ({runner.describe()})")
    merged = runner.run_json(merge_args(target, digests))
    index_digest = str(merged.get("digest", ""))
    if not _SHA256_DIGEST.match(index_digest):
        raise ToolImageError(f"merge-manifest {target} gave no index digest: {merged}")
    say(f"verify-manifest --check-binaries {target}")
    verified = runner.run_json(
        [
            "verify-manifest",
            "--insecure",
            "--json",
            "--check-binaries",
            "--target",
            target,
            "--platforms",
            ",".join(platforms),
        ],
        allow_failure=True,
    )
    if not verified.get("ok") or verified.get("digest") != index_digest:
        problems = verified.get("problems") or verified
        raise ToolImageError(f"verify-manifest {target} failed: {problems}")
    seconds["merge + verify"] = time.monotonic() - mark
    children = tuple(
        _arch_image(registry, platform, digest) for platform, digest in digests.items()
    )
    seconds["total"] = time.monotonic() - started
    return ToolImage(
        registry, version, index_digest, base_image, children, runner.describe(), seconds
    )


@dataclass(frozen=True)
class _Runner:
    """Runs an archfleet command: in the tool image built for this machine's arch (the way the
    component's own pipeline merges it), else with this process's Python."""

    engine: DockerEngine
    image: str | None

    def describe(self) -> str:
        return f"in {self.image}" if self.image else f"{sys.executable} -m toolkit.registry"

    def run_json(self, args: list[str], *, allow_failure: bool = False) -> dict[str, object]:
        if self.image:
            done = self.engine.docker(
                "run", "--rm", "--network", "host", self.image, "archfleet", *args, check=False
            )
            out, err, code = done.stdout, done.stderr, done.returncode
        else:
            ran = subprocess.run(
                [sys.executable, "-m", "toolkit.registry", *args],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            out, err, code = ran.stdout, ran.stderr, ran.returncode
        if code != 0 and not allow_failure:
            raise ToolImageError(f"archfleet {' '.join(args)} exited {code}:\n{_tail(out + err)}")
        try:
            parsed = json.loads(out)
        except json.JSONDecodeError:
            raise ToolImageError(
                f"archfleet {' '.join(args)} (exit {code}) printed no JSON:\n{_tail(out + err)}"
            ) from None
        if not isinstance(parsed, dict):
            raise ToolImageError(f"archfleet {' '.join(args)} printed {parsed!r}")
        return parsed


def _native_runner(engine: DockerEngine, registry: str, digests: Mapping[str, str]) -> _Runner:
    host = host_debian_arch()
    for platform, digest in digests.items():
        if debian_arch_for(platform) == host:
            return _Runner(engine, f"{registry}/{TOOL_REPOSITORY}@{digest}")
    return _Runner(engine, None)


def _arch_image(registry: str, platform: str, digest: str) -> ArchImage:
    client = RegistryClient(registry, insecure=True, use_env_credentials=False)
    fetched = client.get_manifest(TOOL_REPOSITORY, digest)
    manifest = parse_manifest(fetched.raw, fetched.media_type, where=digest)
    if not isinstance(manifest, ImageManifest):
        raise ToolImageError(f"{platform} image {digest} is not an image manifest")
    return ArchImage(
        platform=platform,
        digest=digest,
        layer_bytes=sum(layer.size for layer in manifest.layers),
        config_bytes=manifest.config.size,
        layers=len(manifest.layers),
    )


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
