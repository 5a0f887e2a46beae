"""The merge-tool role without a host: its facts (the real facts script, run here with sh on
a fake /opt/archfleet), its plan (pure), and its scripts — quoted, and run here with sh for
everything that fails before pip (a refused wheel changes nothing and leaves nothing)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from toolkit.fleet import merge_tool
from toolkit.fleet.facts import FACTS_SCRIPT, HostFacts, parse_facts
from toolkit.fleet.merge_tool import (
    EXIT_BUSY,
    EXIT_NOT_OURS,
    EXIT_SHA256,
    MergeToolError,
    install_python_script,
    install_script,
    link_script,
    parse_version,
)
from toolkit.fleet.plan import PlanError, plan_host
from toolkit.inventory import ArchfleetSettings, BuilderSettings, Host, Inventory, SshSettings

SHA = "ab" * 32
LOCK = f"invoke==2.2.1 \\\n    --hash=sha256:{'c' * 64}\n"
URL = "https://files.example.com/archfleet/archfleet-0.2.0-py3-none-any.whl"


def tool(tmp_path: Path, **changes: str | None) -> ArchfleetSettings:
    lock = tmp_path / "lock.txt"
    lock.write_text(LOCK)
    base = ArchfleetSettings(version="0.2.0", wheel=URL, sha256=SHA, requirements=lock)
    return replace(base, **changes)  # type: ignore[arg-type]


def fleet(tmp_path: Path, roles: tuple[str, ...] = ("merge-tool",), **changes: str) -> Inventory:
    host = Host("merge-1", "10.0.0.5", roles, SshSettings())
    return Inventory(
        tmp_path / "fleet.yml",
        (host,),
        BuilderSettings(tool="buildah", install=True),
        archfleet=tool(tmp_path, **changes),
    )


def facts(**extra: object) -> HostFacts:
    base = parse_facts("machine=x86_64\nos_id=debian\nos_version=12\nfacts=done\n", host="h")
    return replace(base, **extra)  # type: ignore[arg-type]


READY = dict(python3="3.11.2", python3_venv=True, apt_get=True)
INSTALLED = dict(
    READY,
    archfleet="0.2.0",
    archfleet_venv=True,
    archfleet_wheel_sha256=SHA,
    archfleet_linked=True,
)


def planned(inventory: Inventory, current: HostFacts) -> list[str]:
    return [str(c) for c in plan_host(inventory, inventory.hosts[0], current).changes]


# --- facts ------------------------------------------------------------------------------------


def test_version_line_is_what_invokes_program_prints() -> None:
    assert parse_version("archfleet 0.1.0\n") == "0.1.0"
    assert parse_version("archfleet 0.1.0.post1") == "0.1.0.post1"
    for broken in (None, "", "Traceback (most recent call last):", "other 0.1.0", "archfleet"):
        assert parse_version(broken) is None


def _fake_tool(root: Path, says: str, *, linked: bool = True, sha: str | None = SHA) -> str:
    """The facts script with /opt/archfleet and /usr/local/bin/archfleet moved under `root`,
    and a stand-in `archfleet` there that prints `says` (or fails when `says` is empty)."""
    venv = root / "opt" / "archfleet"
    (venv / "bin").mkdir(parents=True)
    command = venv / "bin" / "archfleet"
    command.write_text(f"#!/bin/sh\necho '{says}'\n" if says else "#!/bin/sh\nexit 1\n")
    command.chmod(0o755)
    if sha is not None:
        (venv / merge_tool.WHEEL_SHA256_FILE).write_text(sha + "\n")
    link = root / "usr" / "local" / "bin" / "archfleet"
    link.parent.mkdir(parents=True)
    if linked:
        link.symlink_to(str(command))
    return FACTS_SCRIPT.replace("/usr/local/bin/archfleet", str(link)).replace(
        "/opt/archfleet", str(venv)
    )


def _run_facts(script: str) -> HostFacts:
    output = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    return parse_facts(output.stdout, host="local")


def test_facts_report_the_installed_version_its_wheel_and_the_link(tmp_path: Path) -> None:
    found = _run_facts(_fake_tool(tmp_path, "archfleet 0.2.0"))
    assert (found.archfleet, found.archfleet_venv) == ("0.2.0", True)
    assert found.archfleet_wheel_sha256 == SHA and found.archfleet_linked is True
    # This machine's python3 can make virtualenvs (the tests make some).
    assert found.python3 is not None and found.python3_venv is True


def test_a_venv_that_does_not_run_is_there_but_has_no_version(tmp_path: Path) -> None:
    found = _run_facts(_fake_tool(tmp_path, "", linked=False, sha=None))
    assert (found.archfleet, found.archfleet_venv, found.archfleet_linked) == (None, True, False)
    assert found.archfleet_wheel_sha256 is None


def test_a_host_without_it_reports_nothing_of_it(tmp_path: Path) -> None:
    script = FACTS_SCRIPT.replace("/opt/archfleet", str(tmp_path / "none")).replace(
        "/usr/local/bin/archfleet", str(tmp_path / "no-link")
    )
    found = _run_facts(script)
    assert (found.archfleet, found.archfleet_venv, found.archfleet_linked) == (None, False, False)


# --- planning ---------------------------------------------------------------------------------


def test_a_fresh_debian_host_gets_python_venv_then_archfleet(tmp_path: Path) -> None:
    inventory = fleet(tmp_path)
    assert planned(inventory, facts(apt_get=True)) == [
        "install-python-venv: install python3 python3-venv (apt-get): archfleet gets a "
        "virtualenv, the host has no python3",
        "install-merge-tool: install archfleet 0.2.0 into /opt/archfleet ("
        f"{URL}, sha256 abababababab…; dependencies from lock.txt with --require-hashes), "
        "/usr/local/bin/archfleet on PATH",
    ]
    # python3 without venv: only the venv package.
    change = plan_host(inventory, inventory.hosts[0], facts(apt_get=True, python3="3.11.2"))
    assert change.changes[0].arg("packages") == "python3-venv"
    # Ready: archfleet alone; the change carries what it installs.
    (install,) = plan_host(inventory, inventory.hosts[0], facts(**READY)).changes
    assert (install.kind, install.arg("version"), install.arg("sha256")) == (
        "install-merge-tool",
        "0.2.0",
        SHA,
    )


def test_a_host_without_venv_or_apt_get_is_refused_at_plan_time(tmp_path: Path) -> None:
    inventory = fleet(tmp_path)
    with pytest.raises(PlanError) as info:
        plan_host(inventory, inventory.hosts[0], facts(python3="3.12.1"))
    message = str(info.value)
    assert message.startswith("merge-1: archfleet needs python3 with its venv module")
    assert "python3 3.12.1 without venv" in message and "no apt-get" in message


def test_installed_and_pinned_is_no_change(tmp_path: Path) -> None:
    inventory = fleet(tmp_path)
    assert planned(inventory, facts(**INSTALLED)) == []


def test_another_version_is_an_upgrade_and_the_index_is_shown(tmp_path: Path) -> None:
    inventory = fleet(tmp_path, index_url="https://pypi.example.com/simple/")
    (change,) = planned(inventory, facts(**{**INSTALLED, "archfleet": "0.1.0"}))
    assert change.startswith("install-merge-tool: upgrade archfleet 0.1.0 -> 0.2.0 into ")
    assert "from https://pypi.example.com/simple/ with --require-hashes" in change


def test_another_wheel_of_the_same_version_or_a_broken_one_is_reinstalled(tmp_path: Path) -> None:
    inventory = fleet(tmp_path)
    (other,) = planned(inventory, facts(**{**INSTALLED, "archfleet_wheel_sha256": "cd" * 32}))
    assert other.startswith(
        "install-merge-tool: reinstall archfleet 0.2.0 (the inventory pins another wheel of "
        "it: sha256 abababababab…, installed from cdcdcdcdcdcd…)"
    )
    (broken,) = planned(inventory, facts(**{**INSTALLED, "archfleet": None}))
    assert "reinstall archfleet 0.2.0 (/opt/archfleet is there but does not run)" in broken


def test_only_a_missing_link_is_relinked(tmp_path: Path) -> None:
    inventory = fleet(tmp_path)
    assert planned(inventory, facts(**{**INSTALLED, "archfleet_linked": False})) == [
        "link-merge-tool: link /usr/local/bin/archfleet -> /opt/archfleet/bin/archfleet "
        "(archfleet on PATH)"
    ]


def test_a_local_wheel_is_shown_as_uploaded(tmp_path: Path) -> None:
    wheel = tmp_path / "archfleet-0.2.0-py3-none-any.whl"
    (change,) = planned(fleet(tmp_path, wheel=str(wheel)), facts(**READY))
    assert f"({wheel}, uploaded, sha256 abababababab…" in change


def test_roles_decide_builder_and_merge_tool(tmp_path: Path) -> None:
    """A merge-tool host gets no builder (a merge happens on the registry); a build host
    without the role gets no archfleet."""
    merge_only = fleet(tmp_path)
    kinds = [c.kind for c in plan_host(merge_only, merge_only.hosts[0], facts(**READY)).changes]
    assert kinds == ["install-merge-tool"]
    builder = fleet(tmp_path, roles=("jenkins-agent",))
    builder = replace(builder, jenkins=None)
    kinds = [c.kind for c in plan_host(builder, builder.hosts[0], facts(**READY)).changes]
    assert kinds == ["install-builder"]


# --- scripts ----------------------------------------------------------------------------------


HOSTILE = "$(touch${IFS}PWNED)`touch${IFS}PWNED2`'\"; touch PWNED3 #"


def _local(tmp_path: Path) -> dict[str, str]:
    """Where a local run of install_script puts things (instead of /opt, /usr/local/bin)."""
    return {
        "venv": str(tmp_path / "opt" / "archfleet"),
        "versions": str(tmp_path / "opt" / "archfleet-versions"),
        "link": str(tmp_path / "bin" / "archfleet"),
    }


def _run(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    temp = cwd / "temp"
    temp.mkdir(exist_ok=True)
    return subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "TMPDIR": str(temp)},
        timeout=120,
        check=False,
    )


def test_a_wheel_with_another_sha256_is_refused_before_pip_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """Hostile strings in every value that reaches the script (a path with shell syntax, an
    index URL with command substitutions) stay data: nothing runs, nothing is created."""
    upload_dir = tmp_path / f"up {HOSTILE}"
    upload_dir.mkdir()
    uploaded = upload_dir / "archfleet-0.2.0-py3-none-any.whl"
    uploaded.write_bytes(b"a wheel that is not the pinned one")
    pinned = tool(
        tmp_path,
        wheel=str(uploaded),
        index_url=f"https://127.0.0.1:9/{HOSTILE.replace(' ', '')}/",
        find_links="https://127.0.0.1:9/$(touch${IFS}PWNED4)/",
    )
    script = install_script(
        pinned, LOCK + "# it's $(touch PWNED5)\n", uploaded=str(uploaded), **_local(tmp_path)
    )
    done = _run(script, tmp_path)
    assert done.returncode == EXIT_SHA256, done.stderr
    actual = hashlib.sha256(uploaded.read_bytes()).hexdigest()
    assert f"has sha256 {actual}, expected {SHA}; not installed" in done.stderr
    assert not list(tmp_path.glob("PWNED*"))
    assert not (tmp_path / "opt").exists() and not (tmp_path / "bin").exists()
    assert list((tmp_path / "temp").iterdir()) == [], "the script's temp dir was left"


def test_what_is_not_ours_is_never_replaced(tmp_path: Path) -> None:
    paths = _local(tmp_path)
    Path(paths["venv"]).mkdir(parents=True)  # e.g. a venv somebody made by hand
    (Path(paths["venv"]) / "keep").write_text("mine")
    uploaded = tmp_path / "archfleet-0.2.0-py3-none-any.whl"
    uploaded.write_bytes(b"x")
    done = _run(
        install_script(tool(tmp_path, wheel=str(uploaded)), LOCK, uploaded=str(uploaded), **paths),
        tmp_path,
    )
    assert done.returncode == EXIT_NOT_OURS
    assert "exists and is not a link into" in done.stderr
    assert (Path(paths["venv"]) / "keep").read_text() == "mine"
    # The PATH link: a file somebody put there stays too.
    Path(paths["venv"]).joinpath("keep").unlink()
    Path(paths["venv"]).rmdir()
    Path(paths["link"]).parent.mkdir(parents=True)
    Path(paths["link"]).write_text("#!/bin/sh\n")
    refused = _run(link_script(venv=paths["venv"], link=paths["link"]), tmp_path)
    assert refused.returncode == EXIT_NOT_OURS and "is not a link to" in refused.stderr
    assert Path(paths["link"]).read_text() == "#!/bin/sh\n"


def test_one_install_at_a_time(tmp_path: Path) -> None:
    """Another run holds the lock (flock(2), as flock(1) takes it): this one stops before it
    makes a venv, and cleans up nothing of the other's."""
    paths = _local(tmp_path)
    versions = Path(paths["versions"])
    versions.mkdir(parents=True)
    (versions / "0.1.0.other").mkdir()  # the other run's venv under construction
    uploaded = tmp_path / "archfleet-0.2.0-py3-none-any.whl"
    uploaded.write_bytes(b"the pinned wheel")
    pinned = tool(
        tmp_path, wheel=str(uploaded), sha256=hashlib.sha256(b"the pinned wheel").hexdigest()
    )
    with (versions / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = _run(install_script(pinned, LOCK, uploaded=str(uploaded), **paths), tmp_path)
    assert done.returncode == EXIT_BUSY, done.stderr
    assert "another archfleet install is running" in done.stderr
    assert sorted(p.name for p in versions.iterdir()) == [".lock", "0.1.0.other"]


def test_the_link_is_made_and_swapped_atomically(tmp_path: Path) -> None:
    paths = _local(tmp_path)
    link = Path(paths["link"])
    for _ in range(2):  # a second run replaces the link with the same one
        done = _run(link_script(venv=paths["venv"], link=paths["link"]), tmp_path)
        assert done.returncode == 0, done.stderr
        assert str(link.readlink()) == f"{paths['venv']}/bin/archfleet"
    assert sorted(p.name for p in link.parent.iterdir()) == ["archfleet"]


@pytest.mark.parametrize(
    ("changes", "lock", "uploaded", "message"),
    [
        ({"wheel": URL.replace("https", "http")}, LOCK, "", "wheel URL must be https"),
        ({"index_url": "http://pypi.example.com/"}, LOCK, "", "index_url must be https"),
        ({"sha256": "AB" * 32}, LOCK, "", "64 lowercase hex digits"),
        ({"version": "0.2.1"}, LOCK, "", "is not a wheel of archfleet 0.2.1"),
        ({"version": "0.2.0; rm -rf /"}, LOCK, "", "is not a version"),
        ({}, "invoke>=2\n", "", "not pinned and hashed (line 1"),
        ({}, "invoke==2.2.1\n", "", "not pinned and hashed"),
        ({"wheel": "/w/archfleet-0.2.0-py3-none-any.whl"}, LOCK, "", "must be uploaded first"),
        ({"wheel": "/w/archfleet-0.2.0-py3-none-any.whl"}, LOCK, "rel/x.whl", "uploaded first"),
    ],
)
def test_the_script_builder_checks_again_what_becomes_shell(
    tmp_path: Path, changes: dict[str, str], lock: str, uploaded: str, message: str
) -> None:
    with pytest.raises(ValueError) as info:
        install_script(tool(tmp_path, **changes), lock, uploaded=uploaded)
    assert message in str(info.value)


def test_pip_runs_in_hash_checking_mode_with_wheels_only() -> None:
    script = install_script(
        ArchfleetSettings("0.2.0", URL, SHA, Path("lock.txt")), LOCK, uploaded=""
    )
    assert "--require-hashes --only-binary :all:" in script
    assert '-r "$work/requirements.txt" -r "$work/archfleet.txt"' in script
    # The wheel's own line carries its hash: pip checks it a second time.
    assert 'printf \'%s --hash=sha256:%s\\n\' "$work/$name" "$want"' in script
    # Downloads as gitlab-runner's: https only, redirects too.
    assert "curl -fsSL --proto =https --proto-redir =https" in script
    assert "wget -q --https-only" in script
    # The sha256 check comes before pip sees the file.
    assert script.index('[ "$got" = "$want" ]') < script.index("-m pip install")


def test_python_venv_script_uses_the_lock_aware_apt_get() -> None:
    script = install_python_script("python3 python3-venv")
    assert "apt_get() {" in script
    assert "apt_get install -y -qq --no-install-recommends python3 python3-venv" in script
    with pytest.raises(ValueError, match="expected one of python3-venv"):
        install_python_script("python3-venv; reboot")


class _NoSftp:
    def sftp(self) -> object:
        raise AssertionError("nothing may be uploaded")


def test_a_local_wheel_that_changed_since_loading_is_not_uploaded(tmp_path: Path) -> None:
    wheel = tmp_path / "archfleet-0.2.0-py3-none-any.whl"
    wheel.write_bytes(b"changed after the inventory was loaded")
    host = Host("merge-1", "10.0.0.5", ("merge-tool",), SshSettings())
    with pytest.raises(MergeToolError) as info:
        merge_tool.install(_NoSftp(), host, tool(tmp_path, wheel=str(wheel)), timeout=10)
    assert str(info.value).startswith(f"merge-1: {wheel} has sha256 ")
    assert f"the inventory pins {SHA}; not uploaded" in str(info.value)
