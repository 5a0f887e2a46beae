"""lab.up checks what it needs first and says, all at once, what is missing and how to get it."""

from __future__ import annotations

import shutil

import pytest

from toolkit.lab import prereqs


def test_missing_commands_are_named_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    gone = {"debootstrap", "docker-registry", "qemu-aarch64-static", "qemu-aarch64"}
    monkeypatch.setattr(
        prereqs.shutil, "which", lambda name: None if name in gone else real_which(name)
    )
    monkeypatch.setattr(prereqs.os, "geteuid", lambda: 1000)
    problems = prereqs.missing_lab_prerequisites()
    text = "\n".join(problems)
    assert "needs root" in text
    assert "missing commands: docker-registry, debootstrap" in text
    assert "no qemu-user for arm64" in text
    assert "apt-get install -y" in text and "bash scripts/bootstrap" in text


def test_all_present_here() -> None:
    """On this machine (root, bootstrap done, binfmt_misc allowed) nothing is missing."""
    assert prereqs.missing_lab_prerequisites() == []
