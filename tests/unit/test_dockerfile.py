"""The Dockerfile reader behind check-bases (toolkit/registry/dockerfile.py): BuildKit's rules
for lines, directives, heredocs, global ARGs, expansion, stages and reachability."""

from __future__ import annotations

import pytest

from toolkit.registry.bases import COMPATIBLE, MISSING, OK, group_uses, match, parse_build_args
from toolkit.registry.dockerfile import (
    DockerfileError,
    Resolution,
    parse_dockerfile,
    resolve,
    resolve_all,
)
from toolkit.registry.dockerfile_expand import expand
from toolkit.registry.manifest import Platform

AMD64 = Platform.parse("linux/amd64")
ARM64 = Platform.parse("linux/arm64")


def bases(text: str, target: Platform = AMD64, build: Platform = AMD64, **kw: object) -> list:
    resolution = resolve(parse_dockerfile(text), target=target, build=build, **kw)  # type: ignore[arg-type]
    return [(u.image, str(u.platform), u.why) for u in resolution.uses]


def test_global_args_defaults_and_build_arg_override() -> None:
    text = "ARG REG=r.example\nARG TAG=1.0\nFROM ${REG}/base:$TAG\n"
    assert bases(text) == [("r.example/base:1.0", "linux/amd64", "target")]
    assert bases(text, build_args={"TAG": "2.0"}) == [
        ("r.example/base:2.0", "linux/amd64", "target")
    ]


def test_arg_default_uses_earlier_args_and_override_reaches_later_defaults() -> None:
    text = "ARG V=12\nARG IMAGE=debian:${V}\nFROM $IMAGE\n"
    assert bases(text) == [("debian:12", "linux/amd64", "target")]
    assert bases(text, build_args={"V": "13"}) == [("debian:13", "linux/amd64", "target")]


def test_arg_inside_a_stage_does_not_reach_the_next_from() -> None:
    # Dockerfile reference: an ARG after a FROM is in that stage's scope, not the global one.
    text = "FROM debian:12\nARG TAG=3\nFROM alpine:$TAG\n"
    with pytest.raises(DockerfileError, match=r"Dockerfile:3: .*TAG is not set"):
        bases(text)


def test_unset_arg_names_the_arg_and_its_line() -> None:
    with pytest.raises(DockerfileError) as caught:
        bases("# base\nARG BASE\nFROM $BASE\n")
    message = str(caught.value)
    assert message.startswith("Dockerfile:3: FROM '$BASE'")
    assert "ARG BASE (line 2) has no default" in message
    # The value given on the command line resolves it.
    assert bases("ARG BASE\nFROM $BASE\n", build_args={"BASE": "x:1"})[0][0] == "x:1"


def test_arg_whose_default_uses_an_unset_arg_is_reported_through_it() -> None:
    with pytest.raises(DockerfileError, match=r"ARG IMAGE \(Dockerfile:2\) uses V"):
        bases("ARG V\nARG IMAGE=debian:$V\nFROM $IMAGE\n")


def test_default_forms_of_expansion() -> None:
    assert expand("${A:-x}", {}).text == "x"
    assert expand("${A:-x}", {"A": ""}).text == "x"
    assert expand("${A-x}", {"A": ""}).text == ""
    assert expand("${A:+y}", {"A": "1"}).text == "y"
    assert expand("${A+y}", {}).text == ""
    assert expand("'$A'\"$A\"\\$A", {"A": "v"}).text == "$Av$A"
    assert expand("a${A:-x}", {}).unset == []
    with pytest.raises(ValueError, match="A: is not allowed to be unset"):
        expand("${A?}", {})
    with pytest.raises(ValueError, match="not supported here"):
        expand("${A%.*}", {"A": "1.2"})


def test_buildplatform_stage_needs_only_the_build_platform() -> None:
    text = (
        "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n"
        "FROM debian:12\n"
        "COPY --from=build /app /app\n"
    )
    assert bases(text, target=ARM64, build=AMD64) == [
        ("golang:1.22", "linux/amd64", "build"),
        ("debian:12", "linux/arm64", "target"),
    ]


