"""The tool image's pure parts: the dependency lock, wheel names, build and merge arguments, and
what ci-templates/image/Containerfile must say (read as Docker's parser reads it: continuation
lines joined, comment lines dropped — docs.docker.com/reference/dockerfile, "Format")."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from toolkit import __version__
from toolkit.lab import rootfs
from toolkit.lab.tool_image import (
    BUILD_ARGS,
    IMAGE_PATH_DIR,
    PYTHON_BASE_REVISION,
    BuildSpec,
    ToolImageError,
    archfleet_wheel_version,
    containerfile_path,
    merge_args,
    parse_lock,
    parse_wheel_name,
    python_base_name,
    requirements_path,
)

REPO = Path(__file__).resolve().parents[2]
IMAGE_DIR = REPO / "ci-templates" / "image"
SHA = "a" * 64
BASE = f"127.0.0.1:5000/archfleet-lab/python@sha256:{'b' * 64}"


# ---------------------------------------------------------------- the lock (requirements.txt)


def test_the_shipped_paths_are_the_checkouts() -> None:
    # An editable checkout reads ci-templates/ itself (toolkit/resources.py).
    assert containerfile_path() == IMAGE_DIR / "Containerfile"
    assert requirements_path() == IMAGE_DIR / "requirements.txt"


def test_lock_satisfies_pyproject_dependencies() -> None:
    """Every runtime dependency of pyproject.toml is pinned to a version its specifier accepts,
    and nothing else is pinned: invoke and urllib3 have no dependencies of their own, so the lock
    is the whole closure (the image's `pip install --require-hashes` fails on anything missing)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    locked = {
        canonicalize_name(entry.name): entry
        for entry in parse_lock(requirements_path().read_text(), "requirements.txt")
    }
    assert set(locked) == {canonicalize_name(r.name) for r in requirements}
    for requirement in requirements:
        entry = locked[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(entry.version), (requirement, entry.version)


def test_every_lock_entry_has_a_hash() -> None:
    """Read independently of parse_lock: each logical line that names a package carries at
    least one --hash=sha256:<64 hex>, and parse_lock finds the same entries."""
    text = requirements_path().read_text()
    logical = re.sub(r"\\\n", " ", text)
    entries = [
        line.strip()
        for line in logical.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert entries
    for entry in entries:
        assert re.search(r"--hash=sha256:[0-9a-f]{64}\b", entry), entry
        assert "==" in entry.split()[0], entry
    parsed = parse_lock(text, "requirements.txt")
    assert [e.split()[0] for e in entries] == [f"{p.name}=={p.version}" for p in parsed]
    assert all(len(p.hashes) >= 1 for p in parsed)


def test_parse_lock_reads_continuations_and_comments() -> None:
    text = (
        "# a comment\n"
        "Invoke==2.2.1 \\\n"
        f"    --hash=sha256:{'1' * 64} \\\n"
        f"    --hash=sha256:{'2' * 64}\n"
        "\n"
        f"urllib3==2.7.0 --hash=sha256:{'3' * 64}  # inline comment\n"
    )
    parsed = parse_lock(text, "lock.txt")
    assert [(p.name, p.version, p.line) for p in parsed] == [
        ("Invoke", "2.2.1", 2),
        ("urllib3", "2.7.0", 6),
    ]
    assert parsed[0].hashes == ("1" * 64, "2" * 64)
    assert parsed[0].normalized_name == "invoke"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("invoke==2.2.1\n", r"lock\.txt:1: invoke==2\.2\.1 has no --hash"),
        (f"invoke>=2.2 --hash=sha256:{SHA}\n", r"lock\.txt:1: expected `name==version"),
        (f"invoke==2.2.1 --hash=md5:{'1' * 32}\n", r"lock\.txt:1: invoke: expected only --hash"),
        (f"invoke==2.2.1 --hash=sha256:{'A' * 64}\n", r"lower-case hex"),
        ("--index-url https://example.invalid/simple\n", r"lock\.txt:1: expected `name=="),
        (
            f"# x\ninvoke==2.2.1 --hash=sha256:{SHA}\nInvoke==2.2.2 --hash=sha256:{SHA}\n",
            r"lock\.txt:3: Invoke is pinned twice \(also line 2\)",
        ),
        ("# only comments\n\n", r"lock\.txt: no pinned requirement"),
    ],
)
def test_parse_lock_refuses(text: str, message: str) -> None:
    with pytest.raises(ToolImageError, match=message):
        parse_lock(text, "lock.txt")


