"""Find the images of a repository (one per Dockerfile/Containerfile) and plan a GitLab child
pipeline that builds each of them with the multiarch component.

Pure apart from reading the directory tree in `find_images`: naming, ordering, the child
pipeline's YAML are functions of their arguments, so the task (toolkit/tasks/discover.py) only
parses flags, prints and writes the file. Lean: standard library and archfleet's registry
grammar only, since it runs in the archfleet tool image, which has no PyYAML.

Names. An image's name is the slug of its directory, relative to the root (`jobs/job-a` ->
`jobs-job-a`), used as ONE path component of a repository (`<repository>/<name>`). The grammar
is distribution/reference's (regexp.go in github.com/distribution/reference, the same as
reference/regexp.go in distribution/distribution):

    pathComponent = alphanumeric + anyTimes(separator + alphanumeric)
    alphanumeric  = `[a-z0-9]+`
    separator     = `(?:[._]|__|[-]+)`

The slug lower-cases, folds accents (NFKD), and turns every run of other characters (`/`,
`_`, `.`, spaces) into one `-`, so it matches `[a-z0-9]+(-[a-z0-9]+)*`: a path component, and
also safe in GitLab job names, dotenv file names and resource groups, where the component puts
its `job_prefix`. Two paths with one slug (`jobs/job_a`, `jobs/job-a`) are an error naming
both, never a silent overwrite of one image's tags by the other's.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from . import __version__, archmap
from .registry.manifest import Platform
from .registry.reference import ReferenceError, parse_reference

# buildah's search order in a context directory (containers/buildah pkg/util/util.go,
# DiscoverContainerfile: "Containerfile", then "Dockerfile"); podman build follows it. A
# directory with both is ONE image, built from the Containerfile.
DEFAULT_FILENAMES = ("Containerfile", "Dockerfile")
# Directories that hold other people's Dockerfiles (dependencies, tool caches, VCS metadata,
# dev-container definitions) or copies of this tree (gitlab-ci-local keeps one per run in
# .gitlab-ci-local/builds/), not images of this repository.
DEFAULT_EXCLUDES = (
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "vendor",
    ".venv",
    "venv",
    "__pycache__",
    ".tox",
    ".devcontainer",
    ".gitlab-ci-local",
)
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")  # the component's own default
DEFAULT_REPOSITORY = "$CI_REGISTRY_IMAGE"
COMPONENT_NAME = "multiarch"
# The form ci-templates/README.md documents, at this archfleet's version (the component's merge
# and verify jobs then run the same archfleet as the one that wrote the child pipeline).
DEFAULT_INCLUDE = f"$CI_SERVER_FQDN/platform/archfleet-ci/{COMPONENT_NAME}@{__version__}"
# Inputs this module sets per image; a pass-through --input may not override them.
GENERATED_INPUTS = ("job_prefix", "image", "context", "dockerfile", "platforms")
# GitLab limits a `needs:` entry to 128 characters (lib/gitlab/ci/config/entry/need.rb); the
# component's longest needed job is `<job_prefix>-build-riscv64` (14 more).
MAX_JOB_PREFIX = 100
# GitLab's default `ci_max_includes` (an instance setting since GitLab 16.0, MR !118392); the
# pipeline's own file counts as one.
GITLAB_MAX_INCLUDES = 150
# Validates `--input` names; GitLab's own are `[a-z_]` in the component.
_INPUT_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_PLAIN_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_SLUG_RUN_RE = re.compile(r"[^a-z0-9]+")
# distribution/reference regexp.go pathComponent, anchored (see the module docstring).
PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$")
_FILE_TOKEN_RE = re.compile(
    r"^(?:(?P<before>.*?)[._-]?)?(?:dockerfile|containerfile)(?:[._-]?(?P<after>.*))?$",
    re.IGNORECASE,
)


class DiscoverError(ValueError):
    """Bad input or a tree that cannot be named: the message says which path and why."""


@dataclass(frozen=True)
class Image:
    name: str
    context: str  # POSIX path, the root as given joined with the directory ("." for the root)
    dockerfile: str  # POSIX path, the same base

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "context": self.context, "dockerfile": self.dockerfile}


# --- names ---------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """Lower case ASCII letters and digits, each run of anything else one `-`, none at the
    ends: `Jobs/Job_A` -> `jobs-job-a`, `café` -> `cafe`. May be empty (the caller says why)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _SLUG_RUN_RE.sub("-", folded.lower()).strip("-")


