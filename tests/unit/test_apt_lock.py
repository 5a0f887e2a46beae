"""apt_get in the host scripts: retries while apt's or dpkg's lock is held, bounded; every other
failure is told by its cause in one line and ends the script at once. Against a stub apt-get
(and a stub sleep that only counts) that prints apt 2.6's own messages (apt-pkg/contrib/
fileutl.cc GetLock, apt-pkg/deb/debsystem.cc, apt-pkg/update.cc in Debian/apt; the messages
were taken from the real apt-get on this machine, as a non-root user and against a mirror
that refuses connections); the real lock on a real host is tests/integration/test_apt_lock.py,
and the real apt as a non-root user is test_real_apt_as_a_user_who_is_not_root below."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from toolkit.fleet.apt import APT_GET_FUNCTION, FAILURE_MARKER, LOCK_WAIT_SECONDS, failure_line

LISTS_LOCKED = (
    "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (unattended-upgr)\n"
    "E: Unable to lock directory /var/lib/apt/lists/"
)


def run(
    tmp_path: Path,
    fail_times: int,
    message: str,
    *,
    script: str = "set -e\napt_get update -qq\necho after\n",
    update_warning: str = "",
    fail_on: str = "",
) -> tuple[int, str, str, int]:
    """`script` where apt-get fails `fail_times` times with `message` first (exit 100), only
    the calls whose arguments hold `fail_on`; a successful `update` prints `update_warning`
    (and exits 0, as apt does)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    counter = tmp_path / "calls"
    counter.write_text("0")
    (bin_dir / "apt-get").write_text(
        f"""#!/bin/sh
n=$(($(cat {counter}) + 1)); echo $n > {counter}
case "$*" in *{fail_on}*) ;; *) n=999999 ;; esac
if [ $n -le {fail_times} ]; then printf '%b\\n' {message!r} >&2; exit 100; fi
case "$*" in *update*) printf '%b' {update_warning!r} >&2 ;; esac
echo "updated with: $*"
"""
    )
    (bin_dir / "sleep").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    done = subprocess.run(
        ["/bin/sh", "-c", APT_GET_FUNCTION + script],
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
    assert failure_line(err) == (
        f"apt-get update: apt is locked by another process, still after {LOCK_WAIT_SECONDS}s "
        "(E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 "
        "(unattended-upgr)); fix: let it finish (unattended-upgrades runs after boot), then "
        "run again"
    )


def test_other_failures_are_not_retried(tmp_path: Path) -> None:
    code, out, err, calls = run(tmp_path, 1, "E: Unable to locate package umoci")
    assert code == 100 and calls == 1
    assert "Unable to locate package umoci" in err and "after" not in out


def test_every_failure_ends_in_one_marked_line(tmp_path: Path) -> None:
    code, _, err, _ = run(tmp_path, 1, "E: Unable to locate package umoci")
    assert code == 100
    assert failure_line(err) == (
        "apt-get update: package not found (E: Unable to locate package umoci); fix: enable "
        "the apt source that has it on this host (its OS release may not package it), or "
        "choose another builder.tool"
    )
    assert err.rstrip().splitlines()[-1].startswith(FAILURE_MARKER)


NOT_ROOT = (
    "E: Could not open lock file /var/lib/apt/lists/lock - open (13: Permission denied)\n"
    "E: Unable to lock directory /var/lib/apt/lists/"
)


def test_permission_denied_is_not_the_lock_and_is_not_waited_for(tmp_path: Path) -> None:
    """apt's message holds "lock" (GetLock could not OPEN the file): once, no sleep."""
    code, out, err, calls = run(tmp_path, 10_000, NOT_ROOT)
    assert code == 100 and calls == 1 and "after" not in out
    line = failure_line(err)
    assert line is not None and "permission denied" in line and "is not root" in line
    assert "(E: Could not open lock file /var/lib/apt/lists/lock - open (13: Permission " in line
    assert "fix: log in as root, or set ssh.become: sudo" in line
    assert "locked by another process" not in err


def test_dpkg_frontend_are_you_root_is_permission_too(tmp_path: Path) -> None:
    message = (
        "E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)\n"
        "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), are you root?"
    )
    code, _, err, calls = run(tmp_path, 10_000, message, script="apt_get install -y umoci\n")
    assert code == 100 and calls == 1
    assert (failure_line(err) or "").startswith("apt-get install: permission denied")


def test_a_failure_ends_the_script_even_inside_an_and_list(tmp_path: Path) -> None:
    """`set -e` does not stop at `a` in `a && b`, nor in an `if` branch: apt_get itself exits."""
    script = "if true; then apt_get update -qq && apt_get install -y umoci; fi\necho after\n"
    code, out, err, calls = run(tmp_path, 10_000, NOT_ROOT, script=script)
    assert code == 100 and calls == 1 and "after" not in out
    assert err.count("archfleet: ") == 1  # one account, from the first apt_get


FETCH_WARNING = (
    "W: Failed to fetch http://127.0.0.119:9/debian/dists/bookworm/InRelease  Could not "
    "connect to 127.0.0.119:9 (127.0.0.119). - connect (111: Connection refused)\n"
    "W: Some index files failed to download. They have been ignored, or old ones used instead.\n"
)


def test_an_unreachable_mirror_is_named_not_the_package(tmp_path: Path) -> None:
    """apt-get update exits 0 with a warning (update.cc); the install then finds nothing."""
    code, _, err, calls = run(
        tmp_path,
        10_000,
        "E: Unable to locate package umoci",
        script="apt_get update -qq && apt_get install -y umoci\necho after\n",
        update_warning=FETCH_WARNING,
        fail_on="install",
    )
    assert code == 100 and calls == 2
    line = failure_line(err) or ""
    assert line.startswith("apt-get install: package mirror unreachable, so no package list")
    assert "Could not connect to 127.0.0.119:9" in line and "fix: check the host's network" in line


def test_a_failed_download_is_the_mirror(tmp_path: Path) -> None:
    message = (
        "E: Failed to fetch http://deb.example/pool/main/u/umoci/umoci_0.4.7_amd64.deb  "
        "Could not resolve 'deb.example'\n"
        "E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?"
    )
    code, _, err, _ = run(tmp_path, 1, message, script="apt_get install -y umoci\n")
    assert code == 100
    assert (failure_line(err) or "").startswith(
        "apt-get install: package mirror unreachable (E: Failed to fetch http://deb.example/"
    )


def test_anything_else_passes_its_last_error_line(tmp_path: Path) -> None:
    message = "E: Sub-process /usr/bin/dpkg returned an error code (1)"
    code, _, err, _ = run(tmp_path, 1, message, script="apt_get install -y umoci\n")
    assert code == 100
    assert failure_line(err) == f"apt-get install failed (exit 100): {message}"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("apt-get") is None, reason="needs root (to become nobody)"
)
def test_real_apt_as_a_user_who_is_not_root(tmp_path: Path) -> None:
    """The REAL apt-get, run as `nobody`: its own message, told as permission, at once."""
    nobody = pwd.getpwnam("nobody")
    done = subprocess.run(
        ["/bin/sh", "-c", APT_GET_FUNCTION + "apt_get update -qq\necho after\n"],
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 100 and "after" not in done.stdout
    line = failure_line(done.stderr) or ""
    assert line.startswith("apt-get update: permission denied, nobody is not root"), done.stderr
    assert "/var/lib/apt/lists/lock - open (13: Permission denied)" in line