# ----------------------------------------------------------------------------- wheel names


def test_wheel_names() -> None:
    assert archfleet_wheel_version(Path("dist/archfleet-0.1.0-py3-none-any.whl")) == "0.1.0"
    assert archfleet_wheel_version(Path("archfleet-1.2.3rc1-1-py3-none-any.whl")) == "1.2.3rc1"
    parsed = parse_wheel_name("cffi-2.1.1-cp311-cp311-manylinux2014_x86_64.whl")
    assert (parsed.name, parsed.version, parsed.pure) == ("cffi", "2.1.1", False)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("invoke-2.2.1-py3-none-any.whl", "wheel of 'invoke', not of archfleet"),
        ("archfleet-0.1.0-cp311-cp311-linux_x86_64.whl", "not a pure-Python"),
        ("archfleet-0.1.0.tar.gz", "not a wheel file name"),
        ("archfleet-0.1.0-py3-none.whl", "not a wheel file name"),
    ],
)
def test_wheel_names_refused(name: str, message: str) -> None:
    with pytest.raises(ToolImageError, match=message):
        archfleet_wheel_version(Path(name))


# --------------------------------------------------------------- build and merge arguments


def spec(**changes: str) -> BuildSpec:
    values = {
        "platform": "linux/arm64",
        "base_image": BASE,
        "version": "0.1.0",
        "wheel_sha256": SHA,
        "tag": "127.0.0.1:5000/archfleet:0.1.0-arm64",
    }
    return BuildSpec(**{**values, **changes})


def test_build_arguments() -> None:
    args = spec().docker_build_args(Path("/ctx"))
    assert args[:5] == ["build", "--network", "none", "--platform", "linux/arm64"]
    pairs = [args[i + 1] for i, word in enumerate(args) if word == "--build-arg"]
    assert pairs == [
        f"BASE_IMAGE={BASE}",
        f"BASE_DIGEST=sha256:{'b' * 64}",
        "ARCHFLEET_VERSION=0.1.0",
        f"ARCHFLEET_SHA256={SHA}",
    ]
    assert args[-5:] == [
        "--file",
        "/ctx/Containerfile",
        "--tag",
        "127.0.0.1:5000/archfleet:0.1.0-arm64",
        "/ctx",
    ]
    assert set(spec().build_args()) == set(BUILD_ARGS)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"base_image": "127.0.0.1:5000/python:3.11"}, "not pinned by digest"),
        ({"wheel_sha256": "abc"}, "not 64 lower-case hex"),
        ({"platform": "linux"}, "platform 'linux': "),
        ({"tag": "Not A Ref"}, "tag or BASE_IMAGE: invalid image reference 'Not A Ref'"),
    ],
)
def test_build_spec_refuses(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ToolImageError, match=message):
        spec(**changes)


def test_merge_arguments() -> None:
    digests = {"linux/amd64": f"sha256:{'1' * 64}", "linux/arm64": f"sha256:{'2' * 64}"}
    args = merge_args("127.0.0.1:5000/archfleet:0.1.0", digests)
    assert args[:5] == ["merge-manifest", "--insecure", "--json", "--target", args[4]]
    assert args[5:] == [
        "--source",
        f"linux/amd64=@sha256:{'1' * 64}",
        "--source",
        f"linux/arm64=@sha256:{'2' * 64}",
    ]
    with pytest.raises(ToolImageError, match="linux/arm64: 'latest' is not a sha256 digest"):
        merge_args("r/a:1", {"linux/arm64": "latest"})


def test_python_base_cache_name_is_its_own() -> None:
    """A separate cached variant: never a name rootfs.py's lab host roots use."""
    name = python_base_name("arm64", "bookworm")
    assert name == f"python-base-arm64-bookworm-r{PYTHON_BASE_REVISION}"
    assert name != rootfs.rootfs_name("arm64", ("python3", "python3-venv"), suite="bookworm")
    with pytest.raises(ValueError, match="unsupported Debian suite"):
        python_base_name("arm64", "buster")


