"""`python -m sync` is the same as the `ecrf` command."""
from sync.cli import cli

cli()