def _file_part(filename: str) -> str:
    """What a Dockerfile's own name adds to the image name: nothing for `Dockerfile` or
    `Containerfile`, `prod` for `Dockerfile.prod`, `api` for `api.Dockerfile`, the whole
    name for anything else (`build.docker`)."""
    match = _FILE_TOKEN_RE.match(filename)
    if not match:
        return slug(filename)
    return slug("-".join(part for part in (match["before"], match["after"]) if part))


def image_name(directory: PurePosixPath, filename: str, root_name: str) -> str:
    """The image's name: the directory's slug (relative to the root; `root_name` for the root
    itself), then what the file name adds. Raises DiscoverError when nothing usable is left."""
    extra = _file_part(filename)
    if directory == PurePosixPath("."):
        base = "" if extra else slug(root_name)
    else:
        base = slug("/".join(directory.parts))
    name = "-".join(part for part in (base, extra) if part)
    where = directory / filename
    if not name and not base and directory == PurePosixPath("."):
        raise DiscoverError(
            f"{where}: the root directory's name {root_name!r} gives no image name; "
            "set one with --root-name"
        )
    if not name:
        raise DiscoverError(
            f"{where}: no image name can be made from this path (it has no letters or digits); "
            "rename the directory, or leave it out with --exclude"
        )
    assert PATH_COMPONENT_RE.match(name), name  # slug() only ever gives [a-z0-9]+(-[a-z0-9]+)*
    return name


def job_prefix(name: str) -> str:
    """The component's `job_prefix` for an image: its name, which is already a valid job name
    part; a very long one is cut and given a hash of the whole name so it stays unique."""
    if len(name) <= MAX_JOB_PREFIX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_JOB_PREFIX - 9].rstrip('-')}-{digest}"


# --- globs ---------------------------------------------------------------------------------------


@functools.cache
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob with `**` (any number of directories), `*`, `?` and `[...]` (never across
    `/`), anchored at the root; as .gitignore and GitLab's `rules:changes` read them."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(?:/.*)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


@dataclass(frozen=True)
class Glob:
    """One `--pattern` or `--exclude`. Without a `/` it matches a name at any depth (`.git`,
    `Dockerfile.*`); with one, the path from the root (`jobs/*/Dockerfile`, `legacy/**`)."""

    text: str

    def __post_init__(self) -> None:
        if not self.text.strip("/").strip() or "\0" in self.text:
            raise DiscoverError(f"empty glob {self.text!r}")

    @property
    def anchored(self) -> bool:
        return "/" in self.text.rstrip("/")  # a leading `/` or `./` anchors too

    def matches(self, relative: PurePosixPath) -> bool:
        text = self.text.removeprefix("./").strip("/")
        if self.anchored:
            return bool(_glob_regex(text).match(relative.as_posix()))
        return fnmatch.fnmatchcase(relative.name, text)


def globs(texts: Iterable[str]) -> tuple[Glob, ...]:
    return tuple(Glob(text) for text in texts)


# --- discovery -----------------------------------------------------------------------------------


def _join(base: PurePosixPath, relative: PurePosixPath) -> str:
    return (base / relative).as_posix()


def find_images(
    root: Path,
    *,
    patterns: Sequence[Glob] = (),
    excludes: Sequence[Glob] = globs(DEFAULT_EXCLUDES),
    root_name: str = "",
) -> list[Image]:
    """Every image under `root`, ordered by name. Without `patterns`, a directory holding a
    Containerfile or Dockerfile is an image (the Containerfile when it has both); with them,
    each file whose path matches one is. Paths in the result start with `root` as given
    (`.` gives `jobs/job-a`). Symlinked directories are not followed (no loops, no images
    from outside the tree). Raises DiscoverError for a missing root, an unreadable directory,
    a path without a usable name, and names that two paths share."""
    if not root.is_dir():
        raise DiscoverError(f"--root {root}: not a directory")
    base = PurePosixPath(root.as_posix())
    name_of_root = root_name or root.resolve().name
    found: list[tuple[str, PurePosixPath]] = []  # (name, dockerfile relative to root)

    def unreadable(error: OSError) -> None:
        raise DiscoverError(f"{error.filename}: cannot read this directory ({error.strerror})")

    for current, dirnames, filenames in os.walk(root, onerror=unreadable):
        here = PurePosixPath(Path(current).relative_to(root).as_posix())
        # Pruned in place, so os.walk never enters an excluded directory; sorted for a
        # deterministic walk (the result is sorted by name anyway).
        dirnames[:] = sorted(d for d in dirnames if not _excluded(here / d, excludes))
        files = sorted(
            f
            for f in filenames
            if (Path(current) / f).is_file() and not _excluded(here / f, excludes)
        )
        if patterns:
            chosen = [f for f in files if any(p.matches(here / f) for p in patterns)]
        else:
            chosen = [f for f in DEFAULT_FILENAMES if f in files][:1]
        for filename in chosen:
            found.append((image_name(here, filename, name_of_root), here / filename))

    _refuse_collisions(found, base)
    return sorted(
        (
            Image(name, _join(base, dockerfile.parent), _join(base, dockerfile))
            for name, dockerfile in found
        ),
        key=lambda image: image.name,
    )


