"""apt_get in the host scripts: retries while apt's or dpkg's lock is held, bounded; any other
failure passes straight through. Against a stub apt-get (and a stub sleep that only counts);
the real lock on a real host is tests/integration/test_apt_lock.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

from toolkit.fleet.apt import APT_GET_FUNCTION, LOCK_WAIT_SECONDS

LISTS_LOCKED = (
    "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (unattended-upgr)\n"
    "E: Unable to lock directory /var/lib/apt/lists/"
)


def run(tmp_path: Path, fail_times: int, message: str) -> tuple[int, str, str, int]:
    """`apt_get update -qq` where apt-get fails `fail_times` times with `message` first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    counter = tmp_path / "calls"
    counter.write_text("0")
    (bin_dir / "apt-get").write_text(
        f"""#!/bin/sh
n=$(($(cat {counter}) + 1)); echo $n > {counter}
if [ $n -le {fail_times} ]; then printf '%s\\n' {message!r} >&2; exit 100; fi
echo "updated with: $*"
"""
    )
    (bin_dir / "sleep").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    script = "set -e\n" + APT_GET_FUNCTION + "apt_get update -qq\necho after\n"
    done = subprocess.run(
        ["/bin/sh", "-c", script],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr, int(counter.read_text())


def test_waits_while_locked_then_runs(tmp_path: Path) -> None:
    code, out, err, calls = run(tmp_path, 3, LISTS_LOCKED)
    assert code == 0, err
    assert calls == 4
    assert "updated with: -o DPkg::Lock::Timeout=60 update -qq" in out and "after" in out


def test_gives_up_after_the_bound_and_says_why(tmp_path: Path) -> None:
    code, out, err, calls = run(tmp_path, 10_000, LISTS_LOCKED)
    assert code == 100 and "after" not in out
    assert calls == LOCK_WAIT_SECONDS // 5 + 1
    assert f"still locked by another process after {LOCK_WAIT_SECONDS}s" in err
    assert "/var/lib/apt/lists/lock" in err


def test_other_failures_are_not_retried(tmp_path: Path) -> None:
    code, out, err, calls = run(tmp_path, 1, "E: Unable to locate package umoci")
    assert code == 100 and calls == 1
    assert "Unable to locate package umoci" in err and "after" not in out
