"""`python -m fleetwatch` runs the CLI."""

from fleetwatch.cli import main

main()