def _excluded(relative: PurePosixPath, excludes: Sequence[Glob]) -> bool:
    return any(glob.matches(relative) for glob in excludes)


def _refuse_collisions(found: Sequence[tuple[str, PurePosixPath]], base: PurePosixPath) -> None:
    by_name: dict[str, list[PurePosixPath]] = {}
    for name, path in found:
        by_name.setdefault(name, []).append(path)
    clashes = [
        f"{name!r} is the name of {' and '.join(_join(base, p) for p in sorted(paths))}"
        for name, paths in sorted(by_name.items())
        if len(paths) > 1
    ]
    if clashes:
        raise DiscoverError(
            "two images would get one name (and push to one repository): "
            + "; ".join(clashes)
            + ". Rename one of the directories, or leave one out with --exclude"
        )


# --- the child pipeline --------------------------------------------------------------------------


@dataclass(frozen=True)
class Include:
    """How the child pipeline includes the component: `component` (a CI/CD component
    reference, `<fqdn>/<project path>/multiarch@<version>`) or `local` (a copy of
    templates/multiarch.yml in the project)."""

    kind: str  # "component" | "local"
    location: str

    def as_yaml(self) -> dict[str, str]:
        return {self.kind: self.location}


def parse_include(text: str) -> Include:
    """`component:REF`, `local:PATH`, or either bare (a reference has an `@version`; a local
    file ends in .yml/.yaml)."""
    kind, colon, rest = text.partition(":")
    if colon and kind in ("component", "local", "project"):
        value = rest.strip()
    else:
        kind, value = "", text.strip()
    if kind == "project":
        raise DiscoverError(
            f"--include {text!r}: the include variant (`project:` + include/multiarch.yml) has "
            "fixed job names, so it cannot be included once per image; include the component "
            "(component:<fqdn>/<project>/multiarch@<version>, or local:templates/multiarch.yml)"
        )
    if not kind:
        if "@" in value:
            kind = "component"
        elif value.endswith((".yml", ".yaml")):
            kind = "local"
    if kind == "component":
        path, at, version = value.rpartition("@")
        if not at or not version or path.count("/") < 2:
            raise DiscoverError(
                f"--include {text!r}: a component reference is "
                "<fqdn>/<project path>/<component>@<version>, e.g. "
                f"{DEFAULT_INCLUDE}"
            )
        return Include("component", value)
    if kind == "local":
        if not value.endswith((".yml", ".yaml")):
            raise DiscoverError(f"--include {text!r}: a local include is a .yml/.yaml file")
        return Include("local", value)
    raise DiscoverError(
        f"--include {text!r}: expected component:<fqdn>/<project>/multiarch@<version> or "
        "local:<path>.yml"
    )


def parse_platforms(text: str) -> tuple[str, ...]:
    """Comma-separated platforms, canonical (containerd's normalisation), each one the
    component builds (archmap), no duplicates. `arm64` alone means linux/arm64."""
    known = {str(Platform.parse(p)) for p in archmap.UNAME_TO_PLATFORM.values()}
    result: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            platform = str(Platform.parse(item if "/" in item else f"linux/{item}"))
        except ValueError as exc:
            raise DiscoverError(f"--platforms: {exc}") from None
        if platform not in known:
            raise DiscoverError(
                f"--platforms: {item!r} is not a platform the component builds "
                f"(known: {', '.join(sorted(known))})"
            )
        if platform in result:
            raise DiscoverError(f"--platforms: {platform} is listed twice")
        result.append(platform)
    if not result:
        raise DiscoverError("--platforms: no platform given (e.g. linux/amd64,linux/arm64)")
    return tuple(result)


