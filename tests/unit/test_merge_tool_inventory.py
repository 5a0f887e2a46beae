"""The inventory's `archfleet:` section and the `merge-tool` role: pinned by default (a wheel
with its sha256, a lock whose every line is pinned and hashed, https only), and every mistake
reported with the file, the line, the key and what was expected."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from toolkit.fleet.pins import check_lock, wheel_version
from toolkit.inventory import InventoryError, load, shipped_lock

SHA = "a" * 64
LOCK_LINE = f"invoke==2.2.1 \\\n    --hash=sha256:{'b' * 64}\n"


def write(tmp_path: Path, archfleet: str, roles: str = "[merge-tool]") -> Path:
    path = tmp_path / "fleet.yml"
    path.write_text(
        textwrap.dedent(f"""\
        hosts:
          - {{name: m, address: 10.0.0.5, roles: {roles}}}
        """)
        + textwrap.dedent(archfleet)
    )
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load(path)
    return info.value.problems


def test_a_url_wheel_loads_with_the_shipped_lock_by_default(tmp_path: Path) -> None:
    inventory = load(
        write(
            tmp_path,
            f"""\
            archfleet:
              version: "0.1.0"
              wheel: https://files.example.com/af/archfleet-0.1.0-py3-none-any.whl
              sha256: {SHA}
            """,
        )
    )
    tool = inventory.archfleet
    assert tool is not None and inventory.hosts[0].roles == ("merge-tool",)
    assert tool.wheel_url == "https://files.example.com/af/archfleet-0.1.0-py3-none-any.whl"
    assert tool.wheel_path is None and tool.wheel_name == "archfleet-0.1.0-py3-none-any.whl"
    assert tool.requirements == shipped_lock() and tool.requirements.is_file()
    assert (tool.index_url, tool.find_links) == (None, None)


def test_local_wheel_and_lock_are_relative_to_the_inventory(tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    wheel = tmp_path / "dist" / "archfleet-0.2.0rc1-py3-none-any.whl"
    wheel.write_bytes(b"not really a zip, but pinned")
    (tmp_path / "lock.txt").write_text(LOCK_LINE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkey = pytest.MonkeyPatch()
    monkey.chdir(elsewhere)  # not the inventory's directory
    try:
        inventory = load(
            write(
                tmp_path,
                f"""\
                archfleet:
                  version: 0.2.0rc1
                  wheel: dist/archfleet-0.2.0rc1-py3-none-any.whl
                  sha256: {hashlib.sha256(wheel.read_bytes()).hexdigest()}
                  requirements: lock.txt
                  index_url: https://pypi.example.com/simple/
                  find_links: https://files.example.com/wheels/
                """,
            )
        )
    finally:
        monkey.undo()
    tool = inventory.archfleet
    assert tool is not None
    assert tool.wheel_path == wheel and tool.wheel_url is None
    assert tool.requirements == tmp_path / "lock.txt"
    assert tool.index_url == "https://pypi.example.com/simple/"


def test_the_role_needs_the_section(tmp_path: Path) -> None:
    assert problems(write(tmp_path, "")) == [
        f"{tmp_path}/fleet.yml:2: hosts[0].roles: role 'merge-tool' needs a top-level "
        "'archfleet:' section"
    ]


def test_version_wheel_and_sha256_are_required(tmp_path: Path) -> None:
    found = problems(write(tmp_path, "archfleet: {version: '0.1.0'}\n"))
    assert found == [
        f"{tmp_path}/fleet.yml:3: archfleet: missing 'wheel'",
        f"{tmp_path}/fleet.yml:3: archfleet: missing 'sha256'",
    ] or found == [
        f"{tmp_path}/fleet.yml:3: archfleet: missing 'sha256'",
        f"{tmp_path}/fleet.yml:3: archfleet: missing 'wheel'",
    ]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("sha256", "ABC", "archfleet.sha256: 'ABC' does not match ^[a-f0-9]{64}$"),
        ("version", "latest", "archfleet.version: 'latest' does not match"),
        ("version", "'0.2'", "'archfleet-0.1.0-py3-none-any.whl' is archfleet 0.1.0, but "),
        ("version", "0.2", "archfleet.version: expected a string; got 0.2"),
        ("wheel", "'http://f.example.com/archfleet-0.1.0-py3-none-any.whl'", "expected an https"),
        (
            "wheel",
            "'https://u:secret@f.example.com/archfleet-0.1.0-py3-none-any.whl'",
            "holds credentials: expected a URL without user:password@",
        ),
        (
            "wheel",
            "'https://f.example.com/archfleet-0.1.0-py3-none-any.whl?X-Amz-Signature=s'",
            "has a query or fragment",
        ),
        (
            "wheel",
            "https://f.example.com/other-0.1.0-py3-none-any.whl",
            "'other-0.1.0-py3-none-any.whl' is not a wheel of archfleet: expected "
            "archfleet-0.1.0-….whl",
        ),
        (
            "wheel",
            "https://f.example.com/archfleet-0.1.0.tar.gz",
            "is not a wheel of archfleet",
        ),
        ("index_url", "http://pypi.example.com/simple/", "archfleet.index_url: 'http://pypi"),
        (
            "find_links",
            "https://u:pa55@files.example.com/",
            "archfleet.find_links: 'https://…@files.example.com/' holds credentials",
        ),
    ],
)
def test_bad_values_name_the_key_and_what_was_expected(
    tmp_path: Path, key: str, value: str, expected: str
) -> None:
    fields = {
        "version": "'0.1.0'",
        "wheel": "https://f.example.com/archfleet-0.1.0-py3-none-any.whl",
        "sha256": SHA,
    }
    fields[key] = value
    body = "".join(f"  {k}: {v}\n" for k, v in fields.items())
    (problem,) = problems(write(tmp_path, "archfleet:\n" + body))
    assert problem.startswith(f"{tmp_path}/fleet.yml:"), problem
    assert expected in problem, problem
    assert "secret" not in problem and "pa55" not in problem


def test_a_local_wheel_must_exist_and_have_the_pinned_sha256(tmp_path: Path) -> None:
    section = f"""\
        archfleet:
          version: "0.1.0"
          wheel: archfleet-0.1.0-py3-none-any.whl
          sha256: {SHA}
        """
    path = write(tmp_path, section)
    wheel = tmp_path / "archfleet-0.1.0-py3-none-any.whl"
    (missing,) = problems(path)
    assert missing.startswith(f"{path}:5: archfleet.wheel: cannot read the wheel {wheel} (")
    assert "expected an https:// URL or an existing file" in missing
    wheel.write_bytes(b"changed")
    actual = hashlib.sha256(b"changed").hexdigest()
    assert problems(path) == [
        f"{path}:6: archfleet.sha256: {wheel} has sha256 {actual}, not {SHA}: expected the "
        "sha256 of the wheel (sha256sum)"
    ]


def test_a_lock_with_an_unhashed_or_unpinned_line_is_refused_with_both_files(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text(LOCK_LINE + "# comment\nurllib3>=2\nrequests==2.32.0\n")
    path = write(
        tmp_path,
        f"""\
        archfleet:
          version: "0.1.0"
          wheel: https://f.example.com/archfleet-0.1.0-py3-none-any.whl
          sha256: {SHA}
          requirements: lock.txt
        """,
    )
    assert problems(path) == [
        f"{path}:7: archfleet.requirements: {lock}:4: 'urllib3>=2' is not pinned: expected "
        "name==version --hash=sha256:…",
        f"{path}:7: archfleet.requirements: {lock}:5: requests==2.32.0 has no hash: expected "
        "--hash=sha256:<64 hex digits> (pip's hash-checking mode)",
    ]
    lock.unlink()
    (unreadable,) = problems(path)
    assert unreadable.startswith(f"{path}:7: archfleet.requirements: cannot read the lock {lock}")


def test_the_shipped_lock_is_pinned_and_hashed() -> None:
    """What provisioning installs by default: every line name==version with sha256 hashes."""
    check = check_lock(shipped_lock().read_text())
    assert check.problems == ()
    assert {r.name.lower() for r in check.requirements} >= {"invoke", "urllib3"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("--index-url https://evil.example.com/simple\n", "option --index-url is not allowed"),
        ("--extra-index-url=https://x\n", "option --extra-index-url is not allowed"),
        ("-r other.txt\n", "option -r is not allowed"),
        ("-e git+https://x/y.git#egg=y\n", "option -e is not allowed"),
        ("x==1.* --hash=sha256:" + "c" * 64 + "\n", "'x==1.*' is not pinned"),
        ("x==1 --hash=md5:" + "c" * 32 + "\n", "x==1 has md5:"),
        ("x==1 --hash=sha256:abc\n", "x==1 has sha256:abc…"),
        ("x==1 --hash=sha256:" + "c" * 64 + " --no-binary :all:\n", "unexpected '--no-binary"),
        ("# only comments\n\n", "no requirement in the lock"),
    ],
)
def test_lock_lines_pip_would_take_but_we_must_not(text: str, problem: str) -> None:
    (found,) = check_lock(text).problems
    assert found[0] == 1 and problem in found[1], found


def test_lock_continuations_markers_and_comments_are_read_as_pip_reads_them() -> None:
    text = (
        "# header\n"
        "Foo.Bar[extra]==1.0.post1 ; python_version >= '3.11' \\\n"
        "    --hash=sha256:" + "d" * 64 + " \\\n"
        "    --hash=sha256:" + "e" * 64 + "  # trailing comment\n"
        "\n"
        "baz==2 --hash sha256:" + "f" * 64 + "\n"
    )
    check = check_lock(text)
    assert check.problems == ()
    assert [(r.line, r.name, r.version) for r in check.requirements] == [
        (2, "Foo.Bar", "1.0.post1"),
        (6, "baz", "2"),
    ]


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("archfleet-0.1.0-py3-none-any.whl", "0.1.0"),
        ("archfleet-0.1.0.post1-py3-none-any.whl", "0.1.0.post1"),
        ("archfleet-1.2.0rc1-2-py3-none-any.whl", "1.2.0rc1"),  # a build tag
        ("Archfleet-0.1.0-py3-none-any.whl", "0.1.0"),
        ("archfleet-0.1.0.tar.gz", None),
        ("archfleet_tools-0.1.0-py3-none-any.whl", None),
        ("archfleet-0.1.0-py3-none-any.whl.asc", None),
    ],
)
def test_wheel_file_names(name: str, version: str | None) -> None:
    assert wheel_version(name, "archfleet") == version
