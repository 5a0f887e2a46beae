"""`python -m toolkit …` runs the archfleet program (CI jobs with only the package installed)."""

from .cli import main

main()
