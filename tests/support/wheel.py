"""Build archfleet's wheel and install it into fresh virtualenvs, as a user's `pip install` does.

Shared by tests/integration/test_wheel.py and bench/install_size.py. Slow set-up is cached
under $ARCHFLEET_CACHE (file-locked, like the lab's): a builder virtualenv with a current
setuptools (so a build is `pip wheel --no-build-isolation`, 2 s instead of 10 s of fetching
setuptools into an isolated environment each time), and a wheelhouse with every dependency of
the lean install and of the `fleet` extra, so installs run offline (`--no-index`) after the
first run fills it from the package indexes pip is configured with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from toolkit.lab.cache import cache_dir, file_lock

REPO_ROOT = Path(__file__).resolve().parents[2]
# setuptools 70.1 has bdist_wheel built in (older ones need the separate `wheel` package).
BUILDER_REQUIREMENT = "setuptools>=70.1"
WHEEL_FLAGS = ("--no-deps", "--no-build-isolation", "-q")


class WheelError(RuntimeError):
    """A build or an install did not work: the command and its output."""


def _run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    if done.returncode != 0:
        raise WheelError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def clean_env() -> dict[str, str]:
    """Our environment without what would let a child import the checkout's toolkit."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def source_copy(dest: Path) -> Path:
    """The files a clean clone would have (plus uncommitted work), without build leftovers.

    `pip wheel .` builds in the source tree (build/, *.egg-info); building in a copy keeps the
    shared checkout clean and proves the build needs nothing git does not track."""
    listed = _run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT
    )
    for relative in filter(None, listed.split("\0")):
        source = REPO_ROOT / relative
        if not source.is_file():
            continue  # deleted in the work tree, not yet in the index
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


def builder_python() -> Path:
    """A cached virtualenv with a current setuptools, to build without build isolation."""
    root = cache_dir() / "wheel-builder"
    python = root / "bin" / "python"
    with file_lock(cache_dir() / "wheel-builder.lock"):
        ready = root / ".ready"
        if not ready.exists():
            shutil.rmtree(root, ignore_errors=True)
            _run([sys.executable, "-m", "venv", str(root)])
            _run([str(python), "-m", "pip", "install", "-q", BUILDER_REQUIREMENT], env=clean_env())
            ready.write_text(BUILDER_REQUIREMENT + "\n")
    return python


def build_wheel(work: Path) -> Path:
    """Build archfleet's wheel from a copy of the checkout; returns the .whl path."""
    source = source_copy(work / "src")
    dist = work / "dist"
    _run(
        [str(builder_python()), "-m", "pip", "wheel", *WHEEL_FLAGS, "-w", str(dist), str(source)],
        env=clean_env(),
    )
    (wheel,) = dist.glob("archfleet-*.whl")
    return wheel


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def wheelhouse() -> Path:
    return cache_dir() / "wheelhouse"


def _pip_install(python: Path, spec: str, *, offline: bool) -> None:
    source = ["--no-index", "--find-links", str(wheelhouse())] if offline else []
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", *source, spec],
        env=clean_env(),
    )


def fill_wheelhouse(wheel: Path, extra: str) -> None:
    """Download what `wheel[extra]` needs (from the configured indexes), once."""
    house = wheelhouse()
    with file_lock(cache_dir() / "wheelhouse.lock"):
        _run(
            [sys.executable, "-m", "pip", "download", "-q", "-d", str(house), f"{wheel}[{extra}]"],
            env=clean_env(),
        )
        for own in house.glob("archfleet-*.whl"):
            own.unlink()  # installs take archfleet from the fresh build, never from here


@dataclass
class Venv:
    """A fresh virtualenv without pip: what is in it is exactly what an install put there."""

    root: Path

    @classmethod
    def create(cls, root: Path) -> Venv:
        _run([sys.executable, "-m", "venv", "--without-pip", str(root)])
        return cls(root)

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def install(self, wheel: Path, extra: str = "") -> float:
        """Install the wheel (with `extra`) offline from the wheelhouse; returns seconds.

        The first time a requirement is missing there, the wheelhouse is filled from the
        indexes and the (then offline) install is timed again."""
        spec = f"{wheel}[{extra}]" if extra else str(wheel)
        try:
            started = time.perf_counter()
            _pip_install(self.python, spec, offline=True)
        except WheelError:
            fill_wheelhouse(wheel, extra or "fleet")
            started = time.perf_counter()
            _pip_install(self.python, spec, offline=True)
        return time.perf_counter() - started

    def distributions(self) -> list[str]:
        """Names of the installed distributions, lower-case, as importlib.metadata sees them."""
        script = (
            "import importlib.metadata as m, json; "
            "print(json.dumps(sorted({d.metadata['Name'].lower() for d in m.distributions()})))"
        )
        out = _run([str(self.python), "-I", "-c", script], env=clean_env())
        names: list[str] = json.loads(out)
        return names

    def disk_bytes(self) -> int:
        """Allocated size of everything under the virtualenv (as `du` counts it)."""
        total = 0
        for directory, _, files in os.walk(self.root):
            for name in files:
                path = Path(directory) / name
                if not path.is_symlink():
                    total += path.stat().st_blocks * 512
        return total
