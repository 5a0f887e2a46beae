"""toolkit/progress.py: which progress a fleet run gets (live on a terminal, plain lines
elsewhere, nothing with --json), the plain lines byte for byte, and what the live display
draws — rendered on rich Consoles writing to a StringIO (no terminal, no timing)."""

from __future__ import annotations

import io
import re
import sys
import threading

import pytest
from rich.console import Console

from toolkit.fleet.parallel import Outcome, for_each_host
from toolkit.inventory import Host, SshSettings
from toolkit.progress import (
    LiveProgress,
    PlainProgress,
    Row,
    SilentProgress,
    host_progress,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def host(name: str) -> Host:
    return Host(name=name, address="127.0.0.1", roles=("gitlab-runner",), ssh=SshSettings())


def terminal(width: int = 100, environ: dict[str, str] | None = None) -> Console:
    """A terminal as rich sees one (force_terminal), drawing into a StringIO."""
    return Console(
        file=io.StringIO(),
        force_terminal=True,
        width=width,
        color_system=None,
        _environ=environ,
    )


def frame(live: LiveProgress, width: int = 100) -> list[str]:
    """The live display's current rows as plain text lines."""
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(live.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return [line.rstrip() for line in text.splitlines()]


def test_json_is_silent_and_a_pipe_or_a_file_gets_plain_lines() -> None:
    with host_progress(["a"], quiet=True, console=terminal()) as chosen:
        assert isinstance(chosen, SilentProgress)
    with host_progress(["a"], console=Console(file=io.StringIO())) as chosen:
        assert isinstance(chosen, PlainProgress)  # StringIO: not a terminal
    with host_progress(["a"], console=terminal(environ={"TERM": "dumb"})) as chosen:
        assert isinstance(chosen, PlainProgress)  # a terminal that cannot redraw
    with host_progress(["a"], console=terminal()) as chosen:
        assert isinstance(chosen, LiveProgress)


def test_without_a_console_stderr_decides(capsys: pytest.CaptureFixture[str]) -> None:
    """Under capsys stderr is no TTY: plain lines, as in a CI log."""
    assert not sys.stderr.isatty()
    with host_progress(["a"]) as chosen:
        assert isinstance(chosen, PlainProgress)


def test_plain_lines_are_byte_for_byte_what_they_were(capsys: pytest.CaptureFixture[str]) -> None:
    """report.step and report.host_done's lines: `host: step…`, `host: ok`, `host: FAILED: …`."""
    with host_progress(["build-1", "arm64-1"]) as progress:
        say = progress.printer("build-1")
        say("connecting")
        say("install-builder: install buildah with skopeo from the OS packages")
        progress.done(Outcome(host("build-1"), value=1))
        progress.done(Outcome(host("arm64-1"), error="cannot connect to root@h:22 (key k): no"))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "build-1: connecting…\n"
        "build-1: install-builder: install buildah with skopeo from the OS packages…\n"
        "build-1: ok\n"
        "arm64-1: FAILED: cannot connect to root@h:22 (key k): no\n"
    )


def test_the_live_display_has_one_row_per_host_with_its_step_or_its_end() -> None:
    console = terminal()
    with host_progress(["build-1", "arm64-1", "ppc-1"], console=console) as progress:
        assert isinstance(progress, LiveProgress)
        assert frame(progress) == [
            "· build-1  waiting",
            "· arm64-1  waiting",
            "· ppc-1    waiting",
        ]
        progress.step("build-1", "connecting")
        progress.step("build-1", "reading facts")
        progress.step("arm64-1", "connecting")
        running = frame(progress)
        assert running[0].endswith("build-1 [2] reading facts…")
        assert running[1].endswith("arm64-1 [1] connecting…")
        assert running[2] == "· ppc-1       waiting"
        progress.step("build-1", "install-runner: install gitlab-runner 19.3.0")
        progress.done(Outcome(host("build-1"), value=1))
        progress.done(Outcome(host("arm64-1"), error="cannot connect to jump host root@j:22"))
        assert progress.rows() == {
            "build-1": Row("ok", "ok", 3),
            "arm64-1": Row("failed", "FAILED: cannot connect to jump host root@j:22", 1),
            "ppc-1": Row(),
        }
    # The last frame stays on the terminal: every host's end, drawn in place (cursor moves).
    drawn = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[" in drawn  # redrawn, not appended line by line
    tail = [line.rstrip() for line in ANSI.sub("\n", drawn).splitlines() if line.strip()][-3:]
    assert tail == [
        "✓ build-1 [3] ok",
        "✗ arm64-1 [1] FAILED: cannot connect to jump host root@j:22",
        "· ppc-1       waiting",
    ]


def test_a_long_step_stays_on_one_line_and_an_error_is_shown_whole() -> None:
    console = terminal(width=40)
    detail = "install-merge-tool: install archfleet 0.1.0 into /opt/archfleet (https://…)"
    error = "the Jenkins agent needs Java 21 but it has no Java and debian 12 ships Java 17 only"
    with host_progress(["build-1", "arm64-1"], console=console) as progress:
        assert isinstance(progress, LiveProgress)
        progress.step("build-1", detail)
        progress.done(Outcome(host("arm64-1"), error=error))
        lines = frame(progress, width=40)
    # (after the spinner, whose frame depends on the clock)
    assert lines[0][1:].startswith(" build-1 [1] install-merge-tool") and lines[0].endswith("…")
    assert len(lines[0]) <= 40
    assert "arm64-1" in lines[1]  # the host name is never cut
    folded = "".join(line[len("✗ arm64-1     ") :] for line in lines[1:]).replace(" ", "")
    assert folded == f"FAILED: {error}".replace(" ", "")


def test_what_else_goes_to_stderr_meanwhile_lands_above_the_display() -> None:
    """A note printed while hosts run (report.note writes to sys.stderr) is not lost and does
    not tear the display: Live's stderr redirect prints it above the rows."""
    console = terminal()
    with host_progress(["build-1"], console=console) as progress:
        progress.step("build-1", "connecting")
        sys.stderr.write("note: GitLab side not checked (no token): no GitLab token\n")
    drawn = ANSI.sub("\n", console.file.getvalue())  # type: ignore[attr-defined]
    assert "note: GitLab side not checked (no token): no GitLab token" in drawn.splitlines()


def test_hosts_threads_report_at_once_and_every_end_is_kept() -> None:
    hosts = tuple(host(f"h{n}") for n in range(6))
    barrier = threading.Barrier(len(hosts))
    console = terminal()

    def work(one: Host) -> int:
        barrier.wait()
        for n in range(50):
            progress.step(one.name, f"step {n}")
        return 1

    with host_progress([h.name for h in hosts], console=console) as progress:
        for_each_host(hosts, work, workers=len(hosts), on_done=progress.done)
        assert isinstance(progress, LiveProgress)
        assert progress.rows() == {h.name: Row("ok", "ok", 50) for h in hosts}
