"""`python -m toolkit.registry merge-manifest|verify-manifest …`: the manifest job's entry."""

from ..cli import main

main()
