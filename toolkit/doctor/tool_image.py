"""The tool image check, pure: what the registry answered for `gitlab.tool_image`
(ToolImageProbe) and the platforms of the inventory's runners -> one Check row.

Where GitLab pipelines look for the merge tool: the component's preflight, merge, release and
verify jobs run `archfleet` from the `archfleet_image` input (toolkit/ci_templates.py), whose
published default is `<templates project registry>/archfleet:<version>`
(render_tool_image_default), pushed by the tag pipeline that `archfleet publish-templates`
starts. Opt-in: the inventory's `gitlab.tool_image` names the image the pipelines use.

What counts:
- missing (404 on the manifest): blocker — every tool job fails at its pull;
- refused (401/403) or unreachable: blocker naming the registry and where the credentials
  came from (never the secret);
- present: the platforms of its index (attestation manifests left out) against the
  platforms of the hosts with the gitlab-runner role, compared as containerd compares them
  (manifest.Platform). On the Docker executor a tool job pulls the image for its runner's
  platform; the doctor cannot see the consuming projects' `merge_tags`, which decide where
  those jobs land. So: none of the runners' platforms present — blocker (no runner of this
  fleet can run a tool job); some missing — warning, since a project whose merge_tags pin the
  jobs to a covered arch works, and any other fails only on the uncovered runners (the fix
  says which tag pins them). On the shell executor `image:` is ignored (the jobs use
  `archfleet` on the runner's PATH: the merge-tool role), so the platforms are reported, not
  judged, and a missing image is a warning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..inventory import GitLabSettings
from ..registry.manifest import Platform
from .checks import Check, blocker, ok, warn

CHECK = "tool-image"


@dataclass(frozen=True)
class ToolImageProbe:
    """One manifest GET (two for a single-platform image: its config tells the platform).

    `credentials`: where the credentials came from (auth.resolve_credentials' source: an env
    variable's name or the docker config entry), None for anonymous. Exactly one of
    `platforms`, `missing`, `refused`, `unreachable`, `invalid`, `broken` says what happened."""

    reference: str
    registry: str
    credentials: str | None = None
    platforms: tuple[Platform, ...] | None = None
    digest: str | None = None
    index: bool = True
    missing: bool = False
    refused: str | None = None
    unreachable: str | None = None
    invalid: str | None = None  # the reference itself
    broken: str | None = None  # an answer that is no manifest of an image


def publish_fix(reference: str) -> str:
    return (
        f"publish it: `archfleet publish-templates --project GROUP/TEMPLATES --url GITLAB "
        f"--wheel archfleet-VERSION-py3-none-any.whl` tags the release, whose pipeline builds, "
        f"merges and pushes {reference} (if the tag exists, retry that tag's pipeline); or set "
        "gitlab.tool_image to the archfleet_image your pipelines really use"
    )


def _credentials_text(probe: ToolImageProbe) -> str:
    return f"the credentials from {probe.credentials}" if probe.credentials else "anonymous access"


def _credentials_fix(probe: ToolImageProbe) -> str:
    where = (
        f"correct the credentials in {probe.credentials}"
        if probe.credentials
        else f"log in to {probe.registry} (`docker login {probe.registry}` writes "
        "~/.docker/config.json) or set REGISTRY_USER and REGISTRY_PASSWORD"
    )
    return (
        f"{where}: a user that may pull the image (on GitLab's registry: a token with "
        "read_registry)"
    )


def evaluate_tool_image(
    settings: GitLabSettings,
    probe: ToolImageProbe,
    runners: Mapping[Platform, Sequence[str]],
    unknown: Sequence[str] = (),
) -> Check:
    """`runners`: each platform of the gitlab-runner hosts and those hosts' names;
    `unknown`: runner hosts whose platform is not known (no arch declared, probe failed)."""
    ref, registry = probe.reference, probe.registry
    shell = settings.executor == "shell"
    if probe.invalid is not None:
        return blocker(
            CHECK,
            ref,
            f"gitlab.tool_image: {probe.invalid}",
            "set gitlab.tool_image to the archfleet_image reference, REGISTRY/PATH:TAG[@DIGEST]",
        )
    if probe.unreachable is not None:
        return blocker(
            CHECK,
            ref,
            f"cannot reach the registry {registry}: {probe.unreachable}",
            f"check that {registry} is up and reachable from here (proxy, firewall); for a "
            "plain-HTTP lab registry set gitlab.tool_image_insecure: true",
        )
    if probe.refused is not None:
        return blocker(
            CHECK,
            ref,
            # The client's message names the credentials' source where it knows it.
            f"the registry {registry} refused "
            + (
                f"the credentials: {probe.refused}"
                if probe.credentials and probe.credentials in probe.refused
                else f"{_credentials_text(probe)}: {probe.refused}"
            ),
            _credentials_fix(probe),
        )
    if probe.broken is not None:
        return blocker(
            CHECK,
            ref,
            f"{registry} answered, but not with an image: {probe.broken}",
            publish_fix(ref),
        )
    if probe.missing or probe.platforms is None:
        detail = f"{registry} has no manifest for {ref} (asked with {_credentials_text(probe)})"
        if shell:
            return warn(
                CHECK,
                ref,
                f"{detail}; the shell executor ignores image: (its tool jobs use archfleet on "
                "the runner's PATH), so only Docker-executor runners outside this inventory "
                "would pull it",
                publish_fix(ref),
            )
        return blocker(
            CHECK, ref, f"{detail}: every preflight, merge and verify job fails", publish_fix(ref)
        )
    found = [p for p in probe.platforms if not p.is_unknown]
    has = ", ".join(sorted(str(p) for p in found)) or "no platform"
    kind = "index" if probe.index else "single-platform image"
    digest = f" {probe.digest}" if probe.digest else ""
    detail = f"{kind}{digest} with {has}"
    if unknown:
        detail += f"; not compared for {', '.join(unknown)} (arch unknown: declare arch:)"
    if shell:
        return ok(
            CHECK,
            ref,
            f"{detail} (executor shell: the runners ignore image:, the tool jobs use archfleet "
            "on their PATH)",
        )
    covered = {p: hosts for p, hosts in runners.items() if p in found}
    uncovered = {p: hosts for p, hosts in runners.items() if p not in found}
    if not runners:
        return ok(CHECK, ref, f"{detail} (no gitlab-runner host to compare with)")
    if not uncovered:
        return ok(CHECK, ref, f"{detail}: every runner platform is there")
    lacking = "; ".join(f"{p} ({', '.join(hosts)})" for p, hosts in sorted(uncovered.items()))
    names = ", ".join(str(p) for p in sorted(uncovered))
    republish = (
        f"publish the tool image for {names} too (the templates project's pipeline builds "
        "one child per platform it has runners for)"
    )
    if not covered:
        return blocker(
            CHECK,
            ref,
            f"{detail}; no runner of this inventory can run it: {lacking}",
            republish,
        )
    pins = ", ".join(sorted(p.tag_suffix for p in covered))
    return warn(
        CHECK,
        ref,
        f"{detail}; lacks {lacking}: a preflight, merge or verify job that lands there fails "
        "at its pull (which runners take them is the projects' merge_tags)",
        f"pin the tool jobs to a covered arch with the component input merge_tags (a tag "
        f"only runners of {pins} have, e.g. merge_tags: [{pins.split(', ')[0]}]), or {republish}",
    )
