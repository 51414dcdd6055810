"""`python -m callplane` runs the `callplane` command."""

from callplane.cli import main

main()
