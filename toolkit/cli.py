"""`archfleet`: the same Invoke collection as the repo's tasks.py, as an installed program."""

from invoke.program import Program

from . import __version__
from .tasks import namespace

program = Program(namespace=namespace, version=__version__, name="archfleet", binary="archfleet")


def main() -> None:
    program.run()
