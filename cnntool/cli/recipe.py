"""cnntool recipe (placeholder until its issue lands)."""

import typer

from cnntool.cli.common import ErrorHandlingGroup, not_implemented

app = typer.Typer(cls=ErrorHandlingGroup, help="Coursework experiments as one command each.", no_args_is_help=True)


@app.command("list")
def list_recipes() -> None:
    """Not implemented yet."""
    not_implemented("recipe list")
