"""How check-bases and inspect-manifest print: the report layer of these two commands.

Same split as toolkit/report.py: human tables on stderr, what a CI job captures on stdout
(JSON, a digest, `--format` lines, `--raw` bytes), so a table never lands in a variable. Plain
aligned text: these commands run in CI logs, on the lean install.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .. import report
from .bases import MISSING, OK, CheckReport
from .inspection import ManifestView

_RESULT = {OK: "ok", MISSING: "MISSING", "compatible": "compatible", "error": "ERROR"}
# Why a base is needed for a platform (dockerfile.BaseUse.why).
_WHY = {"target": "target", "build": "build machine", "explicit": "--platform"}


def _say(line: str = "") -> None:
    sys.stderr.write(line + "\n")


def _columns(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        _say("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def bases_table(result: CheckReport) -> None:
    build = "each platform natively" if result.build == "native" else result.build
    targets = ", ".join(str(p) for p in result.targets)
    _say(f"check-bases {result.file}: {targets} (built on {build})")
    rows = [["base", "platform", "needed for", "result", "used in"]]
    for base in result.bases:
        for check in base.checks:
            outcome = _RESULT.get(check.status, check.status)
            if check.matched and check.matched != check.wanted:
                outcome += f" ({check.matched})"
            rows.append(
                [
                    base.image,
                    str(check.wanted),
                    _WHY.get(check.why, check.why),
                    outcome,
                    ", ".join(check.stages),
                ]
            )
    if len(rows) > 1:
        _columns(rows)
    for stage, kind, start in result.local:
        what = "no image (scratch)" if kind == "scratch" else f"builds on stage {start}"
        _say(f"stage {stage}: {what}; nothing to check")
    if result.skipped:
        _say(f"stages the build does not reach (not checked): {', '.join(result.skipped)}")
    for warning in result.warnings:
        _say(f"warning: {warning}")
    for problem in result.problems:
        report.error(problem)
    if result.ok:
        _say(
            f"ok: {len(result.bases)} base(s) offer every platform needed "
            f"({result.registry_requests} registry requests)"
        )


def manifest_view(view: ManifestView) -> None:
    _say(f"Name:      {view.name}")
    _say(f"MediaType: {view.media_type}")
    _say(f"Digest:    {view.digest}")
    _say(f"Size:      {view.size}")
    if not view.is_index:
        _say(f"Platform:  {view.platform or 'unknown (the config names none)'}")
        _say(f"Config:    {view.config_digest}")
        _say(f"Layers:    {view.layers}")
        return
    rows = [["platform", "digest", "size", "mediaType"]]
    for entry in view.entries:
        if entry.attestation:
            platform = "attestation"
            media = f"{entry.media_type} (for {entry.subject or '?'})"
        else:
            platform = str(entry.platform) if entry.platform else "(none)"
            media = entry.media_type
        rows.append([platform, entry.digest, str(entry.size), media])
    _say("Manifests:")
    _columns(rows)
    for key, value in sorted(view.annotations.items()):
        _say(f"Annotation: {key}={value}")


def emit_raw(data: bytes) -> None:
    """The manifest's bytes exactly as the registry sent them (they are what its digest
    covers): no newline added, no re-encoding."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def emit_lines(lines: Sequence[str]) -> None:
    for line in lines:
        report.emit_value(line)
