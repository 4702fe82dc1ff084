"""cnntool recipe list / run: coursework experiments as one command each (library: cnntool.recipes)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from cnntool.errors import ExitStatus
from cnntool.cli import options as o
from cnntool.cli.common import ErrorHandlingGroup, print_json, stderr_console

app = typer.Typer(cls=ErrorHandlingGroup, help="Coursework experiments as one command each: a table, results.md "
                                               "and plots at the end.", no_args_is_help=True)


@app.command("list")
def list_recipes(json: Annotated[bool, typer.Option("--json", help="Print the list as JSON on stdout.")] = False
                 ) -> None:
    """List the recipes.

    Example: [bold]cnntool recipe list[/bold]
    """
    from cnntool.recipes import list_recipes as recipes

    items = recipes()
    if json:
        print_json([{"name": r.name, "title": r.title, "description": r.description, "quick": r.quick,
                     "online": r.online} for r in items])
        return
    from rich.table import Table

    t = Table(title="cnntool recipes (cnntool recipe run NAME [--quick] [--data ...])", title_justify="left")
    for col in ("name", "what it runs", "--quick"):
        t.add_column(col, overflow="fold")
    for r in items:
        t.add_row(r.name, r.description, r.quick)
    stderr_console().print(t)


@app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="Recipe name (cnntool recipe list).", show_default=False)],
    data: Annotated[str, typer.Option("--data", help="digits (embedded, offline), or the coursework's data set: "
                                                     "cifar10, imagenette, inaturalist, a class-per-folder "
                                                     "directory, ...")] = "digits",
    data_dir: Annotated[Optional[str], typer.Option("--data-dir", help="Where named data sets live.")] = None,
    download: Annotated[bool, typer.Option("--download", help="Download a named data set if missing.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="A short version (fewer epochs, trials, seeds).")] = False,
    out: Annotated[Optional[str], typer.Option("--out", help="Output folder (default RUNS_ROOT/recipes/NAME, "
                                                             "NAME2, ...; never overwritten).")] = None,
    runs_root: Annotated[str, typer.Option("--runs-root", help="Root of the default output folder.")] = "runs",
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads per run (default: half the "
                                                                     "cores, at least 1).")] = None,
    log: o.Log = None, mlflow_uri: o.MlflowUri = None,  # every run tracked, grouped by the recipe
    json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-run progress, only the final tables.")] = False,
) -> None:
    """Run a recipe: its runs, a rich table on stderr, results.md, results.json and PNG plots in the output folder.

    Example: [bold]cnntool recipe run ablation --quick[/bold]  (digits, no download)
    """
    console = stderr_console()
    from cnntool.cli.train_view import training_views
    from cnntool.recipes import run_recipe

    with training_views(quiet, console) as view:
        result = run_recipe(name, data=data, quick=quick, out=out, runs_root=runs_root, data_dir=data_dir,
                            download=download, threads=threads, reporter=None if quiet else view, track=log,
                            mlflow_uri=mlflow_uri,
                            log=None if quiet else (lambda text: console.print(f"[dim]{text}[/dim]")))
    for t in rich_tables(result):
        console.print(t)
    console.print(f"[bold]{result.get('headline', '')}[/bold]")
    console.print(f"  {result['seconds']:.1f} s · results → {result['results_md']} · "
                  f"{len(result['plots'])} plot(s) in {result['out']}")
    if json:
        print_json(result)
    if result.get("passed") is False:
        raise typer.Exit(ExitStatus.FAILURE)


_TEXT_COLUMNS = ("run_dir", "variant", "step", "change", "case", "net", "strategy", "part", "shape", "note")


def rich_tables(result: dict[str, Any]) -> list:
    from cnntool.cli.tables import build_table
    from cnntool.recipes.report import fmt

    tables = []
    for t in result.get("tables", []):
        # the run directories are listed in results.md; the terminal keeps its 80 columns for the numbers
        cols = [c for c in t["columns"] if c != "run_dir"]
        kinds = ["text" if c in _TEXT_COLUMNS else "num" for c in cols]
        rows = [[fmt(row.get(c), c) for c in cols] for row in t["rows"]]
        tables.append(build_table(t["title"], list(zip(cols, kinds)), rows))
    return tables
