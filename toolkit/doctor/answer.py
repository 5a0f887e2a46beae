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
        """What the answer says in one line: GitLab's error shapes (a Grape `{"error": ...}`,
        a helper's `{"message": "400 Bad request - ..."}`, a model's `{"message": {field:
        [...]}}`: toolkit/fleet/gitlab_answer.py), else the start of the text (Jenkins)."""
        from ..fleet.gitlab_answer import error_text

        body = self.body
        if isinstance(body, Mapping) and (body.get("message") or body.get("error")):
            return error_text(body)
        return " ".join(self.text.split())[:200]
