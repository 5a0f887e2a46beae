"""publish-templates against a local FAKE of the GitLab REST API (tests/support/gitlab_fake.py:
projects with their registry path and description, repository tree/files, commits with text
and base64 actions, branches, tags, releases), through python-gitlab as in production. There is
no GitLab server on these machines.

The wheel is archfleet's own, built from this checkout (tests/support/wheel.py), as a user
passes it with --wheel. The release is never created here: the tag's pipeline does that (the
project pipeline runs in tests/integration/test_component_project.py); a test plays that
pipeline by putting a release into the fake.
"""

from __future__ import annotations

import base64
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.cli import Run, archfleet
from tests.support.gitlab_fake import GitLabFake
from tests.support.wheel import build_wheel
from toolkit import __version__
from toolkit.ci_templates import default_root, load_rendered

pytestmark = pytest.mark.integration

TOKEN = "glpat-fake-token-4d2a9c"
PROJECT = "Platform/archfleet-ci"
VERSION = __version__
TEXT_FILES = {
    "README.md",
    "LICENSE",
    "templates/multiarch.yml",
    "include/multiarch.yml",
    ".gitlab-ci.yml",
    "image/Containerfile",
    "image/requirements.txt",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def fake() -> Iterator[GitLabFake]:
    with GitLabFake(token=TOKEN, project=PROJECT) as server:
        yield server


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of ci-templates/ a test may change."""
    copy = tmp_path / "ci-templates"
    shutil.copytree(default_root(), copy)
    return copy


def publish(
    fake: GitLabFake, source: Path, wheel: Path | None, *args: str, token: str = TOKEN
) -> Run:
    return archfleet(
        "publish-templates",
        "--project",
        PROJECT,
        "--url",
        fake.url,
        "--allow-http",  # the fake serves plain http on loopback
        "--source",
        str(source),
        *(("--wheel", str(wheel)) if wheel else ()),
        *args,
        env={"GITLAB_TOKEN": token},
        unset=("CI_SERVER_URL",),
    )


def non_get(fake: GitLabFake, mark: int = 0) -> list[str]:
    return [f"{r.method} {r.path}" for r in fake.since(mark) if r.method != "GET"]


def test_first_publish_is_one_commit_and_a_tag(fake: GitLabFake, source: Path, wheel: Path) -> None:
    fake.seed({"LICENSE": "Apache-2.0\n", "templates/retired.yml": "old: {}\n"})
    run = publish(fake, source, wheel, "--version", VERSION)
    assert run.code == 0, run.stderr
    host = fake.url.split("//", 1)[1]
    assert run.stdout == f"include:\n  - component: {host}/{PROJECT}/multiarch@{VERSION}\n"
    # No release through the API: the tag's pipeline makes it (the catalog requires that).
    assert [(w.method, w.path.rsplit("/", 2)[-2:]) for w in fake.writes()] == [
        ("POST", ["repository", "commits"]),
        ("POST", ["repository", "tags"]),
    ]
    assert fake.repo.releases == {}
    assert f"watch {fake.url}/{PROJECT}/-/pipelines?ref={VERSION}" in " ".join(run.stderr.split())
    commit = fake.writes()[0].body
    actions = {a["file_path"]: a for a in commit["actions"]}
    wheel_path = f"image/{wheel.name}"
    assert set(actions) == TEXT_FILES | {wheel_path, "templates/retired.yml"}
    assert actions["templates/retired.yml"]["action"] == "delete"
    assert actions["templates/retired.yml"]["last_commit_id"]  # refused if the file moved on
    # The wheel travels base64-encoded, the text files as text.
    assert actions[wheel_path]["encoding"] == "base64"
    assert base64.b64decode(actions[wheel_path]["content"]) == wheel.read_bytes()
    assert all("encoding" not in actions[p] for p in TEXT_FILES)

    files = fake.raw_files_at(VERSION)
    assert set(files) == TEXT_FILES | {wheel_path, "LICENSE"}  # files we do not manage stay
    assert files[wheel_path] == wheel.read_bytes()
    for relative in ("image/Containerfile", "image/requirements.txt"):
        assert files[relative] == (source / relative).read_bytes()
    tool_image = f"registry.gitlab.fake:5050/{PROJECT.lower()}/archfleet:{VERSION}"
    component = files["templates/multiarch.yml"].decode()
    spec = yaml.safe_load(component.split("\n---\n", 1)[0])
    assert spec["spec"]["inputs"]["archfleet_image"]["default"] == tool_image
    [include_variant] = load_rendered(files["include/multiarch.yml"].decode())
    assert include_variant["variables"]["ARCHFLEET_MERGE_IMAGE"] == tool_image
    pipeline = yaml.safe_load(files[".gitlab-ci.yml"])
    assert pipeline["variables"]["ARCHFLEET_WHEEL"] == wheel_path
    assert pipeline["include"][0]["inputs"]["archfleet_install"].startswith(f"{wheel_path} --hash")
    assert fake.writes()[1].body["ref"] == fake.repo.branches["main"]
    assert TOKEN not in run.stdout + run.stderr


def test_publishing_the_same_version_again_changes_nothing(
    fake: GitLabFake, source: Path, wheel: Path
) -> None:
    assert publish(fake, source, wheel, "--version", VERSION).code == 0
    mark = fake.mark()
    again = publish(fake, source, wheel, "--version", VERSION, "--json")
    assert again.code == 0, again.stderr
    result = again.json()
    assert result["changed"] is False and result["actions"] == [] and not result["tagCreated"]
    assert result["releaseExists"] is False
    assert "does not exist yet" in result["nextSteps"][0]
    assert result["pipelinesUrl"] == f"{fake.url}/{PROJECT}/-/pipelines?ref={VERSION}"
    assert non_get(fake, mark) == []
    # The tag pipeline made the release: reported, still nothing written.
    fake.repo.releases[VERSION] = {"tag_name": VERSION}
    mark = fake.mark()
    released = publish(fake, source, wheel, "--version", VERSION, "--json")
    assert released.json()["nextSteps"] == [
        f"release {VERSION} exists: {fake.url}/{PROJECT}/-/releases/{VERSION}"
    ]
    assert non_get(fake, mark) == []


def test_other_content_under_an_existing_version_is_refused(
    fake: GitLabFake, source: Path, wheel: Path, tmp_path: Path
) -> None:
    assert publish(fake, source, wheel, "--version", VERSION).code == 0
    readme = source / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\nOne more line.\n")
    mark = fake.mark()
    refused = publish(fake, source, wheel, "--version", VERSION)
    assert refused.code == 1
    assert f"version {VERSION} is already tagged" in refused.stderr
    assert "README.md (update)" in refused.stderr and "new version" in refused.stderr
    assert "Traceback" not in refused.stderr
    # A rebuilt wheel (other bytes) is another content too.
    shutil.copytree(default_root(), tmp_path / "clean")
    rebuilt = tmp_path / "rebuilt" / wheel.name
    rebuilt.parent.mkdir()
    rebuilt.write_bytes(wheel.read_bytes() + b"\0")  # zip readers ignore trailing bytes
    other_wheel = publish(fake, tmp_path / "clean", rebuilt, "--version", VERSION)
    assert other_wheel.code == 1
    assert f"image/{wheel.name} (update)" in other_wheel.stderr
    assert non_get(fake, mark) == []


def test_dry_run_reads_and_writes_nothing(fake: GitLabFake, source: Path, wheel: Path) -> None:
    fake.description = ""
    run = publish(fake, source, wheel, "--version", VERSION, "--dry-run", "--json")
    assert run.code == 0, run.stderr
    result = run.json()
    assert result["dryRun"] is True and result["tagCreated"] is True
    assert {a["path"] for a in result["actions"]} == TEXT_FILES | {f"image/{wheel.name}"}
    assert "would start" in result["nextSteps"][0]
    (warning,) = result["warnings"]
    assert "has no description" in warning and "CI/CD Catalog" in warning
    assert fake.writes() == [] and fake.repo.tags == {}


def test_errors_name_the_problem_never_the_token(
    fake: GitLabFake, source: Path, wheel: Path
) -> None:
    refused = publish(fake, source, wheel, "--version", VERSION, token="glpat-wrong-7781")
    assert refused.code == 1
    assert "the token was refused (401)" in refused.stderr
    assert "glpat-wrong-7781" not in refused.stdout + refused.stderr
    bad_version = publish(fake, source, wheel, "--version", "v1.0")
    assert bad_version.code == 1 and "expected a semantic version" in bad_version.stderr
    other = publish(fake, source, wheel, "--version", "9.8.7")
    assert other.code == 1
    assert f"--version 9.8.7: this is archfleet {VERSION}" in other.stderr
    no_wheel = publish(fake, source, None, "--version", VERSION)
    assert no_wheel.code == 1
    assert "--wheel is required" in no_wheel.stderr and "pip wheel --no-deps" in no_wheel.stderr
    no_token = publish(fake, source, wheel, "--version", VERSION, token="")
    assert no_token.code == 1 and "$GITLAB_TOKEN is empty" in no_token.stderr
    fake.container_registry_access_level = "disabled"
    off = publish(fake, source, wheel, "--version", VERSION)
    assert off.code == 1 and "has its container registry turned off" in off.stderr
    fake.container_registry_access_level = "enabled"
    fake.registry_host = None  # an instance without a registry: no image prefix in the API
    none = publish(fake, source, wheel, "--version", VERSION)
    assert none.code == 1 and "no container_registry_image_prefix" in none.stderr
    fake.registry_host = "registry.gitlab.fake:5050"
    (source / "templates" / "multiarch.yml").write_text("edited by hand\n")
    stale = publish(fake, source, wheel, "--version", VERSION)
    assert stale.code == 1 and "differ from the rendering" in stale.stderr
    for run in (bad_version, other, no_wheel, no_token, off, none, stale):
        assert "Traceback" not in run.stderr
    assert fake.writes() == []


def test_the_fake_refuses_an_unknown_encoding_as_gitlab_does(fake: GitLabFake) -> None:
    """lib/api/commits.rb: `encoding` takes `text` or `base64` (Grape's 400 otherwise)."""
    answer = requests.post(
        f"{fake.url}/api/v4/projects/42/repository/commits",
        headers={"PRIVATE-TOKEN": TOKEN},
        json={
            "branch": "main",
            "commit_message": "m",
            "actions": [{"action": "create", "file_path": "a", "content": "x", "encoding": "gzip"}],
        },
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.json() == {"error": "actions[0][encoding] does not have a valid value"}
    assert fake.repo.commits == {}


def test_the_server_must_be_named_https_and_reachable(source: Path, wheel: Path) -> None:
    """No default server, no plain http unless told, and an unreachable GitLab is one line in
    well under a minute (issue 17: a 1 m 43 s retry loop, then an 80-line traceback)."""
    base = ("publish-templates", "--project", PROJECT, "--version", VERSION)
    rest = ("--wheel", str(wheel), "--source", str(source), "--dry-run")
    env = {"GITLAB_TOKEN": TOKEN}
    unnamed = archfleet(*base, *rest, env=env, unset=("CI_SERVER_URL",))
    assert unnamed.code == 1 and "no GitLab URL: pass --url" in unnamed.stderr
    from_ci = archfleet(*base, *rest, env={**env, "CI_SERVER_URL": "http://127.0.0.1:9"})
    assert from_ci.code == 1 and "plain http would send the token unencrypted" in from_ci.stderr
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        refused = archfleet(*base, "--url", f"https://127.0.0.1:{port}", *rest, env=env)
    assert refused.code == 1
    assert refused.stderr.strip() == (
        f"error: GitLab at https://127.0.0.1:{port} is unreachable: [Errno 111] Connection refused"
    )
    with_credentials = archfleet(*base, "--url", "https://u:p@gitlab.example.com", *rest, env=env)
    assert with_credentials.code == 1 and "no credentials" in with_credentials.stderr
    for run in (unnamed, from_ci, refused, with_credentials):
        assert "Traceback" not in run.stderr and TOKEN not in run.stderr


def test_the_client_stays_on_its_server() -> None:
    from toolkit.publish.gitlab_templates import connect

    client = connect("https://gitlab.example.com", TOKEN)
    # python-gitlab follows `Link: next` only on the configured base URL, never retries an
    # unreachable server in a back-off loop, and bounds each request.
    assert client.keep_base_url is True
    assert client.retry_transient_errors is False
    assert client.timeout == 10
