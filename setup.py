"""Build step: the repository's shipped directories go into the wheel as toolkit/_data/.

ci-templates/, jenkins/ and examples/ stay where they are in the repository (one source of
truth: users, Jenkins' git checkout of the library and the tests read them there); a wheel gets
a fresh copy of each under toolkit/_data/, which toolkit/resources.py reads when it is present.
Everything else about the package is declared in pyproject.toml. MANIFEST.in puts the same
directories in the sdist, so a wheel built from the sdist (`python -m build`) has them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# The same list as toolkit/resources.py DATA_DIRS (tests/integration/test_wheel.py checks both).
SHIPPED = ("ci-templates", "jenkins", "examples")
SKIP = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.log")


class BuildPyWithData(build_py):  # type: ignore[misc]
    """setuptools' build_py, then a copy of each shipped directory into build_lib."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout itself (toolkit/resources.py)
        for name in SHIPPED:
            source = ROOT / name
            if not source.is_dir():
                raise SystemExit(f"setup.py: {source} is missing; it must ship in the wheel")
            target = Path(self.build_lib) / "toolkit" / "_data" / name
            shutil.rmtree(target, ignore_errors=True)  # no stale file from an earlier build
            shutil.copytree(source, target, ignore=SKIP)


setup(cmdclass={"build_py": BuildPyWithData})
