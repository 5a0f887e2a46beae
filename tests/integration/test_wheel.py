"""archfleet as a user gets it: the wheel built from this repository, installed into a fresh
virtualenv (tests/support/wheel.py), run from outside the checkout.

First the lean install (`pip install archfleet`): merge and verify work, against Debian's real
`docker-registry` on loopback, and nothing of the fleet is installed; a fleet task says which
extra to install. Then, in the same virtualenv, `archfleet[fleet]`: `publish-templates` reads the
templates packaged in the wheel, against the local FAKE of the GitLab REST API
(tests/support/gitlab_fake.py; there is no GitLab server on these machines).

`publish-jenkins-library` reads no packaged file (it registers the library by its git URL and
`libraryPath`; Jenkins checks the repository out itself), so for the Jenkins library the check
is that every file of jenkins/ is in the wheel.

The tests share one virtualenv and run in file order: the lean checks before the extra goes in.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import re
import subprocess
import tarfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import Run
from tests.support.gitlab_fake import GitLabFake
from tests.support.registry_http import OCI_MANIFEST, put_manifest, upload_blob
from tests.support.wheel import REPO_ROOT, Venv, build_wheel, clean_env, wheel_files
from toolkit import __version__
from toolkit.ci_templates import default_root, render_tool_image_default
from toolkit.lab.registry import LocalRegistry, start_registry
from toolkit.publish.component_project import project_files, read_wheel
from toolkit.resources import DATA_DIRS
from toolkit.tasks import namespace
from toolkit.tasks.extras import FLEET_MODULES

pytestmark = pytest.mark.integration

TOKEN = "glpat-fake-token-wheel-77"
PROJECT = "platform/archfleet-ci"
# What the lean install may hold: archfleet and the base dependencies of pyproject.toml.
LEAN = {"archfleet", "invoke", "urllib3"}
NEVER_LEAN = {"fabric", "paramiko", "python-gitlab", "jenkinsapi", "requests", "rich", "bcrypt"}


@dataclass
class Installed:
    venv: Venv
    wheel: Path
    cwd: Path  # outside the checkout, so nothing can be read from it
    extra: bool = False

    def run(self, program: str, *args: str, env: dict[str, str] | None = None) -> Run:
        done = subprocess.run(
            [str(self.venv.bin / program), *args],
            cwd=self.cwd,
            env={**clean_env(), "COLUMNS": "200", **(env or {})},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    def python(self, *args: str) -> Run:
        return self.run("python", "-I", *args)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
    venv = Venv.create(work / "venv")
    venv.install(wheel)
    cwd = work / "elsewhere"
    cwd.mkdir()
    return Installed(venv, wheel, cwd)


@pytest.fixture
def lean(installed: Installed) -> Installed:
    if installed.extra:
        pytest.fail("the fleet extra is already installed: run this module in file order")
    return installed


@pytest.fixture
def fleet(installed: Installed) -> Installed:
    if not installed.extra:
        installed.venv.install(installed.wheel, "fleet")
        installed.extra = True
    return installed


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    running = start_registry(tmp_path / "registry")
    try:
        yield running
    finally:
        running.stop()


def push_image(base_url: str, repository: str, arch: str) -> str:
    """A one-layer OCI image whose config says linux/`arch`; returns its manifest digest."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as archive:
        data = f"built for {arch}\n".encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    layer = gzip.compress(tar_bytes.getvalue(), mtime=0)
    diff_id = "sha256:" + hashlib.sha256(tar_bytes.getvalue()).hexdigest()
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": upload_blob(base_url, repository, config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": upload_blob(base_url, repository, layer),
                "size": len(layer),
            }
        ],
    }
    return put_manifest(base_url, repository, f"build-{arch}", manifest)


def imported_modules(importtime_stderr: str) -> set[str]:
    """Top-level names of the modules a `python -X importtime` run imported."""
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+([\w.]+)$", importtime_stderr, re.M)
    return {name.split(".")[0] for name in names}


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def every_task() -> set[str]:
    return set(namespace.task_names)


# --- the wheel itself --------------------------------------------------------------------------


