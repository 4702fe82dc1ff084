"""cnntool viz: figures from runs and data sets (placeholder until its issue lands)."""

import typer

from cnntool.cli.common import ErrorHandlingGroup, not_implemented

app = typer.Typer(cls=ErrorHandlingGroup, help="Draw figures from runs, checkpoints and data sets.",
                  no_args_is_help=True)


@app.command("curves")
def curves() -> None:
    """Not implemented yet."""
    not_implemented("viz curves")