def test_platform_args_are_global_without_an_arg_line() -> None:
    # platform.go defaultArgs: TARGETARCH & co are set in the global scope.
    assert bases("FROM base:$TARGETARCH\n", target=ARM64) == [
        ("base:arm64", "linux/arm64", "target")
    ]
    assert bases("FROM --platform=linux/arm/v7 base\n") == [("base", "linux/arm/v7", "explicit")]
    assert bases("FROM --platform=arm64 base\n") == [("base", "linux/arm64", "explicit")]


def test_stages_scratch_and_reachability() -> None:
    text = (
        "FROM alpine:3 AS unused\n"
        "FROM golang:1 AS Build\n"  # stage names are lower-cased
        "FROM build AS test\n"
        "FROM scratch\n"
        "COPY --from=build /a /a\n"
        "COPY --from=nginx:1 /etc/nginx /etc/nginx\n"
    )
    resolution = resolve(parse_dockerfile(text), target=AMD64, build=AMD64)
    assert [(u.image, u.via) for u in resolution.uses] == [
        ("golang:1", "FROM"),
        ("nginx:1", "COPY --from"),
    ]
    kinds = {s.stage: (s.kind, s.reachable) for s in resolution.stages}
    assert kinds == {
        "unused": ("image", False),
        "build": ("image", True),
        "test": ("stage", False),
        "stage-3": ("scratch", True),
    }
    # --target test: reaches build through `FROM build`.
    picked = resolve(parse_dockerfile(text), target=AMD64, build=AMD64, stage="test")
    assert [u.image for u in picked.uses] == ["golang:1"]
    with pytest.raises(DockerfileError, match="target stage 'nope' could not be found"):
        resolve(parse_dockerfile(text), target=AMD64, build=AMD64, stage="nope")


def test_from_a_later_stage_name_is_an_image() -> None:
    # convert.go addState: only stages defined before this FROM are stages.
    text = "FROM app AS first\nFROM debian AS app\nCOPY --from=first /x /x\n"
    assert [u[0] for u in bases(text)] == ["app", "debian"]


def test_run_mount_from_is_a_dependency() -> None:
    text = (
        "FROM alpine AS tools\n"
        "FROM debian\n"
        "RUN --mount=type=bind,from=tools,target=/t true\n"
        "RUN --mount=type=bind,from=busybox:1,target=/b true\n"
    )
    assert [u[0] for u in bases(text)] == ["alpine", "debian", "busybox:1"]


def test_continuations_comments_directives_and_heredocs() -> None:
    text = (
        "\ufeff# syntax=docker/dockerfile:1\n"
        "# escape=`\n"
        "\n"
        "# a comment\n"
        "ARG A=1\n"
        "  from `\n"
        "  # a comment inside the instruction\n"
        "\n"
        "    base:$A `\n"
        "    AS one\n"
        "RUN <<EOT bash\n"
        "FROM not-an-instruction\n"
        "EOT\n"
        'COPY <<-"END" /x\n'
        "\tFROM neither\n"
        "\tEND\n"
        "FROM one\n"
    )
    dockerfile = parse_dockerfile(text)
    assert dockerfile.escape == "`"
    assert dict(dockerfile.directives) == {"syntax": "docker/dockerfile:1", "escape": "`"}
    assert [(s.line, s.base, s.name) for s in dockerfile.stages] == [
        (6, "base:$A", "one"),
        (17, "one", None),
    ]
    assert bases(text) == [("base:1", "linux/amd64", "target")]


