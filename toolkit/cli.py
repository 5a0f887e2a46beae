"""`archfleet`: the same Invoke collection as the repo's tasks.py, as an installed program."""

import atexit
import gc
import os
import select
import sys
from typing import TextIO

# A run is short, and most of what it allocates is the ~900 modules it imports (Invoke,
# Fabric, paramiko, python-gitlab, jenkinsapi, rich), which live until it exits. With the
# default thresholds (700, 10, 10) the cyclic collector walks that growing heap again and again
# while they load (about 60 ms here), and once more over all of it at exit (40-60 ms). So:
# collect far less often (as mypy does; cyclic garbage is still collected), and at exit, leave
# what is alive by then out of the final collection (module teardown still frees it).
gc.set_threshold(100_000, 50, 100)
atexit.register(gc.freeze)

from invoke.program import Program  # noqa: E402

from . import __version__  # noqa: E402
from .tasks import namespace  # noqa: E402

program = Program(namespace=namespace, version=__version__, name="archfleet", binary="archfleet")


# What a shell reports for a program that SIGPIPE ended (128 + 13), as for `yes | head`.
# Python's docs (signal, "Note on SIGPIPE") exit 1 in their example; here 1 already means
# "failed" (runners-status: an arch is not ready), and a reader that stopped early is no failure.
EXIT_BROKEN_PIPE = 141


def main() -> None:
    # Python's docs (library/signal.html#note-on-sigpipe): catch BrokenPipeError around the
    # entry point, flush inside the try (small outputs otherwise fail only at exit), point the
    # streams at /dev/null so the interpreter's own flush at exit stays quiet. Not SIGPIPE's
    # SIG_DFL: that would also kill the process when a server's socket closes mid-write.
    try:
        try:
            program.run()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
    except BrokenPipeError:
        closed = [stream for stream in (sys.stdout, sys.stderr) if _reader_gone(stream)]
        if not closed:
            raise  # a socket's broken pipe (a server went away) is a real error
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in closed:
            os.dup2(devnull, stream.fileno())
        sys.exit(EXIT_BROKEN_PIPE)


def _reader_gone(stream: TextIO) -> bool:
    """True when `stream` is a pipe whose reading end is closed: poll() reports POLLERR for
    the write end of such a pipe (pipe(7)), and never for a terminal or a regular file."""
    try:
        fd = stream.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):  # no real file descriptor (a test's StringIO)
        return False
