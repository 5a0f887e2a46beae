"""`archfleet`: the same Invoke collection as the repo's tasks.py, as an installed program."""

import atexit
import gc

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


def main() -> None:
    program.run()
