"""merge-manifest's --annotation, --append and --replace: the pure parts (annotations.py, the
append planning in merge.py) and the agreement of the three places that declare the flags
(flags.py help, the Invoke task, the lean argparse entry). No registry here."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest

from tests.unit.test_merge_plan import TARGET, attestation, digest, single
from toolkit.registry.__main__ import build_parser
from toolkit.registry.annotations import parse_annotations
from toolkit.registry.flags import MERGE_HELP
from toolkit.registry.manifest import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX
from toolkit.registry.merge import MergeError, ResolvedSource, plan_merge
from toolkit.tasks.manifest import merge_manifest

# --- annotations (OCI image-spec annotations.md) -----------------------------------------


def test_oci_keys_and_namespaced_keys_are_kept_in_order() -> None:
    parsed = parse_annotations(
        [
            "org.opencontainers.image.source=https://gitlab.example.com/team/app",
            "index:org.opencontainers.image.revision=0a1b2c3",
            "org.opencontainers.image.created=2026-12-03T02:30:00Z",
            "com.example.empty=",
        ]
    )
    assert parsed.values == (
        ("org.opencontainers.image.source", "https://gitlab.example.com/team/app"),
        ("org.opencontainers.image.revision", "0a1b2c3"),
        ("org.opencontainers.image.created", "2026-12-03T02:30:00Z"),
        ("com.example.empty", ""),
    )
    assert parsed.warnings == ()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("novalue", "expected KEY=VALUE"),
        ("=x", "non-empty string"),
        ("org.opencontainers.image.sources=x", "reserved for keys the OCI specifications define"),
        ("org.opencontainers.foo=x", "reserved"),
        ("org.opencontainers.image.created=yesterday", "RFC 3339"),
        ("org.opencontainers.image.created=2026-13-01T00:00:00Z", "RFC 3339"),
        ("org.opencontainers.image.ref.name=v1", "image layout's index.json"),
        ("org.opencontainers.image.base.digest=sha256:abc", "digest"),
        ("manifest:com.example.k=v", "only index annotations"),
    ],
)
def test_bad_annotations_are_refused_naming_the_flag(text: str, fragment: str) -> None:
    with pytest.raises(MergeError) as info:
        parse_annotations([text])
    assert f"--annotation {text!r}" in str(info.value)
    assert fragment in str(info.value)


def test_a_key_given_twice_is_refused_and_an_unnamespaced_key_warned() -> None:
    with pytest.raises(MergeError, match="given twice"):
        parse_annotations(["com.example.a=1", "index:com.example.a=2"])
    assert "reverse domain notation" in parse_annotations(["team=x"]).warnings[0]


def test_annotations_go_on_the_index_and_make_it_oci() -> None:
    sources = [
        single("@" + digest("a"), "a", "linux/amd64", DOCKER_MANIFEST),
        single("@" + digest("b"), "b", "linux/arm64", DOCKER_MANIFEST),
    ]
    assert plan_merge([TARGET], sources).media_type == DOCKER_LIST
    plan = plan_merge([TARGET], sources, annotations=(("com.example.k", "v"),))
    assert plan.media_type == OCI_INDEX
    assert json.loads(plan.index)["annotations"] == {"com.example.k": "v"}


# --- append ------------------------------------------------------------------------------


def base_of(*pairs: tuple[str, str]) -> ResolvedSource:
    """The index the target holds, as a resolved source with one image per (char, platform)."""
    parts = [single("@" + digest(c), c, p) for c, p in pairs]
    images = tuple(i for part in parts for i in part.images)
    return ResolvedSource(parts[0].spec, digest("f"), OCI_INDEX, images)


def platforms_of(plan_index: bytes) -> list[tuple[str, str]]:
    return [
        (m["digest"][-1], f"{m['platform']['os']}/{m['platform']['architecture']}")
        for m in json.loads(plan_index)["manifests"]
    ]


def test_append_keeps_the_old_entries_first_and_adds_new_platforms() -> None:
    base = base_of(("a", "linux/amd64"))
    plan = plan_merge([TARGET], [single("@" + digest("b"), "b", "linux/arm64")], base=base)
    assert platforms_of(plan.index) == [("a", "linux/amd64"), ("b", "linux/arm64")]


def test_append_of_the_same_image_again_changes_nothing() -> None:
    base = base_of(("a", "linux/amd64"), ("b", "linux/arm64"))
    again = plan_merge([TARGET], [single("@" + digest("b"), "b", "linux/arm64")], base=base)
    plain = plan_merge(
        [TARGET],
        [
            single("@" + digest("a"), "a", "linux/amd64"),
            single("@" + digest("b"), "b", "linux/arm64"),
        ],
    )
    assert again.digest == plain.digest


def test_append_of_another_image_for_a_held_platform_needs_replace() -> None:
    base = base_of(("a", "linux/amd64"), ("b", "linux/arm64"), ("d", "linux/s390x"))
    newer = single("@" + digest("e"), "e", "linux/arm64")
    with pytest.raises(MergeError) as info:
        plan_merge([TARGET], [newer], base=base)
    assert "already has linux/arm64" in str(info.value) and "--replace" in str(info.value)
    plan = plan_merge([TARGET], [newer], base=base, replace=True)
    # The new image takes the old entry's place.
    assert platforms_of(plan.index) == [
        ("a", "linux/amd64"),
        ("e", "linux/arm64"),
        ("d", "linux/s390x"),
    ]
    assert any("linux/arm64" in w and "->" in w for w in plan.warnings)


def test_replace_drops_the_attestation_of_the_replaced_image() -> None:
    base = base_of(("a", "linux/amd64"), ("b", "linux/arm64"))
    base = ResolvedSource(
        base.spec, base.digest, base.media_type, base.images, (attestation("9", digest("b")),)
    )
    plan = plan_merge(
        [TARGET], [single("@" + digest("e"), "e", "linux/arm64")], base=base, replace=True
    )
    assert plan.attestations == ()
    kept = plan_merge([TARGET], [single("@" + digest("e"), "e", "linux/s390x")], base=base)
    assert [a.digest for a in kept.attestations] == [digest("9")]


# --- the flags, declared in three places -------------------------------------------------


def argparse_flags() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    merge = sub.choices["merge-manifest"]
    return {
        option.removeprefix("--")
        for action in merge._actions
        for option in action.option_strings
        if option.startswith("--") and option not in ("--help", "--no-child-tags")
    }


def task_flags() -> set[str]:
    probe = copy.copy(merge_manifest)
    probe.help = dict(merge_manifest.help)
    return {arg.names[0].replace("_", "-") for arg in probe.get_arguments()}


def test_every_merge_flag_has_help_and_exists_in_the_task_and_the_lean_entry() -> None:
    assert set(MERGE_HELP) == argparse_flags() == task_flags()
    for name in ("annotation", "append", "replace"):
        assert MERGE_HELP[name]


def test_replace_without_append_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from toolkit.registry.commands import merge_command

    code = merge_command(["127.0.0.1:9/app:v1"], ["@" + digest("a")], replace=True)
    assert code == 1
    assert "--replace only means something with --append" in capsys.readouterr().err


def test_check_bases_never_sends_the_push_targets_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check-bases asks registries it does not push to (Docker Hub, a vendor's): their clients
    take that host's credentials from docker's config only, never REGISTRY_USER/PASSWORD."""
    from toolkit.registry import tool_commands
    from toolkit.registry.engine import other_registry_client

    monkeypatch.setenv("REGISTRY_USER", "pusher")
    monkeypatch.setenv("REGISTRY_PASSWORD", "push-secret")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(
        '{"auths": {"vendor.example": {"auth": "dmVuZG9yOnJlYWQ="}}}'  # vendor:read
    )
    assert other_registry_client("hub.example", insecure=False).credentials is None
    vendor = other_registry_client("vendor.example", insecure=False).credentials
    assert vendor is not None and vendor.username == "vendor"
    # And the command itself builds its clients that way: record what each base's client got.
    from toolkit.registry import engine
    from toolkit.registry.client import RegistryError

    seen: list[object] = []

    class Recording:
        def __init__(self, registry: str, **kwargs: object) -> None:
            seen.append((registry, kwargs.get("credentials"), kwargs.get("use_env_credentials")))
            raise RegistryError(f"{registry}: not asked in this test")

    monkeypatch.setattr(engine, "RegistryClient", Recording)
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM hub.example/team/base:1\n")
    code = tool_commands.check_bases_command(
        str(dockerfile), "linux/amd64", build_platform="native"
    )
    assert code == 1
    assert seen == [("hub.example", None, False)]
