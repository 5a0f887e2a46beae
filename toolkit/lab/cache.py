"""Where the lab keeps slow set-up (downloaded packages, extracted root filesystems)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

CACHE_ENV = "ARCHFLEET_CACHE"


def cache_dir() -> Path:
    """`$ARCHFLEET_CACHE`, else `~/.cache/archfleet`; created on first use."""
    raw = os.environ.get(CACHE_ENV)
    path = Path(raw).expanduser() if raw else Path.home() / ".cache" / "archfleet"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing): one process at a time."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
