"""Where the lab keeps slow set-up (downloaded packages, extracted root filesystems)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ARCHFLEET_CACHE"


def cache_dir() -> Path:
    """`$ARCHFLEET_CACHE`, else `~/.cache/archfleet`; created on first use."""
    raw = os.environ.get(CACHE_ENV)
    path = Path(raw).expanduser() if raw else Path.home() / ".cache" / "archfleet"
    path.mkdir(parents=True, exist_ok=True)
    return path
