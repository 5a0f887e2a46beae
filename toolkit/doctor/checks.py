"""The one row every doctor check produces, and what a run of them means for the exit code."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

Status = Literal["ok", "warn", "blocker"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "blocker")
NOT_CHECKED_NO_TOKEN = "not checked (no token)"  # noqa: S105 - a message, not a secret


@dataclass(frozen=True)
class Check:
    """One finding: what was checked (`check`), on what (`target`: a host name or a server
    URL), whether it stops provisioning or a pipeline (`blocker`), deserves a look (`warn`)
    or is fine (`ok`); `detail` says what was found, `fix` the one thing to do about it."""

    check: str
    target: str
    status: Status
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}: expected one of {', '.join(STATUSES)}")
        if self.status != "ok" and not self.fix:
            raise ValueError(f"{self.check} on {self.target}: a {self.status} needs a fix")

    def to_json(self) -> dict[str, str]:
        return {
            "check": self.check,
            "target": self.target,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
        }


def ok(check: str, target: str, detail: str) -> Check:
    return Check(check, target, "ok", detail)


def warn(check: str, target: str, detail: str, fix: str) -> Check:
    return Check(check, target, "warn", detail, fix)


def blocker(check: str, target: str, detail: str, fix: str) -> Check:
    return Check(check, target, "blocker", detail, fix)


def exit_code(checks: Iterable[Check]) -> int:
    """1 when anything blocks, else 0: warnings are for people, not for scripts."""
    return 1 if any(c.status == "blocker" for c in checks) else 0


def redacted(checks: Sequence[Check], secrets: Iterable[str]) -> list[Check]:
    """The rows with every secret replaced: a server's error text may echo what it was sent,
    and no token may reach a terminal or a CI log (belt and braces: no check puts one in)."""
    hidden = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not hidden:
        return list(checks)

    def scrub(text: str) -> str:
        for secret in hidden:
            text = text.replace(secret, "***")
        return text

    return [replace(c, detail=scrub(c.detail), fix=scrub(c.fix)) for c in checks]
