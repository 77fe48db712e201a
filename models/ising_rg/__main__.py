"""``python -m models.ising_rg``."""

from .cli import main

main()
