"""check-bases: does every base image a Dockerfile pulls offer every platform the build needs?

The Dockerfile side is dockerfile.py (pure). Here: group its base uses by image, read each
image's manifest ONCE (one GET per distinct base, plus auth, plus one config GET when the tag
holds a single image rather than an index), and match each needed platform the way BuildKit
picks a base (util/imageutil/config.go: containerd's `platforms.Only(target)`, best match
first; platforms.py). An index's attestation entries (unknown/unknown) are never a match.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .auth import CredentialsError
from .client import RegistryClient, RegistryError
from .dockerfile import BaseUse, Resolution
from .manifest import ImageIndex, ManifestError, Platform, parse_manifest, platform_from_config
from .parallel import attempt_all
from .reference import Reference, ReferenceError, parse_reference

OK, COMPATIBLE, MISSING, UNCHECKED = "ok", "compatible", "missing", "error"


@dataclass(frozen=True)
class Offer:
    """What a base's tag holds: its digest, media type and the platforms it offers."""

    digest: str
    media_type: str
    platforms: tuple[Platform, ...]
    is_index: bool


@dataclass(frozen=True)
class PlatformCheck:
    wanted: Platform
    status: str  # ok, compatible (a containerd match that is not the same platform), missing
    matched: Platform | None
    why: str  # target, build, explicit (see dockerfile.BaseUse)
    stages: tuple[str, ...]  # where it is used: "stage (line N)"


@dataclass(frozen=True)
class BaseResult:
    image: str  # as the Dockerfile names it, after ARG expansion
    reference: str  # normalised (docker.io/library/debian:12)
    checks: tuple[PlatformCheck, ...]
    offer: Offer | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.status != MISSING for c in self.checks)


@dataclass(frozen=True)
class CheckReport:
    file: str
    targets: tuple[Platform, ...]
    build: str  # a platform, or "native"
    bases: tuple[BaseResult, ...]
    # Stages that need no registry: `scratch`, and `FROM <earlier stage>`.
    local: tuple[tuple[str, str, str], ...] = ()  # (stage, kind, base)
    skipped: tuple[str, ...] = ()  # stages the target stage does not reach
    registry_requests: int = 0
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(b.ok for b in self.bases)

    @property
    def problems(self) -> list[str]:
        found = []
        for base in self.bases:
            if base.error:
                found.append(f"base {base.image}: {base.error}")
                continue
            missing = [c for c in base.checks if c.status == MISSING]
            if missing:
                offered = ", ".join(str(p) for p in base.offer.platforms) if base.offer else ""
                for check in missing:
                    found.append(
                        f"base {base.image} ({', '.join(check.stages)}) does not offer "
                        f"{check.wanted} (offers: {offered or 'nothing'})"
                    )
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "file": self.file,
            "platforms": [str(p) for p in self.targets],
            "buildPlatform": self.build,
            "bases": [
                {
                    "image": b.image,
                    "reference": b.reference,
                    "digest": b.offer.digest if b.offer else None,
                    "mediaType": b.offer.media_type if b.offer else None,
                    "offers": [str(p) for p in b.offer.platforms] if b.offer else [],
                    "error": b.error,
                    "platforms": [
                        {
                            "platform": str(c.wanted),
                            "status": c.status,
                            "matched": str(c.matched) if c.matched else None,
                            "why": c.why,
                            "stages": list(c.stages),
                        }
                        for c in b.checks
                    ],
                }
                for b in self.bases
            ],
            "local": [{"stage": s, "kind": k, "base": b} for s, k, b in self.local],
            "skippedStages": list(self.skipped),
            "problems": self.problems,
            "warnings": list(self.warnings),
            "registryRequests": self.registry_requests,
        }


@dataclass(frozen=True)
class _Need:
    image: str
    reference: Reference | None
    error: str | None
    # wanted platform -> (why, where it is used)
    platforms: dict[Platform, tuple[str, list[str]]]


def group_uses(resolutions: Sequence[Resolution]) -> list[_Need]:
    """Every distinct base (by normalised reference), with the platforms it must offer, in the
    Dockerfile's order. Pure."""
    needs: dict[str, _Need] = {}
    for resolution in resolutions:
        for use in resolution.uses:
            key, reference, error = _normalise(use)
            need = needs.setdefault(key, _Need(use.image, reference, error, {}))
            _, where = need.platforms.setdefault(use.platform, (use.why, []))
            label = f"{use.stage} (line {use.line})" + (f" {use.via}" if use.via != "FROM" else "")
            if label not in where:
                where.append(label)
    return list(needs.values())


def _normalise(use: BaseUse) -> tuple[str, Reference | None, str | None]:
    try:
        reference = parse_reference(use.image)
    except ReferenceError as exc:
        return use.image, None, str(exc)
    return str(reference), reference, None


