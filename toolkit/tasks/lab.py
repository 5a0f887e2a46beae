"""Tasks lab.up, lab.status, lab.down: the local fleet (registry + one SSH host per arch);
lab.tool-image: the archfleet tool image, built per arch into the lab's registry."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from .. import report

DIR_HELP = "The lab's directory (default: $ARCHFLEET_CACHE/lab, i.e. ~/.cache/archfleet/lab)."
ADDRESS_HELP = "The first host's loopback address; the next arch gets the next one (127.0.0.51)."
PORT_HELP = "The hosts' SSH port (2222)."
JSON_HELP = "Print the result as JSON on stdout."


def lab_directory(dir: str) -> Path:
    from ..lab.fleet import default_lab_dir

    return Path(dir).expanduser() if dir else default_lab_dir()


def lab_errors() -> tuple[type[Exception], ...]:
    """What a lab command reports as a plain error (no traceback)."""
    from ..lab.fleet import LabError
    from ..lab.hosts import LabHostError
    from ..lab.images import ImageBuildError
    from ..lab.registry import RegistryStartError
    from ..lab.rootfs import RootfsError
    from ..lab.sshkeys import SshKeyError
    from ..registry.commands import USER_ERRORS

    return (
        LabError,
        LabHostError,
        ImageBuildError,
        RegistryStartError,
        RootfsError,
        SshKeyError,
        *USER_ERRORS,
    )


@contextlib.contextmanager
def errors_reported(expected: tuple[type[Exception], ...]) -> Iterator[None]:
    """An expected failure becomes one clear line and exit code 1, not a traceback."""
    try:
        yield
    except expected as exc:
        report.error(str(exc))
        raise Exit(code=1) from None


def check_prerequisites() -> None:
    from ..lab.prereqs import missing_lab_prerequisites

    problems = missing_lab_prerequisites()
    for problem in problems:
        report.error(problem)
    if problems:
        raise Exit(code=1)


@task(
    help={
        "dir": DIR_HELP,
        "first-address": ADDRESS_HELP,
        "port": PORT_HELP,
        "mirror": "Debian mirror for building host roots (default: this machine's apt sources).",
        "json": JSON_HELP,
    }
)
def up(
    c: Context,
    dir: str = "",
    first_address: str = "127.0.0.51",
    port: int = 2222,
    mirror: str = "",
    json: bool = False,
) -> None:
    """Start the lab: a registry and an amd64 and an arm64 SSH host on loopback (idempotent)."""
    from ..lab.fleet import lab_up

    check_prerequisites()
    with errors_reported(lab_errors()):
        lab = lab_up(
            lab_directory(dir),
            report.progress,
            first_address=first_address,
            port=port,
            mirror=mirror or None,
        )
    if json:
        report.emit_json(report.lab_json(lab))
    else:
        report.lab_summary(lab)


@task(help={"dir": DIR_HELP, "json": JSON_HELP})
def status(c: Context, dir: str = "", json: bool = False) -> None:
    """What of the lab runs: the registry and each host (exit 1 if any part is down)."""
    from ..lab.fleet import lab_status

    directory = lab_directory(dir)
    with errors_reported(lab_errors()):
        parts = lab_status(directory)
    if json:
        report.emit_json(
            {
                "dir": str(directory),
                "up": bool(parts) and all(p.running for p in parts),
                "parts": [p.__dict__ for p in parts],
            }
        )
    else:
        report.lab_status_table(directory, parts)
    if not parts or not all(p.running for p in parts):
        raise Exit(code=1)


@task(
    help={
        "dir": DIR_HELP,
        "purge": "Also delete the hosts' roots and the registry's storage (next up rebuilds).",
    }
)
def down(c: Context, dir: str = "", purge: bool = False) -> None:
    """Stop exactly what lab.up started (by pid), unmount the hosts; safe to run twice."""
    from ..lab.fleet import lab_down

    with errors_reported(lab_errors()):
        lab_down(lab_directory(dir), report.progress, purge=purge)


@task(
    help={
        "wheel": "The archfleet wheel to install (python -m pip wheel --no-deps -w dist .).",
        "registry": "Loopback registry to push to (127.0.0.1:PORT, plain HTTP); default: the "
        "running lab's (lab.up).",
        "platforms": "Comma-separated platforms (default linux/amd64,linux/arm64).",
        "dir": DIR_HELP,
        "mirror": "Debian mirror for the Python base roots (default: this machine's apt sources).",
        "json": JSON_HELP,
    }
)
def tool_image(
    c: Context,
    wheel: str = "",
    registry: str = "",
    platforms: str = "linux/amd64,linux/arm64",
    dir: str = "",
    mirror: str = "",
    json: bool = False,
) -> None:
    """Build the archfleet tool image per arch (private Docker engine), merge and verify it."""
    import tempfile

    from ..lab.docker_engine import DockerEngineError, cached_docker_engine
    from ..lab.fleet import load_lab
    from ..lab.tool_image import ToolImageError, build_tool_image

    wanted = tuple(p.strip() for p in platforms.split(",") if p.strip())
    with errors_reported((*lab_errors(), DockerEngineError, ToolImageError)):
        if not wheel:
            raise ToolImageError(
                "--wheel is required: the archfleet wheel to install "
                "(python -m pip wheel --no-deps -w dist .)"
            )
        if not registry:
            lab = load_lab(lab_directory(dir))
            if lab is None:
                raise ToolImageError(
                    f"no running lab in {lab_directory(dir)}: run `invoke lab.up` first, or "
                    "pass --registry 127.0.0.1:PORT"
                )
            registry = lab.registry.address
        host = registry.rsplit(":", 1)[0]
        # The private engine trusts plain HTTP on loopback only (--insecure-registry 127.0.0.0/8).
        if not (host.startswith("127.") or host == "localhost"):
            raise ToolImageError(f"--registry {registry!r}: expected a loopback 127.x.y.z:PORT")
        with (
            tempfile.TemporaryDirectory(prefix="archfleet-tool-image-") as work,
            # Images and BuildKit's cache kept in the cache dir: an unchanged rebuild is quick.
            cached_docker_engine("lab-tool-image") as engine,
        ):
            image = build_tool_image(
                engine,
                registry,
                Path(wheel).expanduser().resolve(),
                Path(work),
                platforms=wanted,
                mirror=mirror or None,
                progress=report.progress,
            )
    if json:
        report.emit_json(
            {
                "ref": image.tag_ref,
                "digest": image.index_digest,
                "version": image.version,
                "base": image.base_image,
                "platforms": [child.__dict__ for child in image.children],
                "seconds": {k: round(v, 1) for k, v in image.seconds.items()},
            }
        )
        return
    for child in image.children:
        report.progress(
            f"{child.platform}: {child.digest}, {child.layer_bytes / 1e6:.1f} MB compressed "
            f"in {child.layers} layers"
        )
    report.emit_value(f"{image.tag_ref}@{image.index_digest}")


namespace = Collection("lab")
namespace.add_task(up)
namespace.add_task(status)
namespace.add_task(down)
namespace.add_task(tool_image)