def test_a_directive_after_a_comment_is_a_comment() -> None:
    dockerfile = parse_dockerfile("# hello\n# escape=`\nFROM a\n")
    assert dockerfile.escape == "\\" and dockerfile.directives == ()


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", None, "file with no instructions"),
        ("# only a comment\n", None, "file with no instructions"),
        ("ARG A=1\n", None, "no FROM instruction"),
        ("RUN true\nFROM a\n", 1, "RUN before the first FROM"),
        ("\nFROM a b\n", 2, "FROM requires either one or three arguments"),
        ("FROM a AS 1bad\n", 1, "invalid name for build stage"),
        ("FROM --platfrom=linux/amd64 a\n", 1, "unknown flag --platfrom"),
        ("FROM --platform a\n", 1, "missing a value on flag --platform"),
        ("FROM a\nRUN <<EOF\necho\n", 2, "unterminated heredoc <<EOF"),
        ("# escape=x\nFROM a\n", 1, "invalid escape token"),
        ("# escape=\\\n# escape=`\nFROM a\n", 2, "only one escape parser directive"),
        ("ARG 1A=x\nFROM a\n", 1, "ARG expects NAME or NAME=default"),
        ("FROM a\nCOPY --from=$X /a /a\n", 2, "variable expansion is not supported for --from"),
    ],
)
def test_malformed_files_name_file_and_line(text: str, line: int | None, message: str) -> None:
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile(text, path="ctx/Dockerfile")
    where = "ctx/Dockerfile" + (f":{line}:" if line else ":")
    assert str(caught.value).startswith(where), caught.value
    assert message in str(caught.value)


def test_blank_base_and_bad_platform_are_errors_with_the_line() -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: base name \(\$\{A:-\}\)"):
        bases("ARG A=\nFROM ${A:-}\n")
    with pytest.raises(DockerfileError, match=r"Dockerfile:1: FROM --platform: invalid platform"):
        bases("FROM --platform=linux/arm/v7/x a\n")


def test_native_build_means_buildplatform_is_each_target() -> None:
    text = "FROM --platform=$BUILDPLATFORM golang AS b\nFROM debian\nCOPY --from=b /a /a\n"
    dockerfile = parse_dockerfile(text)
    resolutions = resolve_all(dockerfile, [AMD64, ARM64], build=None)
    needs = group_uses(resolutions)
    assert [(n.image, [str(p) for p in n.platforms]) for n in needs] == [
        ("golang", ["linux/amd64", "linux/arm64"]),
        ("debian", ["linux/amd64", "linux/arm64"]),
    ]
    # One build machine: golang is needed for it alone, debian for every target.
    needs = group_uses(resolve_all(dockerfile, [AMD64, ARM64], build=AMD64))
    assert [(n.image, [str(p) for p in n.platforms]) for n in needs] == [
        ("golang", ["linux/amd64"]),
        ("debian", ["linux/amd64", "linux/arm64"]),
    ]


def test_same_image_spelled_twice_is_one_base() -> None:
    text = "FROM debian:12 AS a\nFROM docker.io/library/debian:12\nCOPY --from=a / /\n"
    resolutions: list[Resolution] = resolve_all(parse_dockerfile(text), [AMD64], build=AMD64)
    needs = group_uses(resolutions)
    assert len(needs) == 1 and str(needs[0].reference) == "docker.io/library/debian:12"
    assert needs[0].platforms[AMD64][1] == ["a (line 1)", "stage-1 (line 2)"]


def test_matching_is_containerds() -> None:
    arm_v7 = Platform.parse("linux/arm/v7")
    assert match(ARM64, [AMD64, ARM64]) == (OK, ARM64)
    assert match(Platform.parse("linux/aarch64/v8"), [ARM64]) == (OK, ARM64)
    # compare.go: arm64 also runs 32-bit arm; BuildKit would pull it (Only, not OnlyStrict).
    assert match(ARM64, [AMD64, arm_v7]) == (COMPATIBLE, arm_v7)
    assert match(ARM64, [AMD64]) == (MISSING, None)
    assert match(arm_v7, [ARM64]) == (MISSING, None)


def test_build_args_from_the_command_line() -> None:
    assert parse_build_args(["A=1", "B=", "C", "D"], {"C": "env"}) == {
        "A": "1",
        "B": "",
        "C": "env",
    }
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        parse_build_args(["=x"], {})
