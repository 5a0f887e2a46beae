"""What a server answered one GET with: the value the pure evaluations read (no I/O here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Answer:
    """`status` and parsed JSON `body` (None when it was not JSON); `headers` with lower-case
    names; `text` the first few hundred characters, for an error message."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def message(self) -> str:
        """GitLab's `{"message": ...}` / `{"error": ...}`, else the start of the text."""
        body = self.body
        if isinstance(body, Mapping):
            for key in ("message", "error_description", "error"):
                value = body.get(key)
                if value:
                    return str(value)
        return " ".join(self.text.split())[:200]
