"""Invoke entry point for the repository: the same collection the `archfleet` script runs."""

from toolkit.tasks import namespace

ns = namespace
