"""Where archfleet's shipped files are: the CI templates, the Jenkins library, the examples.

One source of truth: they live at the top of the repository (ci-templates/, jenkins/,
examples/), where users read them, where Jenkins loads the library from by git, and where the
tests check them. A wheel carries a copy of each under toolkit/_data/ (setup.py's build step
copies them at build time, so nothing is committed twice); a source checkout or an editable
install has no such copy and reads the repository's own directories.

Reading them through `__file__` alone (`toolkit/../ci-templates`) is what broke a pip install:
next to an installed `toolkit/` there is `site-packages/`, not the repository.
"""

from __future__ import annotations

from pathlib import Path

# Top-level directories of the repository that ship inside the wheel (setup.py SHIPPED copies
# exactly these; tests/integration/test_wheel.py checks that every file of each is in the wheel).
DATA_DIRS = ("ci-templates", "jenkins", "examples")
PACKAGED = "_data"

_PACKAGE = Path(__file__).resolve().parent


class ResourceError(FileNotFoundError):
    """A shipped directory is in neither place: a broken install, not a user mistake."""


def data_path(name: str) -> Path:
    """The directory `name` (one of DATA_DIRS): the wheel's copy, else the checkout's."""
    if name not in DATA_DIRS:
        raise ValueError(f"{name!r} is not a shipped directory ({', '.join(DATA_DIRS)})")
    packaged = _PACKAGE / PACKAGED / name
    if packaged.is_dir():
        return packaged
    checkout = _PACKAGE.parent / name
    if checkout.is_dir():
        return checkout
    raise ResourceError(
        f"{name}/ is missing: neither {packaged} (an installed wheel) nor {checkout} (a source "
        "checkout) exists; reinstall archfleet from a wheel built by its setup.py"
    )
