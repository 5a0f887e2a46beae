"""Build an image ON a host, for that host's own arch, over SSH, and push it by digest.

This is the pattern the project is about, done by the lab with the builder its hosts have:
umoci + skopeo (installed by provision-runners, `builder: {tool: umoci}`). skopeo on the
host pulls the base image from a multi-arch tag and picks the host's own platform — an arm64
skopeo picks arm64 with no flag saying so — tar and umoci add the COPY layers and the config, and
skopeo pushes the result and writes its digest. Nothing in the build says which arch: the
host decides, which is exactly why each arch must build on a host of that arch. The host
needs GNU tar besides (any Debian or Red Hat family system has it).

`build_script` is pure (every value quoted); `build_on_host` moves the context files over
SFTP into a fresh temporary directory, runs the script in one round trip, and removes the
directory again, whatever happened.
"""

from __future__ import annotations

import posixpath
import shlex
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fabric import Connection

from ..fleet.connect import run_script
from ..inventory import Host
from .containerfile import Recipe

LAYOUT = "image:build"
# On the build host (mktemp makes it private there), not on this machine.
REMOTE_WORK_PREFIX = "/tmp/archfleet-build."  # noqa: S108


class NativeBuildError(RuntimeError):
    """The build on a host failed; names the host and carries the tail of its output."""


@dataclass(frozen=True)
class HostBuild:
    host: str
    # What `uname -m` said where the build ran.
    machine: str
    digest: str
    seconds: float


def build_script(recipe: Recipe, work: str, target: str, *, insecure: bool = False) -> str:
    """POSIX sh that builds `recipe` from `work/context/<n>` files and pushes it to `target`.

    Context file n is `recipe.context_files[n]` (numbered, so no context path reaches the
    remote shell as a file name); prints `machine=` and `digest=` lines.
    """
    q = shlex.quote
    tls = "false" if insecure else "true"
    index = {name: n for n, name in enumerate(recipe.context_files)}
    lines = [
        "set -eu",
        "export LC_ALL=C",
        f"cd {q(work)}",
        'echo "machine=$(uname -m)"',
        # No --override-arch: the host's own skopeo chooses its own platform from the index.
        f"skopeo copy --quiet --src-tls-verify={tls} {q('docker://' + recipe.base)} oci:{LAYOUT}",
    ]
    for layer, copy in enumerate(recipe.copies):
        # One layer per COPY, as Docker makes it: a tree of the copied files, tarred with
        # root ownership and added as is. (`umoci insert` writes a tar stream without its
        # final padding, which Python's and GNU tar refuse: verify caught it.)
        tree = f"layer{layer}"
        tops: list[str] = []
        for source, target_path in zip(copy.sources, copy.targets, strict=True):
            placed = f"{tree}{target_path}"
            lines.append(f"mkdir -p {q(posixpath.dirname(placed))}")
            lines.append(f"cp -p context/{index[source]} {q(placed)}")
            top = PurePosixPath(target_path).parts[1]
            if top not in tops:
                tops.append(top)
        lines.append(
            f"tar --numeric-owner --owner=0 --group=0 -C {tree} -cf {tree}.tar -- "
            + " ".join(q(top) for top in tops)
        )
        lines.append(f"umoci raw add-layer --image {LAYOUT} {tree}.tar")
    config: list[str] = []
    if recipe.entrypoint is not None:
        config += ["--clear=config.entrypoint"]
        config += [f"--config.entrypoint={q(word)}" for word in recipe.entrypoint]
    if recipe.cmd is not None:
        config += ["--clear=config.cmd"]
        config += [f"--config.cmd={q(word)}" for word in recipe.cmd]
    config += [f"--config.env={q(f'{k}={v}')}" for k, v in recipe.env]
    config += [f"--config.label={q(f'{k}={v}')}" for k, v in recipe.labels]
    if recipe.workdir is not None:
        config.append(f"--config.workingdir={q(recipe.workdir)}")
    if config:
        lines.append(f"umoci config --image {LAYOUT} {' '.join(config)}")
    lines += [
        f"skopeo copy --quiet --dest-tls-verify={tls} --digestfile digest "
        f"oci:{LAYOUT} {q('docker://' + target)}",
        'echo "digest=$(cat digest)"',
    ]
    return "\n".join(lines) + "\n"


def build_on_host(
    connection: Connection,
    host: Host,
    recipe: Recipe,
    context: Path,
    target: str,
    *,
    insecure: bool = False,
) -> HostBuild:
    """Build `recipe` (files from `context`) on `host` and push it to `target`; its digest."""
    missing = [name for name in recipe.context_files if not (context / name).is_file()]
    if missing:
        raise NativeBuildError(
            f"{host.name}: COPY source(s) {', '.join(missing)} are not files in {context}"
        )
    started = time.perf_counter()
    # One round trip: a private directory with its context/ inside, or nothing.
    made = run_script(
        connection,
        f'work=$(mktemp -d {REMOTE_WORK_PREFIX}XXXXXX) && mkdir "$work/context" && echo "$work"',
        timeout=60,
        host=host.name,
    )
    work = made.stdout.strip()
    if not made.ok or not work.startswith(REMOTE_WORK_PREFIX):
        raise NativeBuildError(f"{host.name}: cannot make a build directory: {made.stderr.strip()}")
    try:
        for n, name in enumerate(recipe.context_files):
            # Fabric's put keeps the file mode: an executable stays executable in the layer.
            connection.put(str(context / name), f"{work}/context/{n}")
        script = build_script(recipe, work, target, insecure=insecure)
        result = run_script(connection, script, timeout=host.ssh.command_timeout, host=host.name)
    finally:
        run_script(connection, f"rm -rf {shlex.quote(work)}", timeout=60, host=host.name)
    values = dict(line.partition("=")[::2] for line in result.stdout.splitlines() if "=" in line)
    digest = values.get("digest", "")
    if not result.ok or not digest.startswith("sha256:"):
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-10:])
        raise NativeBuildError(
            f"{host.name}: the build exited {result.exit_code} without a digest:\n{tail}"
        )
    return HostBuild(host.name, values.get("machine", ""), digest, time.perf_counter() - started)
