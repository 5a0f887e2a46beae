"""The library's resources: the arch table is toolkit.archmap's and the version is the
package's (one source of truth each), and the shell scripts are ones Jenkins runs untraced and
that never print a secret; the preflight script and the registry-config script, run."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from toolkit import __version__
from toolkit.publish.jenkins_library import (
    ARCHES_RESOURCE,
    VERSION_RESOURCE,
    render_arches_json,
    render_version_text,
    write_version_resource,
)

LIBRARY = Path(__file__).resolve().parents[2] / "jenkins"
SCRIPTS = sorted((LIBRARY / "resources" / "archfleet").glob("*.sh"))
CHECK_TOOL = LIBRARY / "resources" / "archfleet" / "check-tool.sh"
REGISTRY_CONFIG = LIBRARY / "resources" / "archfleet" / "registry-config.sh"


def test_arch_table_is_generated_from_archmap() -> None:
    committed = (LIBRARY / ARCHES_RESOURCE).read_text(encoding="utf-8")
    assert committed == render_arches_json(), (
        "jenkins/resources/archfleet/arches.json is stale; regenerate it with: python -c "
        "'from pathlib import Path; from toolkit.publish.jenkins_library import "
        'write_arches_resource; write_arches_resource(Path("jenkins"))\''
    )


def test_library_version_is_the_package_version() -> None:
    committed = (LIBRARY / VERSION_RESOURCE).read_text(encoding="utf-8")
    assert committed == f"{__version__}\n", (
        f"jenkins/{VERSION_RESOURCE} says {committed.strip()!r}, toolkit/__init__.py "
        f"{__version__!r}; regenerate it with: python -c 'from pathlib import Path; from "
        "toolkit.publish.jenkins_library import write_version_resource; "
        'write_version_resource(Path("jenkins"))\''
    )


def test_version_resource_is_regenerated_from_the_package(tmp_path: Path) -> None:
    (tmp_path / VERSION_RESOURCE).parent.mkdir(parents=True)
    path = write_version_resource(tmp_path)
    assert path == tmp_path / VERSION_RESOURCE
    assert path.read_text(encoding="utf-8") == render_version_text() == f"{__version__}\n"


@pytest.mark.parametrize(
    "path",
    [
        LIBRARY / "README.md",
        LIBRARY / "vars" / "multiArchBuild.txt",
        LIBRARY / "Jenkinsfile.example",
        LIBRARY / "Jenkinsfile.scripted.example",
        LIBRARY / "Jenkinsfile.monorepo.example",
    ],
    ids=lambda p: p.name,
)
def test_docs_and_examples_name_the_tool_image_of_this_version(path: Path) -> None:
    tags = re.findall(r"/archfleet:([0-9][\w.+-]*)", path.read_text())
    assert tags and set(tags) == {__version__}, tags


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_run_untraced_and_parse(script: Path) -> None:
    text = script.read_text()
    # No shebang: durable-task's BourneShellScript exec's a script that has one (chmod +x, run
    # the file), which fails on a noexec workspace; without one it runs `sh -xe script.sh`, so
    # the first command turns the trace off (it would print every expanded command line).
    assert not text.startswith("#!")
    assert re.match(r"set \+xe?\b", text), text.splitlines()[0]
    assert not re.search(r"^\s*set -\w*x", text, flags=re.MULTILINE)
    for shell in ("dash", "bash"):
        done = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_password_only_ever_goes_to_stdin(script: Path) -> None:
    uses = [line.strip() for line in script.read_text().splitlines() if "REGISTRY_PASSWORD" in line]
    for line in uses:
        if line.startswith("#"):
            continue
        # printf is a shell builtin: what it prints is no process' argument.
        assert line.startswith(
            (
                "printf '%s\\n' \"$REGISTRY_PASSWORD\" |",
                'auth=$(printf \'%s:%s\' "$REGISTRY_USER" "$REGISTRY_PASSWORD" |',
                "[ -n",
            )
        ), line


def run_check(tmp_path: Path, **env: str) -> dict[str, list[str]]:
    """check-tool.sh as Jenkins' sh step runs it (`sh -xe`, durable-task BourneShellScript) under
    dash, with PATH reduced to `tmp_path/bin` and the system's."""
    done = subprocess.run(
        ["dash", "-xe", str(CHECK_TOOL)],
        env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    # The trace stops at the first line; -e does not stop the script at a failing tool.
    assert [line for line in done.stderr.splitlines() if line.startswith("+")] == ["+ set +xe"]
    found: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


def fake_command(tmp_path: Path, name: str, body: str) -> None:
    """A FAKE command on the reduced PATH of run_check."""
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_check_tool_reports_a_missing_command(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    assert run_check(tmp_path) == {"command": ["archfleet"], "status": ["missing"]}
    assert run_check(tmp_path, AF_ARCHFLEET="/opt/af/bin/archfleet --quiet") == {
        "command": ["/opt/af/bin/archfleet"],
        "status": ["missing"],
    }


def test_check_tool_reports_the_version_output(tmp_path: Path) -> None:
    fake_command(tmp_path, "archfleet", 'echo "warning: x" >&2; echo "archfleet 9.9.9 $*"')
    assert run_check(tmp_path) == {
        "command": ["archfleet"],
        "status": ["ok"],
        "code": ["0"],
        "output": ["warning: x", "archfleet 9.9.9 --version"],
    }


def test_check_tool_follows_archfleet_then_af_archfleet(tmp_path: Path) -> None:
    fake_command(tmp_path, "af-a", 'echo "archfleet a $*"')
    fake_command(tmp_path, "af-b", 'echo "archfleet b $*"; exit 3')
    assert run_check(tmp_path, ARCHFLEET="af-a")["output"] == ["archfleet a --version"]
    both = run_check(tmp_path, ARCHFLEET="af-a", AF_ARCHFLEET="af-b -x")
    assert (both["status"], both["code"], both["output"]) == (
        ["failed"],
        ["3"],
        ["archfleet b -x --version"],
    )


def test_registry_config_writes_a_private_login(tmp_path: Path) -> None:
    target = tmp_path / "ws@tmp" / "archfleet-registry"
    password = 'p"w:\\ with spaces'
    subprocess.run(
        ["dash", str(REGISTRY_CONFIG)],
        env={
            "PATH": os.environ["PATH"],
            "AF_DOCKER_CONFIG": str(target),
            "AF_AUTH_KEY": "registry.example.com:5000",
            "REGISTRY_USER": "ci-bot",
            "REGISTRY_PASSWORD": password,
        },
        capture_output=True,
        check=True,
    )
    config = json.loads((target / "config.json").read_text())
    auth = config["auths"]["registry.example.com:5000"]["auth"]
    assert base64.b64decode(auth).decode() == f"ci-bot:{password}"
    assert (target.stat().st_mode & 0o777, (target / "config.json").stat().st_mode & 0o777) == (
        0o700,
        0o600,
    )
