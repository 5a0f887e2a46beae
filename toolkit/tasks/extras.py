"""Tasks that need the `fleet` extra stop with the install command when it is missing.

`pip install archfleet` is the lean install a merge job needs (pyproject.toml says why); the
CLI still lists every task, since a task's module imports only Invoke at start-up. Without this
guard a fleet task run there would die on its first lazy import with a ModuleNotFoundError
traceback, possibly after it had started work; with it, it stops before its body runs and says
which extra to install.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Collection
from typing import Any

from invoke.collection import Collection as TaskCollection
from invoke.exceptions import Exit

from .. import __version__, report

FLEET_EXTRA = "fleet"
# Import name -> distribution, for every requirement of pyproject.toml's `fleet` extra.
FLEET_MODULES = {
    "gitlab": "python-gitlab",
    "jenkinsapi": "jenkinsapi",
    "yaml": "pyyaml",
    "fabric": "fabric",
    "requests": "requests",
    "rich": "rich",
    "bcrypt": "bcrypt",
    "jsonschema": "jsonschema",
}


def missing_fleet_distributions() -> list[str]:
    """The fleet extra's distributions that cannot be imported here (looked up, not imported)."""
    return [
        dist for module, dist in FLEET_MODULES.items() if importlib.util.find_spec(module) is None
    ]


def install_hint() -> str:
    return f"pip install 'archfleet[{FLEET_EXTRA}]=={__version__}'"


def _needs_fleet(name: str, body: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(body)  # Invoke reads the flags from the signature, via __wrapped__
    def run(c: Any, *args: Any, **kwargs: Any) -> Any:
        missing = missing_fleet_distributions()
        if missing:
            report.error(
                f"archfleet {name} needs the `{FLEET_EXTRA}` extra, which is not installed "
                f"(missing: {', '.join(missing)}); install it with: {install_hint()}"
            )
            raise Exit(code=1)
        return body(c, *args, **kwargs)

    return run


def require_fleet(namespace: TaskCollection, lean: Collection[str], prefix: str = "") -> None:
    """Guard every task of `namespace` (and its sub-collections) except the `lean` names."""
    for key, task in namespace.tasks.items():
        name = prefix + key
        if name not in lean:
            task.body = _needs_fleet(name, task.body)
    for key, sub in namespace.collections.items():
        require_fleet(sub, lean, prefix=f"{prefix}{key}.")
