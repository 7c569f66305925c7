"""`python -m desk` runs the `desk` command."""

from desk.cli import cli

cli()
