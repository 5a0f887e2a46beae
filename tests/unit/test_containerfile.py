"""The Containerfile subset the lab's umoci builder honours, and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.lab.containerfile import ContainerfileError, parse_containerfile

REPO = Path(__file__).resolve().parents[2]


def test_the_sample_app() -> None:
    path = REPO / "examples" / "app" / "Containerfile"
    recipe = parse_containerfile(path.read_text(), path=str(path))
    assert recipe.base == "docker.io/library/busybox:1.36"
    assert [(c.sources, c.targets) for c in recipe.copies] == [
        (("hello.sh",), ("/usr/local/bin/hello",))
    ]
    assert recipe.entrypoint == ("/usr/local/bin/hello",)
    assert recipe.cmd == ()  # a new ENTRYPOINT drops the base image's CMD, as in Docker
    assert recipe.context_files == ("hello.sh",)
    lab = parse_containerfile(path.read_text(), build_args={"BASE": "127.0.0.1:5000/b:base"})
    assert lab.base == "127.0.0.1:5000/b:base"


def test_everything_supported() -> None:
    text = """
    # comment
    ARG TAG=1.0
    ARG REG
    FROM ${REG}/base:$TAG
    ENV A=1 B="two words"
    ENV LEGACY value with spaces
    LABEL org.example.v=$TAG \\
          org.example.w="x y"
    WORKDIR /srv
    WORKDIR app
    COPY a.txt b.txt ./
    COPY ["c d.txt", "/etc/c.txt"]
    ENTRYPOINT ["/bin/app", "--flag"]
    CMD echo hi
    """
    recipe = parse_containerfile(text, build_args={"REG": "r.example"})
    assert recipe.base == "r.example/base:1.0"
    assert dict(recipe.env) == {"A": "1", "B": "two words", "LEGACY": "value with spaces"}
    assert dict(recipe.labels) == {"org.example.v": "1.0", "org.example.w": "x y"}
    assert recipe.workdir == "/srv/app"
    assert [c.targets for c in recipe.copies] == [
        ("/srv/app/a.txt", "/srv/app/b.txt"),
        ("/etc/c.txt",),
    ]
    assert recipe.context_files == ("a.txt", "b.txt", "c d.txt")
    assert recipe.entrypoint == ("/bin/app", "--flag")
    assert recipe.cmd == ("/bin/sh", "-c", "echo hi")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM b\nRUN make", "Containerfile:2: RUN is not supported"),
        ("FROM b\nCOPY --from=x a /a", "Containerfile:2: COPY flags"),
        ("FROM b\nCOPY ../secret /a", "must be a plain path inside the build context"),
        ("FROM b\nCOPY /etc/passwd /a", "must be a plain path inside the build context"),
        ("FROM b\nCOPY *.sh /a/", "no wildcard"),
        ("FROM b\nCOPY a b /dir", "needs a destination ending in /"),
        ("FROM b\nCOPY a", "one or more sources and a destination"),
        ("FROM a\nFROM b", "Containerfile:2: a second FROM"),
        ("COPY a /a", "Containerfile:1: COPY before FROM"),
        ("ARG X", "no FROM instruction"),
        ("FROM $NOPE", "$NOPE is not an ARG declared above"),
        ("FROM b\nENTRYPOINT [1, 2]", "expected a JSON list of strings"),
        ("FROM b\nCMD [broken", "not a JSON list of strings"),
        ("FROM b\nLABEL novalue", "LABEL expects key=value pairs"),
        ("FROM b\nENV A \\", "ends inside a continued line"),
    ],
)
def test_refusals_name_file_line_and_reason(text: str, expected: str) -> None:
    with pytest.raises(ContainerfileError, match=None) as info:
        parse_containerfile(text, path="Containerfile")
    assert expected in str(info.value)


def test_unknown_build_arg_is_an_error() -> None:
    with pytest.raises(ContainerfileError, match="BASES given but not declared by ARG"):
        parse_containerfile("ARG BASE=b\nFROM $BASE", build_args={"BASES": "x"})