def test_the_wheel_ships_templates_jenkins_library_and_examples(installed: Installed) -> None:
    files = wheel_files(installed.wheel)
    for name in DATA_DIRS:
        tracked = subprocess.run(
            ["git", "ls-files", "-z", "--", name],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\0")
        expected = {f"toolkit/_data/{path}" for path in tracked if path}
        assert expected, f"git tracks nothing under {name}/"
        assert expected <= files, f"missing from the wheel: {sorted(expected - files)}"
    for must in ("ci-templates/README.md", "ci-templates/templates/multiarch.yml"):
        assert f"toolkit/_data/{must}" in files
    for must in ("vars/multiArchBuild.groovy", "src/archfleet/Config.groovy"):
        assert f"toolkit/_data/jenkins/{must}" in files
    assert "toolkit/_data/jenkins/resources/archfleet/arches.json" in files
    # Everything lives inside the package (nothing lands loose in site-packages).
    assert {f.split("/")[0] for f in files} == {"toolkit", f"archfleet-{__version__}.dist-info"}


def test_the_packaging_lists_agree() -> None:
    """setup.py copies what toolkit.resources reads; extras.py knows the fleet extra's names."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text(encoding="utf-8"))
    shipped = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "SHIPPED" for t in node.targets)
    )
    assert tuple(shipped) == DATA_DIRS
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extra = pyproject["project"]["optional-dependencies"]["fleet"]
    assert {requirement_name(r) for r in extra} == set(FLEET_MODULES.values())
    base = pyproject["project"]["dependencies"]
    assert {requirement_name(r) for r in base} | {"archfleet"} == LEAN


# --- the lean install ------------------------------------------------------------------------


def test_lean_install_holds_only_the_registry_engine(lean: Installed) -> None:
    installed = set(lean.venv.distributions())
    assert installed == LEAN, f"the lean install changed: {sorted(installed)}"
    assert not installed & NEVER_LEAN
    where = lean.python("-c", "import toolkit; print(toolkit.__file__)")
    assert where.code == 0, where.stderr
    assert where.stdout.startswith(str(lean.venv.root)), where.stdout


def test_lean_install_merges_and_verifies(lean: Installed, registry: LocalRegistry) -> None:
    for program, args in (
        ("archfleet", ("merge-manifest", "--help")),
        ("archfleet", ("verify-manifest", "--help")),
        ("python", ("-m", "toolkit.registry", "--help")),
        ("python", ("-m", "toolkit.registry", "merge-manifest", "--help")),
    ):
        shown = lean.run(program, *args)
        assert shown.code == 0, shown.stderr
        assert "--target" in shown.stdout or "merge-manifest" in shown.stdout
    amd64 = push_image(registry.url, "app", "amd64")
    arm64 = push_image(registry.url, "app", "arm64")
    target = f"{registry.address}/app:1.0.0"
    merged = lean.run(
        "archfleet",
        "merge-manifest",
        "--insecure",
        "--target",
        target,
        "--source",
        f"linux/amd64=@{amd64}",
        "--source",
        f"linux/arm64=@{arm64}",
    )
    assert merged.code == 0, merged.stderr
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", merged.stdout)
    verified = lean.python(
        "-m",
        "toolkit.registry",
        "verify-manifest",
        "--insecure",
        "--json",
        "--target",
        target,
        "--platforms",
        "linux/amd64,linux/arm64",
    )
    assert verified.code == 0, verified.stderr
    assert verified.json()["ok"] is True


def test_lean_cli_lists_every_task_and_names_the_missing_extra(lean: Installed) -> None:
    listed = lean.run("archfleet", "--list")
    assert listed.code == 0, listed.stderr
    shown = set(re.findall(r"^  ([a-z][\w.-]*)", listed.stdout, re.M))
    assert shown == every_task()
    hint = f"pip install 'archfleet[fleet]=={__version__}'"
    for args in (
        ("publish-templates", "--project", PROJECT, "--version", "1.0.0", "--dry-run"),
        ("lab.status",),
        ("inventory-schema",),
    ):
        refused = lean.run("archfleet", *args, env={"GITLAB_TOKEN": TOKEN})
        assert refused.code == 1, (args, refused.stdout, refused.stderr)
        assert f"archfleet {args[0]} needs the `fleet` extra" in refused.stderr
        assert hint in refused.stderr and "python-gitlab" in refused.stderr
        assert "Traceback" not in refused.stderr and refused.stdout == ""


# --- with the fleet extra --------------------------------------------------------------------


def test_publish_templates_reads_the_templates_in_the_wheel(fleet: Installed) -> None:
    root = fleet.python(
        "-c", "from toolkit.ci_templates import default_root; print(default_root())"
    )
    assert root.code == 0, root.stderr
    assert root.stdout.strip().endswith("toolkit/_data/ci-templates")
    assert root.stdout.startswith(str(fleet.venv.root))
    with GitLabFake(token=TOKEN, project=PROJECT) as fake:
        publish = (
            "archfleet",
            "publish-templates",
            "--project",
            PROJECT,
            "--url",
            fake.url,
            "--allow-http",  # the fake serves plain HTTP on loopback
            "--version",
            __version__,
            "--wheel",
            str(fleet.wheel),
            "--json",
        )
        run = fleet.run(*publish, env={"GITLAB_TOKEN": TOKEN})
        assert run.code == 0, run.stderr
        # What the installed copy published is what this checkout renders, byte for byte
        # (the packaged ci-templates/ equal the checkout's), project pipeline and image/ too.
        tool_image = render_tool_image_default(
            f"{fake.registry_host}/{PROJECT.lower()}", __version__
        )
        expected = project_files(default_root(), read_wheel(fleet.wheel), tool_image)
        assert fake.raw_files_at(__version__) == expected
        assert run.json()["toolImage"] == tool_image
        again = fleet.run(*publish, "--dry-run", env={"GITLAB_TOKEN": TOKEN})
        assert again.code == 0, again.stderr
        assert again.json()["actions"] == [] and again.json()["tagCreated"] is False
        assert TOKEN not in run.stdout + run.stderr + again.stdout + again.stderr


def test_packaged_sample_app_and_a_lean_registry_entry(fleet: Installed) -> None:
    app = fleet.python(
        "-c", "from toolkit.lab.demo import SAMPLE_APP; print(SAMPLE_APP / 'Containerfile')"
    )
    assert app.code == 0, app.stderr
    containerfile = Path(app.stdout.strip())
    assert containerfile.is_file() and str(containerfile).startswith(str(fleet.venv.root))
    # The fleet is installed now; the merge job's entry must still not load any of it.
    timed = fleet.python("-X", "importtime", "-m", "toolkit.registry", "merge-manifest", "--help")
    assert timed.code == 0, timed.stderr
    loaded = imported_modules(timed.stderr)
    assert "urllib3" in loaded  # the parse found the imports at all
    heavy = set(FLEET_MODULES) | {"paramiko", "invoke"}
    assert not loaded & heavy, sorted(loaded & heavy)
    cli = fleet.python("-X", "importtime", "-m", "toolkit", "merge-manifest", "--help")
    assert cli.code == 0, cli.stderr
    # Invoke's vendored YAML picks up PyYAML's C loader (`yaml._yaml`) when it is installed.
    assert not imported_modules(cli.stderr) & (set(FLEET_MODULES) - {"yaml"})