def parse_inputs(pairs: Iterable[str]) -> dict[str, Any]:
    """`--input NAME=VALUE`s. A VALUE that is JSON (`true`, `3`, `["A=1"]`, `"quoted"`) is that
    value, so boolean and array inputs get their types; anything else is a string."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        name, eq, raw = pair.partition("=")
        name = name.strip()
        if not eq or not _INPUT_NAME_RE.match(name):
            raise DiscoverError(f"--input {pair!r}: expected NAME=VALUE, e.g. builder=buildah")
        if name in GENERATED_INPUTS:
            raise DiscoverError(
                f"--input {pair!r}: `{name}` is set per image by discover-images "
                "(use --repository for the image, --platforms for the platforms)"
            )
        if name in inputs:
            raise DiscoverError(f"--input {pair!r}: `{name}` is given twice")
        try:
            inputs[name] = json.loads(raw)
        except ValueError:
            inputs[name] = raw
    return inputs


def image_repository(repository: str, name: str) -> str:
    """`<repository>/<name>`; checked against the reference grammar when it holds no CI
    variable (GitLab expands those in the job, after this runs)."""
    repository = repository.strip().rstrip("/")
    if not repository:
        raise DiscoverError("--repository is empty")
    image = f"{repository}/{name}"
    if "$" not in repository:
        try:
            parsed = parse_reference(image)
        except ReferenceError as exc:
            raise DiscoverError(f"--repository {repository!r}: {exc}") from None
        if parsed.digest or image.rpartition("/")[2] != name:
            raise DiscoverError(f"--repository {repository!r}: a repository, without tag or digest")
    return image


def child_pipeline(
    images: Sequence[Image],
    *,
    include: Include,
    repository: str = DEFAULT_REPOSITORY,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    inputs: Mapping[str, Any] | None = None,
) -> str:
    """The child pipeline's YAML: the component included once per image."""
    if not images:
        raise DiscoverError("no images: a child pipeline without jobs would fail to start")
    extra = dict(inputs or {})
    stages = list(dict.fromkeys(str(extra.get(k, d)) for k, d in _STAGE_INPUTS))
    includes = [
        {
            **include.as_yaml(),
            "inputs": {
                "job_prefix": job_prefix(image.name),
                "image": image_repository(repository, image.name),
                "context": image.context,
                "dockerfile": image.dockerfile,
                "platforms": list(platforms),
                **extra,
            },
        }
        for image in images
    ]
    header = (
        f"# Generated by archfleet {__version__} discover-images: the {COMPONENT_NAME} component\n"
        f"# once per image ({len(images)}). Do not edit; run it with\n"
        "# `trigger: include: - artifact: <this file>, job: discover`.\n"
    )
    return header + to_yaml({"stages": stages, "include": includes})


def include_limit_note(count: int) -> str | None:
    """A warning when the child pipeline needs more includes than GitLab allows by default."""
    if count + 1 <= GITLAB_MAX_INCLUDES:
        return None
    return (
        f"the child pipeline includes the component {count} times; GitLab refuses more than "
        f"{GITLAB_MAX_INCLUDES} includes per pipeline (its file counts too) unless an "
        "administrator raises `ci_max_includes`; split the images with --root or --pattern "
        "into several child pipelines"
    )


# The component's stage inputs and their defaults: the child pipeline declares those stages.
_STAGE_INPUTS = (("build_stage", "build"), ("merge_stage", "deploy"))


# --- YAML without PyYAML (the tool image has none) -----------------------------------------------


def _scalar(value: Any) -> str:
    """A JSON text is a YAML flow node (YAML 1.2 was made a superset of JSON; the escapes
    json.dumps writes are YAML 1.1's too). Characters YAML treats as line breaks inside a
    quoted scalar (NEL, LS, PS) and the BOM are escaped, which json.dumps leaves as they are."""
    text = json.dumps(value, ensure_ascii=False)
    for char in ("\x85", "\u2028", "\u2029", "\ufeff"):
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping) and value:
        out: list[str] = []
        for key, item in value.items():
            if isinstance(item, (Mapping, list)) and item and not _flat(item):
                out.append(f"{pad}{_key(key)}:")
                out.extend(_lines(item, indent + 2))
            else:
                out.append(f"{pad}{_key(key)}: {_scalar(item)}")
        return out
    if isinstance(value, list) and value:
        out = []
        for item in value:
            nested = _lines(item, indent + 2)
            out.append(f"{pad}- {nested[0].lstrip()}")
            out.extend(nested[1:])
        return out
    return [f"{pad}{_scalar(value)}"]


def _flat(value: Any) -> bool:
    """A list of scalars goes on one line (`[linux/amd64, linux/arm64]`-style)."""
    return isinstance(value, list) and not any(isinstance(v, (Mapping, list)) for v in value)


# Plain keys that YAML 1.1 (GitLab's Psych) would read as booleans or null.
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _key(key: Any) -> str:
    text = str(key)
    plain = _PLAIN_KEY_RE.match(text) and text.lower() not in _YAML_WORDS
    return text if plain else _scalar(text)


def to_yaml(data: Mapping[str, Any]) -> str:
    """Block-style YAML for the child pipeline (mappings of str keys, lists, JSON scalars)."""
    return "\n".join(_lines(data, 0)) + "\n"
