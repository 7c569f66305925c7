"""`python -m desk` runs the `desk` command."""

from desk.ops.cli import cli

cli()
