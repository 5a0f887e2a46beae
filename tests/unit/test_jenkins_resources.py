"""The library's resources: the arch table is toolkit.archmap's (one source of truth), and the
shell scripts are ones Jenkins runs untraced and that never print a secret."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from toolkit.publish.jenkins_library import ARCHES_RESOURCE, render_arches_json

LIBRARY = Path(__file__).resolve().parents[2] / "jenkins"
SCRIPTS = sorted((LIBRARY / "resources" / "archfleet").glob("*.sh"))


def test_arch_table_is_generated_from_archmap() -> None:
    committed = (LIBRARY / ARCHES_RESOURCE).read_text(encoding="utf-8")
    assert committed == render_arches_json(), (
        "jenkins/resources/archfleet/arches.json is stale; regenerate it with: python -c "
        "'from pathlib import Path; from toolkit.publish.jenkins_library import "
        'write_arches_resource; write_arches_resource(Path("jenkins"))\''
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_run_untraced_and_parse(script: Path) -> None:
    text = script.read_text()
    # With a shebang Jenkins' sh runs the script as is; without one it adds `sh -xe`, whose
    # trace would print every expanded command line.
    assert text.startswith("#!/bin/sh\n")
    assert "set -x" not in text and not re.search(r"^set -\w*x", text, flags=re.MULTILINE)
    for shell in ("dash", "bash"):
        done = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_password_only_ever_goes_to_stdin(script: Path) -> None:
    uses = [line.strip() for line in script.read_text().splitlines() if "REGISTRY_PASSWORD" in line]
    for line in uses:
        if line.startswith("#"):
            continue
        assert line.startswith(("printf '%s\\n' \"$REGISTRY_PASSWORD\" |", "[ -n")), line