def match(wanted: Platform, offered: Sequence[Platform]) -> tuple[str, Platform | None]:
    """containerd's Only(wanted) with its preference order (compare.go platformVector): the
    platform BuildKit would pull for `wanted`, and whether it is that platform itself."""
    ranked = wanted.compatible()
    best = min(
        (p for p in offered if p in ranked), key=ranked.index, default=None
    )  # offered platforms are normalised (Platform), as ranked ones are
    if best is None:
        return MISSING, None
    return (OK if best == wanted else COMPATIBLE), best


class BaseLookup:
    """Reads bases' manifests: one client per registry (its auth tokens reused), each
    reference read once per run."""

    def __init__(self, make_client: Callable[[str], RegistryClient]) -> None:
        self._make_client = make_client
        self.clients: dict[str, RegistryClient] = {}
        self._offers: dict[str, Offer] = {}
        # Bases are read in parallel: threads reading from one registry share one client.
        self._lock = threading.Lock()

    def client(self, registry: str) -> RegistryClient:
        with self._lock:
            if registry not in self.clients:
                self.clients[registry] = self._make_client(registry)
            return self.clients[registry]

    def offer(self, reference: Reference) -> Offer:
        """`reference`'s offer, read on first use (check_bases asks once per distinct base)."""
        key = str(reference)
        if key not in self._offers:
            self._offers[key] = self._read(reference)
        return self._offers[key]

    def _read(self, reference: Reference) -> Offer:
        client = self.client(reference.registry)
        fetched = client.get_manifest(reference.repository, reference.reference)
        parsed = parse_manifest(fetched.raw, fetched.media_type, where=str(reference))
        if isinstance(parsed, ImageIndex):
            platforms = tuple(
                dict.fromkeys(
                    entry.platform
                    for entry in parsed.manifests
                    if entry.platform is not None
                    and not entry.is_attestation
                    and not entry.platform.is_unknown
                )
            )
            return Offer(fetched.digest, fetched.media_type, platforms, True)
        config = client.get_blob(reference.repository, parsed.config.digest)
        platform = platform_from_config(config, where=f"{reference} config")
        return Offer(fetched.digest, fetched.media_type, (platform,), False)

    @property
    def requests(self) -> int:
        return sum(c.stats.registry + c.stats.token for c in self.clients.values())


def check_bases(
    file: str,
    resolutions: Sequence[Resolution],
    lookup: BaseLookup,
    *,
    build: str,
) -> CheckReport:
    needs = group_uses(resolutions)

    def read(need: _Need) -> Offer | None:
        return None if need.reference is None else lookup.offer(need.reference)

    outcomes = attempt_all(read, needs)
    results = []
    for outcome in outcomes:
        need = outcome.item
        if need.error or outcome.error is not None:
            error = need.error or _describe(outcome.error)
            checks = tuple(
                PlatformCheck(p, UNCHECKED, None, why, tuple(where))
                for p, (why, where) in need.platforms.items()
            )
            results.append(
                BaseResult(need.image, str(need.reference or need.image), checks, None, error)
            )
            continue
        offer = outcome.value
        assert offer is not None
        checks = tuple(
            PlatformCheck(p, *match(p, offer.platforms), why, tuple(where))
            for p, (why, where) in need.platforms.items()
        )
        results.append(BaseResult(need.image, str(need.reference), checks, offer))
    first = resolutions[0] if resolutions else None
    local: list[tuple[str, str, str]] = []
    skipped: list[str] = []
    if first is not None:
        local = [
            (s.stage, s.kind, s.base) for s in first.stages if s.kind != "image" and s.reachable
        ]
        skipped = [s.stage for s in first.stages if not s.reachable]
    warnings = [
        f"base {r.image}: {c.wanted} is not offered; a build would use {c.matched} "
        "(containerd's compatible match)"
        for r in results
        for c in r.checks
        if c.status == COMPATIBLE
    ]
    return CheckReport(
        file=file,
        targets=tuple(r.target for r in resolutions),
        build=build,
        bases=tuple(results),
        local=tuple(local),
        skipped=tuple(skipped),
        registry_requests=lookup.requests,
        warnings=tuple(warnings),
    )


def _describe(error: BaseException | None) -> str:
    """A registry's refusal or bad content is that base's result; anything else is a bug."""
    if isinstance(error, (RegistryError, ManifestError, CredentialsError)):
        return str(error)
    raise error if error is not None else AssertionError("no error to describe")


def parse_build_args(pairs: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """`--build-arg K=V`; a bare `K` takes K's value from the environment, as docker build
    does (and is left out when the environment has none)."""
    args: dict[str, str] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise ValueError(f"--build-arg {pair!r}: expected NAME=VALUE (or NAME to take $NAME)")
        if eq:
            args[name] = value
        elif name in environ:
            args[name] = environ[name]
    return args
