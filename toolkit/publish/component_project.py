"""What publish-templates commits to the templates project, as bytes per path. Pure.

Besides the component (templates/), its include variant (include/) and README.md, the project
gets what its own tag pipeline needs to build the archfleet tool image (ci-templates/project/
gitlab-ci.yml, published as `.gitlab-ci.yml`): image/Containerfile, image/requirements.txt and
the archfleet wheel itself, a binary file, under image/. The pipeline file is rendered from its
`@NAME@` placeholders (the version, the wheel's file name and sha256), because a component
input cannot come from a variable at the point GitLab checks it (`archfleet_install` has a
`regex:` that allows no `$`).

The component's `archfleet_image` default names the tool image by its version tag only: the
digest of an image that this version's own tag pipeline builds cannot be in this version's
files. The release that pipeline creates records the digest (see the project pipeline).
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

import yaml

from .. import __version__
from ..ci_templates import INSTALL_REGEX, published_files

# In ci-templates/ (the source) -> in the templates project.
PROJECT_PIPELINE_SOURCE = "project/gitlab-ci.yml"
PROJECT_PIPELINE = ".gitlab-ci.yml"
IMAGE_DIR = "image"
IMAGE_FILES = (f"{IMAGE_DIR}/Containerfile", f"{IMAGE_DIR}/requirements.txt")
# The license the catalog shows with the component (archfleet's, Apache-2.0).
LICENSE_PATH = "LICENSE"

_PLACEHOLDER = re.compile(r"@[A-Z][A-Z0-9_]*@")
# A wheel file name (the binary distribution format spec): name-version(-build)?-py-abi-platform.
_WHEEL_NAME = re.compile(
    r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.!+]+)(-[0-9][^-]*)?"
    r"-(?P<python>[^-]+)-(?P<abi>[^-]+)-(?P<platform>[^-]+)\.whl$"
)
_BUILD_HINT = (
    "build one from the archfleet source with `python -m pip wheel --no-deps -w dist .`, or use "
    "the released archfleet-{version}-py3-none-any.whl"
)


class ProjectFilesError(ValueError):
    """The wheel or the project pipeline's source is not what publishing needs."""


@dataclass(frozen=True)
class ToolWheel:
    """The archfleet wheel the templates project's pipeline builds its tool image from."""

    filename: str
    version: str
    sha256: str
    data: bytes

    @property
    def path(self) -> str:
        """Where it goes in the templates project."""
        return f"{IMAGE_DIR}/{self.filename}"


def read_wheel(path: Path, *, version: str = __version__) -> ToolWheel:
    """The archfleet wheel at `path`, checked: a pure-Python archfleet wheel of `version`, by
    its file name and by the metadata inside (a renamed file is refused)."""
    hint = _BUILD_HINT.format(version=version)
    match = _WHEEL_NAME.match(path.name)
    if match is None or match["name"].lower() != "archfleet":
        raise ProjectFilesError(
            f"--wheel {path}: expected an archfleet wheel file, "
            f"archfleet-{version}-py3-none-any.whl; {hint}"
        )
    if (match["abi"], match["platform"]) != ("none", "any"):
        raise ProjectFilesError(
            f"--wheel {path}: expected a pure-Python wheel (…-none-any.whl), the one file the "
            f"tool image installs on every architecture; {hint}"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProjectFilesError(f"--wheel {path}: cannot read it: {exc.strerror}; {hint}") from None
    metadata = _wheel_metadata(path, data)
    found = (metadata.get("Name", ""), metadata.get("Version", ""))
    if found[0].lower() != "archfleet" or found[1] != match["version"]:
        raise ProjectFilesError(
            f"--wheel {path}: its metadata says {found[0]} {found[1]}, its file name archfleet "
            f"{match['version']}; {hint}"
        )
    if found[1] != version:
        raise ProjectFilesError(
            f"--wheel {path} is archfleet {found[1]}, but these templates are archfleet "
            f"{version} (their preflight requires a {version} tool); {hint}"
        )
    return ToolWheel(path.name, found[1], hashlib.sha256(data).hexdigest(), data)


def _wheel_metadata(path: Path, data: bytes) -> dict[str, str]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            if len(names) != 1:
                raise ProjectFilesError(
                    f"--wheel {path}: expected one *.dist-info/METADATA in it, found {len(names)}"
                )
            text = archive.read(names[0]).decode("utf-8")
    except (zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ProjectFilesError(f"--wheel {path}: not a wheel (zip) file: {exc}") from None
    headers = HeaderParser().parsestr(text)
    return {key: str(value) for key, value in headers.items()}


def render_project_pipeline(source: str, wheel: ToolWheel, *, where: str) -> str:
    """The project pipeline with its placeholders filled; every placeholder must be known and
    the result must be YAML whose `archfleet_install` input GitLab's regex accepts."""
    values = {
        "@ARCHFLEET_VERSION@": wheel.version,
        "@ARCHFLEET_WHEEL@": wheel.filename,
        "@ARCHFLEET_SHA256@": wheel.sha256,
    }
    unknown = sorted(set(_PLACEHOLDER.findall(source)) - set(values))
    if unknown:
        raise ProjectFilesError(f"{where}: unknown placeholder(s) {', '.join(unknown)}")
    text = _PLACEHOLDER.sub(lambda m: values[m.group(0)], source)
    try:
        data = yaml.safe_load(text)
        install = data["include"][0]["inputs"]["archfleet_install"]
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as exc:
        raise ProjectFilesError(
            f"{where}: expected YAML with include[0].inputs.archfleet_install: {exc}"
        ) from None
    if not isinstance(install, str) or not re.search(INSTALL_REGEX, install):
        raise ProjectFilesError(
            f"{where}: include[0].inputs.archfleet_install {install!r} does not match the "
            "input's regex (one archfleet wheel and its --hash=sha256:)"
        )
    return text


def project_files(root: Path, wheel: ToolWheel, tool_image: str) -> dict[str, bytes]:
    """Every file publish-templates commits (path in the project -> bytes): the rendered
    templates with `tool_image` as archfleet_image's default, the project pipeline, and image/
    with the wheel."""
    files = {
        path: text.encode("utf-8")
        for path, text in published_files(root, tool_image=tool_image).items()
    }
    source = root / PROJECT_PIPELINE_SOURCE
    files[PROJECT_PIPELINE] = render_project_pipeline(
        _read_text(source), wheel, where=str(source)
    ).encode("utf-8")
    for relative in (*IMAGE_FILES, LICENSE_PATH):
        files[relative] = _read_text(root / relative).encode("utf-8")
    files[wheel.path] = wheel.data
    return files


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProjectFilesError(f"{path}: cannot read it: {exc.strerror}") from None
