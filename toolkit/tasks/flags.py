"""One short-flag scheme for every task: a short flag means the same thing everywhere.

Invoke gives each option a short flag from the first free letter of its name, so the same
letter meant different options in different tasks (`-n` was `--no-gitlab` in
provision-runners and `--json` elsewhere; `-d` was `--dry-run`, `--dir`, and before the task
name Invoke's own `--debug`), and `--job-script-path`, whose letters were all taken, got `-`
(shown as `--=STRING`). Here automatic short flags are off, and only these conventions have
one. None of the letters is one of Invoke's core flags (`archfleet --help`: d D e f F h l p R
T V w), so a letter means one thing before and after the task name too.
"""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection
from invoke.tasks import Task

SHORT_FLAGS: dict[str, str] = {
    "dry-run": "n",  # make -n, rsync -n, git clean -n: show, change nothing
    "json": "j",
    "yes": "y",  # apt-get -y: confirm a destructive task without a terminal
}


class ConventionTask(Task[Any]):
    """A task whose only short flags are the SHORT_FLAGS conventions."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        self.auto_shortflags = False
        opts = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(name.strip("_").replace("_", "-"))  # as Invoke dashes names
        if short is not None and short not in taken_names:
            opts["names"] = [*opts["names"], short]
        return opts


def apply_short_flags(namespace: Collection) -> None:
    """Give every task of `namespace` (and its sub-collections) the one scheme. Done on the
    assembled namespace, so a task declared with Invoke's plain @task anywhere follows it."""
    for task in namespace.tasks.values():
        task.__class__ = ConventionTask
    for sub in namespace.collections.values():
        apply_short_flags(sub)