# ------------------------------------------------------------------------ the Containerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    rest: str
    stage: int  # -1 before the first FROM


def instructions(text: str) -> list[Instruction]:
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found, stage = [], -1
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        found.append(Instruction(keyword.upper(), rest.strip(), stage))
    return found


@pytest.fixture(scope="module")
def containerfile() -> list[Instruction]:
    return instructions(containerfile_path().read_text())


def test_base_image_is_a_required_argument(containerfile: list[Instruction]) -> None:
    first = containerfile[0]
    assert (first.keyword, first.rest, first.stage) == ("ARG", "BASE_IMAGE", -1)  # no default
    froms = [i.rest for i in containerfile if i.keyword == "FROM"]
    assert froms == ["${BASE_IMAGE} AS install", "${BASE_IMAGE}"]


def test_every_build_argument_is_declared_and_documented(containerfile: list[Instruction]) -> None:
    declared = {i.rest.split("=")[0] for i in containerfile if i.keyword == "ARG"}
    assert declared == set(BUILD_ARGS)
    header = "".join(
        line for line in containerfile_path().read_text().splitlines() if line.startswith("#")
    )
    for name in BUILD_ARGS:
        assert re.search(rf"#\s+{name}\s", containerfile_path().read_text()), name
        assert name in header


def test_install_is_offline_and_hash_checked(containerfile: list[Instruction]) -> None:
    runs = [i.rest for i in containerfile if i.keyword == "RUN"]
    assert len(runs) == 1
    (install,) = runs
    pip = install[install.index("/opt/archfleet/bin/pip install") :].split(";")[0]
    for flag in ("--no-index", "--require-hashes", "--only-binary :all:", "--no-cache-dir"):
        assert flag in pip, flag
    assert "-r requirements.txt -r archfleet.txt" in pip
    assert "archfleet==%s --hash=sha256:%s" in install
    assert "python3 -m venv /opt/archfleet" in install
    # The build checks its own result against the version it was given.
    assert '"archfleet $ARCHFLEET_VERSION"' in install


def test_final_stage_holds_only_the_virtualenv(containerfile: list[Instruction]) -> None:
    final = [i for i in containerfile if i.stage == 1]
    copies = [i.rest for i in final if i.keyword == "COPY"]
    assert copies == ["--from=install /opt/archfleet /opt/archfleet"]
    assert not [i for i in final if i.keyword in ("RUN", "ADD")]


def test_runtime_config(containerfile: list[Instruction]) -> None:
    final = [i for i in containerfile if i.stage == 1]
    keywords = [i.keyword for i in final]
    assert "ENTRYPOINT" not in keywords  # GitLab's Docker executor runs its shell as the command
    (env,) = [i.rest for i in final if i.keyword == "ENV"]
    assert env.startswith(f"PATH={IMAGE_PATH_DIR}:")
    (user,) = [i.rest for i in final if i.keyword == "USER"]
    assert user == "root"
    (label,) = [i.rest for i in final if i.keyword == "LABEL"]
    labels = dict(re.findall(r'(\S+)="([^"]*)"', label))
    assert labels["org.opencontainers.image.version"] == "${ARCHFLEET_VERSION}"
    assert labels["org.opencontainers.image.base.name"] == "${BASE_IMAGE}"
    assert labels["org.opencontainers.image.base.digest"] == "${BASE_DIGEST}"
    text = containerfile_path().read_text()
    # The USER line carries its reason.
    assert re.search(
        r"# root, said explicitly: GitLab's Docker executor.*\n(#.*\n)*USER root", text
    )


def test_version_is_the_package_version() -> None:
    """The image's version label comes from the wheel's name, which setuptools takes from
    toolkit.__version__ (pyproject.toml's dynamic version): one source."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "toolkit.__version__"}
    name = f"archfleet-{__version__}-py3-none-any.whl"
    assert archfleet_wheel_version(Path(name)) == __version__
