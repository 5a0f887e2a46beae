"""Run archfleet as a whole process, the way a CI job does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def archfleet(
    *args: str,
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    timeout: float = 120,
) -> Run:
    """`archfleet ARGS` as its own process; `env` on top of ours, `unset` names removed."""
    merged = {**os.environ, "COLUMNS": "200", **(env or {})}
    for name in unset:
        merged.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "toolkit", *args],
        capture_output=True,
        text=True,
        env=merged,
        timeout=timeout,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)
