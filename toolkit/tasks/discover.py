"""Task: discover-images. Thin: flags in, toolkit.discover, the listing out, the child
pipeline written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from .. import report
from ..discover import (
    DEFAULT_EXCLUDES,
    DEFAULT_INCLUDE,
    DEFAULT_PLATFORMS,
    DEFAULT_REPOSITORY,
    DiscoverError,
    Image,
    child_pipeline,
    find_images,
    globs,
    include_limit_note,
    parse_include,
    parse_inputs,
    parse_platforms,
)

HELP = {
    "root": "Directory to search (default .); paths in the output start with it.",
    "pattern": "Glob of Dockerfile paths instead of the default (every directory with a "
    "Containerfile or Dockerfile): `**/Dockerfile.prod`, `images/*/Containerfile`; without "
    "a `/` it matches a file name at any depth. Repeatable.",
    "exclude": "Glob of paths to leave out, in addition to the defaults "
    f"({', '.join(DEFAULT_EXCLUDES)}); without a `/` it matches a name at any depth. "
    "Repeatable.",
    "default-excludes": "Leave out the default excludes (default on; "
    "--no-default-excludes to search them too).",
    "root-name": "Name of an image whose Dockerfile is in the root itself (default: the "
    "root directory's name).",
    "json": "Print the images as a JSON list of {name, context, dockerfile} on stdout.",
    "gitlab-child-pipeline": "Write a child pipeline to FILE that includes the multiarch "
    "component once per image (for `trigger: include: - artifact: FILE, job: discover`).",
    "include": "How the child pipeline includes the component: "
    "component:<fqdn>/<project>/multiarch@<version> or local:<path>.yml "
    f"(default {DEFAULT_INCLUDE}).",
    "repository": f"Each image is pushed to <repository>/<name> (default {DEFAULT_REPOSITORY}).",
    "platforms": "Comma-separated platforms of every image "
    f"(default {','.join(DEFAULT_PLATFORMS)}).",
    "input": "Another component input for every image, NAME=VALUE (a JSON value such as "
    'true or ["A=1"] keeps its type); repeatable.',
}


@task(iterable=["pattern", "exclude", "input"], help=HELP)
def discover_images(
    c: Context,
    root: str = ".",
    pattern: list[str] | None = None,
    exclude: list[str] | None = None,
    default_excludes: bool = True,
    root_name: str = "",
    json: bool = False,
    gitlab_child_pipeline: str = "",
    include: str = DEFAULT_INCLUDE,
    repository: str = DEFAULT_REPOSITORY,
    platforms: str = ",".join(DEFAULT_PLATFORMS),
    input: list[str] | None = None,
) -> None:
    """Find every image (directory with a Dockerfile/Containerfile) and name it; optionally
    write a GitLab child pipeline that builds each one."""
    try:
        excludes = [*(DEFAULT_EXCLUDES if default_excludes else ()), *(exclude or [])]
        # Flags are checked before the tree is read, so a typo fails at once.
        plan = None
        if gitlab_child_pipeline:
            plan = (parse_include(include), parse_platforms(platforms), parse_inputs(input or []))
        images = find_images(
            Path(root), patterns=globs(pattern or []), excludes=globs(excludes), root_name=root_name
        )
        if not images:
            searched = ", ".join(pattern or ["Containerfile", "Dockerfile"])
            raise DiscoverError(
                f"no images under {root} (looked for {searched}; excluded: "
                f"{', '.join(excludes) or 'nothing'})"
                + ("; nothing written" if gitlab_child_pipeline else "")
            )
        if plan is not None:
            chosen, platform_list, inputs = plan
            text = child_pipeline(
                images,
                include=chosen,
                repository=repository,
                platforms=platform_list,
                inputs=inputs,
            )
            write_atomically(Path(gitlab_child_pipeline), text)
            warning = include_limit_note(len(images))
            if warning:
                report.note(warning)
    except (DiscoverError, OSError) as exc:
        report.error(str(exc))
        raise Exit(code=1) from None
    if json:
        report.emit_json([image.as_json() for image in images])
    else:
        report.emit_value(table(images))
    if gitlab_child_pipeline:
        report.note(
            f"wrote {gitlab_child_pipeline}: the component included for {len(images)} images"
        )


def table(images: list[Image]) -> str:
    rows = [("NAME", "CONTEXT", "DOCKERFILE"), *((i.name, i.context, i.dockerfile) for i in images)]
    widths = [max(len(row[col]) for row in rows) for col in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename, so
    a reader (the artifact upload) sees the old file or the whole new one, never a part."""
    directory = path.parent
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would be surprising for a CI artifact
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
