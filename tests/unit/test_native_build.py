"""The per-host build script: valid sh, the steps in order, every value quoted.

Run against stub commands that log their argv: hostile strings from a Containerfile (labels,
paths, the target) arrive as single arguments and never run as code. The real build over SSH
on the lab hosts is tests/integration/test_demo.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.unit.test_builder_scripts import run_with_stubs
from toolkit.lab.containerfile import parse_containerfile
from toolkit.lab.native_build import build_script

HOSTILE = "x'; touch /tmp/pwned-archfleet-build; echo '"


def test_script_steps_and_quoting(tmp_path: Path) -> None:
    recipe = parse_containerfile(
        f"""
        FROM reg.example/base:1
        COPY hello.sh /usr/local/bin/hello
        COPY ["a b.txt", "c.txt", "/opt/my dir/"]
        LABEL evil="{HOSTILE}"
        ENV GREETING="$(id)"
        ENTRYPOINT ["/usr/local/bin/hello", "{HOSTILE}"]
        """
    )
    work = tmp_path / "work"
    work.mkdir()
    script = build_script(recipe, str(work), f"reg.example/app:{HOSTILE}", insecure=True)
    subprocess.run(["sh", "-n", "-c", script], check=True)
    stubs = {
        "skopeo": 'case "$*" in *digestfile*) echo sha256:abc > digest;; esac',
        "umoci": "exit 0",
        "uname": "echo aarch64",
        "mkdir": '/bin/mkdir "$@"',
        "cp": "exit 0",
        "tar": "exit 0",
        "cat": '/bin/cat "$@"',
    }
    code, calls = run_with_stubs(script, tmp_path, stubs)
    assert code == 0, calls
    lines = calls.splitlines()
    assert lines[0] == "uname|-m|"
    skopeo = [line for line in lines if line.startswith("skopeo|")]
    # The base comes from the multi-arch tag with no --override-arch: the host picks its own.
    assert skopeo[0] == (
        "skopeo|copy|--quiet|--src-tls-verify=false|docker://reg.example/base:1|oci:image:build|"
    )
    assert "--override-arch" not in calls
    # One layer per COPY, files placed under their targets, tarred by top-level directory.
    assert "cp|-p|context/0|layer0/usr/local/bin/hello|" in lines
    assert "cp|-p|context/1|layer1/opt/my dir/a b.txt|" in lines
    assert "tar|--numeric-owner|--owner=0|--group=0|-C|layer1|-cf|layer1.tar|--|opt|" in lines
    assert [line for line in lines if line.startswith("umoci|raw|add-layer")] == [
        "umoci|raw|add-layer|--image|image:build|layer0.tar|",
        "umoci|raw|add-layer|--image|image:build|layer1.tar|",
    ]
    config = next(line for line in lines if line.startswith("umoci|config"))
    assert f"--config.label=evil={HOSTILE}|" in config
    assert f"--config.entrypoint={HOSTILE}|" in config
    assert "--config.env=GREETING=$(id)|" in config
    assert skopeo[-1] == (
        "skopeo|copy|--quiet|--dest-tls-verify=false|--digestfile|digest|oci:image:build|"
        f"docker://reg.example/app:{HOSTILE}|"
    )
    assert not Path("/tmp/pwned-archfleet-build").exists()


def test_tls_is_verified_unless_insecure() -> None:
    recipe = parse_containerfile("FROM reg.example/base:1")
    script = build_script(recipe, "/tmp/w", "reg.example/app:1")
    assert "--src-tls-verify=true" in script and "--dest-tls-verify=true" in script
    assert "umoci config" not in script  # nothing to change in the config
