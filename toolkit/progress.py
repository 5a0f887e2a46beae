"""Per-host progress while fleet work runs: live on a terminal, plain lines everywhere else.

On a terminal (stderr is a TTY and TERM is not "dumb") a rich Live display keeps one row per
host — waiting, then its current step and how many it has started, then ok or FAILED with
the error — redrawn in place, so N hosts take N lines however many steps they run, and the
last frame stays on screen. Anywhere else (CI logs, pipes, files) nothing is redrawn: every
step is one whole line, `host: step…`, and every host's end one `host: ok` /
`host: FAILED: why` (report.step and report.host_done, unchanged), which a log keeps and grep
finds. Both show the same texts: the step names and the plan's change descriptions, which
never carry a token (the changes keep secrets out of their descriptions), and the outcome's
error, as the summary table shows it.

rich is imported only for the live display: a CI job never pays for it here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from . import report

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from .fleet.parallel import Outcome

__all__ = ["HostProgress", "LiveProgress", "PlainProgress", "SilentProgress", "host_progress"]

State = Literal["waiting", "running", "ok", "failed"]
# What each row starts with, by state (running: a spinner instead).
_MARK = {"waiting": ("·", "dim"), "ok": ("✓", "green"), "failed": ("✗", "bold red")}
_REFRESHES_PER_SECOND = 8  # the spinner's pace; every change is drawn at once regardless


class HostProgress:
    """What a fleet task tells about its hosts: a step starts, a host is done."""

    def step(self, host: str, message: str) -> None:
        raise NotImplementedError

    def done(self, outcome: Outcome[Any]) -> None:
        raise NotImplementedError

    def printer(self, host: str) -> Callable[[str], None]:
        """`step` for one host, as provision_host's `progress` takes it."""
        return lambda message: self.step(host, message)


class SilentProgress(HostProgress):
    """--json: stdout is for the machine, and stderr stays quiet too."""

    def step(self, host: str, message: str) -> None:
        pass

    def done(self, outcome: Outcome[Any]) -> None:
        pass


class PlainProgress(HostProgress):
    """One line per step and per finished host on stderr (CI logs, pipes)."""

    def step(self, host: str, message: str) -> None:
        report.step(host, message)

    def done(self, outcome: Outcome[Any]) -> None:
        report.host_done(outcome)


@dataclass(frozen=True)
class Row:
    """One host's line in the live display."""

    state: State = "waiting"
    text: str = "waiting"
    steps: int = 0


class LiveProgress(HostProgress):
    """One row per host, redrawn in place (rich Live) on `console`; thread-safe (the hosts'
    threads report at once). Use as a context manager: the display runs inside it."""

    def __init__(self, hosts: Sequence[str], console: Console) -> None:
        from rich.live import Live

        self._lock = threading.Lock()
        self._rows = {name: Row() for name in hosts}
        # Other writes to stderr meanwhile (notes, a server's error) go above the display.
        self._live = Live(
            console=console,
            get_renderable=self.render,
            refresh_per_second=_REFRESHES_PER_SECOND,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=True,
        )

    def __enter__(self) -> LiveProgress:
        self._live.start(refresh=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()  # draws the last frame, which stays

    def rows(self) -> dict[str, Row]:
        with self._lock:
            return dict(self._rows)

    def step(self, host: str, message: str) -> None:
        with self._lock:
            steps = self._rows.get(host, Row()).steps + 1
            self._rows[host] = Row("running", message, steps)
        self._live.refresh()

    def done(self, outcome: Outcome[Any]) -> None:
        with self._lock:
            steps = self._rows.get(outcome.host.name, Row()).steps
            self._rows[outcome.host.name] = (
                Row("ok", "ok", steps)
                if outcome.ok
                else Row("failed", f"FAILED: {outcome.error}", steps)
            )
        self._live.refresh()

    def render(self) -> RenderableType:
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)  # mark
        grid.add_column(no_wrap=True)  # host: names are never cut
        grid.add_column(no_wrap=True, justify="right")  # steps so far
        grid.add_column()  # what it does now / how it ended
        for name, row in self.rows().items():
            mark: RenderableType = (
                Spinner("dots", style="cyan")
                if row.state == "running"
                else Text(_MARK[row.state][0], style=_MARK[row.state][1])
            )
            steps = Text(f"[{row.steps}]" if row.steps else "", style="dim")
            if row.state == "failed":  # the whole error, wrapped: it is what to act on
                text = Text(row.text, style="red", overflow="fold")
            else:  # one line per host while it runs, however long a change's detail is
                text = Text(row.text + ("…" if row.state == "running" else ""))
                text.no_wrap, text.overflow = True, "ellipsis"
            grid.add_row(mark, Text(name, style="bold"), steps, text)
        return grid


def is_live_terminal(console: Console) -> bool:
    """A terminal that can redraw: not a pipe or file, not TERM=dumb."""
    return console.is_terminal and not console.is_dumb_terminal


@contextmanager
def host_progress(
    hosts: Sequence[str], *, quiet: bool = False, console: Console | None = None
) -> Iterator[HostProgress]:
    """The progress for a fleet run over `hosts`: silent for --json, live on a terminal,
    plain lines otherwise. `console` (tests) defaults to rich's view of stderr — asked only
    when stderr is a TTY, so a pipe never imports rich for this."""
    if quiet:
        yield SilentProgress()
        return
    if console is None:
        import sys

        if not sys.stderr.isatty():
            yield PlainProgress()
            return
        from rich.console import Console

        console = Console(stderr=True, highlight=False)
    if not is_live_terminal(console):
        yield PlainProgress()
        return
    with LiveProgress(hosts, console) as live:
        yield live
