"""--limit of the fleet tasks: names or shell globs (fnmatch), in inventory order; a pattern
that selects nothing is an error naming it (toolkit.tasks.fleet.limit_names, pure)."""

from __future__ import annotations

import pytest

from toolkit.tasks.fleet import limit_names

HOSTS = ["amd64-1", "arm64-1", "arm64-2", "ppc64le-1"]


def test_a_glob_selects_every_matching_host_in_inventory_order() -> None:
    assert limit_names(HOSTS, "arm64-*") == ["arm64-1", "arm64-2"]
    assert limit_names(HOSTS, "ppc*,amd64-1") == ["amd64-1", "ppc64le-1"]
    assert limit_names(HOSTS, "arm64-[2]") == ["arm64-2"]
    assert limit_names(HOSTS, "*") == HOSTS


def test_plain_names_still_work_and_overlaps_count_once() -> None:
    assert limit_names(HOSTS, "arm64-1, arm64-*") == ["arm64-1", "arm64-2"]


def test_matching_is_case_sensitive_like_the_names() -> None:
    with pytest.raises(ValueError, match=r"--limit ARM64-\* matches no host"):
        limit_names(HOSTS, "ARM64-*")


def test_a_pattern_that_matches_nothing_is_named_with_the_hosts_there_are() -> None:
    with pytest.raises(ValueError) as caught:
        limit_names(HOSTS, "arm64-*,s390x-*,nope")
    assert str(caught.value) == (
        "--limit s390x-*, nope matches no host (hosts: amd64-1, arm64-1, arm64-2, ppc64le-1)"
    )


def test_an_empty_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="names no host"):
        limit_names(HOSTS, " , ")
