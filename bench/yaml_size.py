"""How big the GitLab component is: the file, and the pipeline one and two inclusions expand to.

"Expanded" is gitlab-ci-local's `--preview` (includes, inputs, `extends` and `!reference`
resolved: what GitLab's merged configuration holds before it creates jobs), the measure issue
11 used for its 336 KB / 564 KB figures. Two inclusions are the same component with two job
prefixes, as a monorepo building two images includes it. Figures, never pass/fail.

    python bench/yaml_size.py [--root ci-templates] [--json]

`--root` measures another checkout's ci-templates/ (before/after a change).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
# `python bench/yaml_size.py` puts bench/ on sys.path, not the repository root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support import gitlab_ci_local as gcl  # noqa: E402
from toolkit.ci_templates import COMPONENT_PATH, INCLUDE_PATH, default_root  # noqa: E402

# A protected push pipeline: every rule that can exclude a job is evaluated the usual way.
VARIABLES = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_REF_PROTECTED": "true"}


def expanded_size(work: Path, component: str, prefixes: list[str]) -> tuple[int, int]:
    """Bytes of the expanded pipeline, and its number of (visible) jobs."""
    ci = {"include": [{"local": COMPONENT_PATH, "inputs": {"job_prefix": p}} for p in prefixes]}
    project = gcl.make_project(
        work / "-".join(prefixes),
        {COMPONENT_PATH: component, ".gitlab-ci.yml": yaml.safe_dump(ci, sort_keys=False)},
    )
    result = gcl.run(project, "--preview", "--no-json-schema-validation", variables=VARIABLES)
    if result.code != 0:
        raise SystemExit(f"gitlab-ci-local --preview failed:\n{result.output}")
    data = yaml.safe_load(result.stdout)
    jobs = [k for k, v in data.items() if isinstance(v, dict) and "script" in v]
    return len(result.stdout.encode()), len([j for j in jobs if not j.startswith(".")])


def measure(root: Path) -> dict[str, Any]:
    component = (root / COMPONENT_PATH).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="archfleet-yaml-size-") as tmp:
        one, one_jobs = expanded_size(Path(tmp), component, ["app"])
        two, two_jobs = expanded_size(Path(tmp), component, ["app", "api"])
    return {
        "component_bytes": len(component.encode()),
        "include_bytes": (root / INCLUDE_PATH).stat().st_size,
        "one_inclusion_expanded_bytes": one,
        "one_inclusion_jobs": one_jobs,
        "two_inclusions_expanded_bytes": two,
        "two_inclusions_jobs": two_jobs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=default_root(), help="a ci-templates/ dir")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not gcl.binary().exists():
        print(f"gitlab-ci-local not installed at {gcl.binary()} (bash scripts/bootstrap)")
        return 2
    figures = measure(args.root)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    kib = 1024
    rows = [
        (f"component file ({COMPONENT_PATH})", figures["component_bytes"], ""),
        (f"include file ({INCLUDE_PATH})", figures["include_bytes"], ""),
        (
            "one inclusion, expanded",
            figures["one_inclusion_expanded_bytes"],
            f"  ({figures['one_inclusion_jobs']} jobs)",
        ),
        (
            "two inclusions, expanded",
            figures["two_inclusions_expanded_bytes"],
            f"  ({figures['two_inclusions_jobs']} jobs)",
        ),
    ]
    for label, size, note in rows:
        print(f"{label:<40} {size / kib:7.1f} KiB{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
