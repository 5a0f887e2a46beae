"""merge-manifest as teams use `buildx imagetools create`, on TWO real loopback registries
(Debian's docker-registry): the session's registry holds the per-arch images (`src`), a second
one is the target. Sources in another registry have their blobs copied (streamed,
digest-checked); --annotation puts OCI annotations on the index; --append adds platforms to
the index a tag holds. Credentials are per host: with both registries behind htpasswd, each
gets its own user, and the target's REGISTRY_USER never reaches the source host."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LabImages
from tests.support.cli import Run, archfleet
from tests.support.proxy import ReverseProxy, Rule, corrupt_body
from tests.support.registry_http import get_manifest, head_digest
from toolkit.lab.registry import LocalRegistry, start_registry, write_htpasswd
from toolkit.lab.skopeo import resolved_digest

pytestmark = pytest.mark.integration

SOURCE = "https://gitlab.example.com/team/app"


@pytest.fixture(scope="module")
def target_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    registry = start_registry(tmp_path_factory.mktemp("target-registry"))
    yield registry
    registry.stop()


def merge(target: str, *args: str, env: dict[str, str] | None = None) -> Run:
    return archfleet("merge-manifest", "--insecure", "--json", "--target", target, *args, env=env)


def index_of(registry: LocalRegistry, repository: str, tag: str) -> dict[str, object]:
    raw, media_type = get_manifest(registry.url, repository, tag)
    assert media_type.startswith("application/vnd.oci.image.index.v1+json"), media_type
    return dict(json.loads(raw))


def blob_bytes(lab_images: LabImages, digest: str) -> int:
    """Config + layer sizes of the image `digest` in the source registry (its manifest says)."""
    manifest = json.loads(get_manifest(lab_images.registry.url, "src", digest)[0])
    return int(manifest["config"]["size"]) + sum(int(layer["size"]) for layer in manifest["layers"])


def test_sources_in_another_registry_are_copied_and_a_rerun_copies_nothing(
    lab_images: LabImages, target_registry: LocalRegistry, unique_tag: str
) -> None:
    target = f"{target_registry.address}/app:{unique_tag}"
    images = [lab_images.amd64, lab_images.arm64]
    sources = [a for image in images for a in ("--source", lab_images.ref(image))]
    first = merge(target, *sources)
    assert first.code == 0, first.stderr
    result = first.json()
    assert result["blobsCopied"] >= 2
    assert result["bytesCopied"] == sum(blob_bytes(lab_images, i.digest) for i in images)
    assert sorted(result["manifestsCopied"]) == sorted(i.digest for i in images)
    # A real client pulls each arch from the target registry alone.
    assert resolved_digest(target, "linux/amd64") == lab_images.amd64.digest
    assert resolved_digest(target, "linux/arm64") == lab_images.arm64.digest
    assert head_digest(target_registry.url, "app", f"{unique_tag}-arm64") == lab_images.arm64.digest
    again = merge(target, *sources)
    assert again.code == 0, again.stderr
    assert again.json()["changed"] is False and again.json()["blobsCopied"] == 0


def test_a_corrupted_blob_from_the_other_registry_is_refused_before_any_write(
    lab_images: LabImages, target_registry: LocalRegistry, unique_tag: str
) -> None:
    """The source registry is reached through the fault proxy (tests/support/proxy.py), which
    flips a bit in every blob body: the copy checks the digest before uploading anything."""
    with ReverseProxy(lab_images.registry.address) as proxy:
        # Configs are read with the sources; layers only by the copy.
        layer = json.loads(get_manifest(lab_images.registry.url, "src", lab_images.amd64.digest)[0])
        layer_digest = layer["layers"][0]["digest"]
        proxy.set_rules([Rule("GET", rf"/blobs/{layer_digest}$", 50, corrupt_body())])
        # A repository of its own: one that has the layer already would not need it copied.
        run = merge(
            f"{target_registry.address}/corrupt:{unique_tag}",
            "--source",
            f"{proxy.address}/src@{lab_images.amd64.digest}",
        )
    assert run.code == 1
    assert "does not match its digest" in run.stderr and "Traceback" not in run.stderr
    assert layer_digest in run.stderr
    assert head_digest(target_registry.url, "corrupt", unique_tag) is None
    assert head_digest(target_registry.url, "corrupt", f"{unique_tag}-amd64") is None


def test_annotations_go_on_the_index_and_bad_keys_write_nothing(
    lab_images: LabImages, target_registry: LocalRegistry, unique_tag: str
) -> None:
    target = f"{target_registry.address}/app:{unique_tag}"
    # Docker-format children: without annotations this would be a Docker manifest list.
    sources = ["--source", lab_images.ref(lab_images.docker_amd64)]
    run = merge(
        target,
        *sources,
        "--annotation",
        f"org.opencontainers.image.source={SOURCE}",
        "--annotation",
        "org.opencontainers.image.revision=0a1b2c3",
        "--annotation",
        "org.opencontainers.image.created=2026-12-03T02:30:00Z",
    )
    assert run.code == 0, run.stderr
    assert index_of(target_registry, "app", unique_tag)["annotations"] == {
        "org.opencontainers.image.source": SOURCE,
        "org.opencontainers.image.revision": "0a1b2c3",
        "org.opencontainers.image.created": "2026-12-03T02:30:00Z",
    }
    bad = merge(f"{target}-bad", *sources, "--annotation", "org.opencontainers.image.sauce=x")
    assert bad.code == 1 and "reserved for keys the OCI specifications define" in bad.stderr
    assert head_digest(target_registry.url, "app", f"{unique_tag}-bad") is None


def test_append_adds_platforms_keeps_and_reverifies_the_rest(
    lab_images: LabImages, target_registry: LocalRegistry, unique_tag: str
) -> None:
    target = f"{target_registry.address}/app:{unique_tag}"
    first = merge(
        target,
        "--source",
        lab_images.ref(lab_images.amd64),
        "--annotation",
        f"org.opencontainers.image.source={SOURCE}",
    )
    assert first.code == 0, first.stderr
    mark = target_registry.mark()
    # The lean entry, as a CI job calls it: the same flags.
    added = subprocess.run(
        [
            "python",
            "-m",
            "toolkit.registry",
            "merge-manifest",
            "--insecure",
            "--json",
            "--append",
            "--target",
            target,
            "--source",
            lab_images.ref(lab_images.arm64),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    index = index_of(target_registry, "app", unique_tag)
    assert [m["digest"] for m in index["manifests"]] == [  # type: ignore[index, union-attr]
        lab_images.amd64.digest,
        lab_images.arm64.digest,
    ]
    # The kept entry's annotations on the index survive; its child was read again (manifest
    # and config) in the target registry: re-verified, not copied blind.
    assert index["annotations"] == {"org.opencontainers.image.source": SOURCE}
    reads = [r.path for r in target_registry.requests_since(mark) if r.method == "GET"]
    assert f"/v2/app/manifests/{lab_images.amd64.digest}" in reads
    amd64_config = json.loads(
        get_manifest(lab_images.registry.url, "src", lab_images.amd64.digest)[0]
    )
    assert f"/v2/app/blobs/{amd64_config['config']['digest']}" in reads
    assert resolved_digest(target, "linux/arm64") == lab_images.arm64.digest
    assert resolved_digest(target, "linux/amd64") == lab_images.amd64.digest

    # The same append again: nothing to do.
    again = merge(target, "--append", "--source", lab_images.ref(lab_images.arm64))
    assert again.code == 0 and again.json()["changed"] is False, again.stderr
    # Another image for a platform the index has: refused, unless --replace.
    other = ["--append", "--source", lab_images.ref(lab_images.docker_amd64)]
    refused = merge(target, *other)
    assert refused.code == 1
    assert "already has linux/amd64" in refused.stderr and "--replace" in refused.stderr
    assert head_digest(target_registry.url, "app", unique_tag) == json.loads(added.stdout)["digest"]
    replaced = merge(target, *other, "--replace")
    assert replaced.code == 0, replaced.stderr
    index = index_of(target_registry, "app", unique_tag)
    assert [m["digest"] for m in index["manifests"]] == [  # type: ignore[index, union-attr]
        lab_images.docker_amd64.digest,
        lab_images.arm64.digest,
    ]
    assert (
        head_digest(target_registry.url, "app", f"{unique_tag}-amd64")
        == lab_images.docker_amd64.digest
    )


# --- credentials per registry host -------------------------------------------------------


def docker_config(directory: Path, host: str, user: str, password: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return directory


@pytest.fixture(scope="module")
def locked_pair(
    tmp_path_factory: pytest.TempPathFactory, lab_images: LabImages
) -> Iterator[tuple[LocalRegistry, LocalRegistry, str]]:
    """Two htpasswd registries with different users; the source one holds the amd64 image
    (copied there by skopeo, a third-party client). Yields (source, target, its digest)."""
    work = tmp_path_factory.mktemp("locked")
    source = start_registry(
        work / "source", htpasswd=write_htpasswd(work / "source.htpasswd", {"src-user": "src-pw"})
    )
    target = start_registry(
        work / "target", htpasswd=write_htpasswd(work / "target.htpasswd", {"dst-user": "dst-pw"})
    )
    digest_file = work / "digest"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--dest-creds",
            "src-user:src-pw",
            "--digestfile",
            str(digest_file),
            f"docker://{lab_images.ref(lab_images.amd64)}",
            f"docker://{source.address}/src:amd64",
        ],
        check=True,
        capture_output=True,
    )
    yield source, target, digest_file.read_text().strip()
    source.stop()
    target.stop()


def test_each_registry_gets_its_own_credentials(
    locked_pair: tuple[LocalRegistry, LocalRegistry, str], tmp_path: Path, unique_tag: str
) -> None:
    source, target, digest = locked_pair
    ref = f"{target.address}/app:{unique_tag}"
    env = {"REGISTRY_USER": "dst-user", "REGISTRY_PASSWORD": "dst-pw"}
    config = docker_config(tmp_path / "docker", source.address, "src-user", "src-pw")
    run = merge(
        ref, "--source", f"{source.address}/src@{digest}", env={**env, "DOCKER_CONFIG": str(config)}
    )
    assert run.code == 0, run.stderr
    assert run.json()["blobsCopied"] >= 2
    # Without an entry for the source host, the source is read anonymously and refused: the
    # target's REGISTRY_USER was not offered to it (else: "user 'dst-user' ... rejected").
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    anonymous = merge(
        f"{ref}-2",
        "--source",
        f"{source.address}/src@{digest}",
        env={**env, "DOCKER_CONFIG": str(empty)},
    )
    assert anonymous.code == 1
    assert "needs credentials" in anonymous.stderr, anonymous.stderr
    assert "dst-user" not in anonymous.stderr
