"""The Typer app. Each command lives in its own small module; heavy imports happen inside commands."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from cnntool import __version__
from cnntool.cli import (
    benchmark,
    compare,
    conv_test,
    eval_cmd,
    export_cmd,
    finetune,
    lr_find,
    predict,
    recipe,
    report,
    summary,
    sweep,
    train,
    viz,
)
from cnntool.cli.common import DEBUG_ENV, ErrorHandlingGroup, route_library_warnings

app = typer.Typer(
    name="cnntool",
    cls=ErrorHandlingGroup,
    help="Train, fine-tune, evaluate, visualise, export and run image-classification CNNs.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cnntool {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """cnntool: image-classification CNNs from the shell."""
    route_library_warnings()
    if debug:
        os.environ[DEBUG_ENV] = "1"


app.command("train")(train.train)
app.command("conv-test")(conv_test.conv_test)
app.command("finetune")(finetune.finetune)
app.command("lr-find")(lr_find.lr_find)
app.command("eval")(eval_cmd.eval_command)
app.command("export")(export_cmd.export)
app.command("predict")(predict.predict)
app.command("summary")(summary.summary)
app.command("sweep")(sweep.sweep)
app.command("compare")(compare.compare)
app.command("benchmark")(benchmark.benchmark)
app.command("report")(report.report)
app.add_typer(viz.app, name="viz")
app.add_typer(recipe.app, name="recipe")


def run() -> None:
    app()
