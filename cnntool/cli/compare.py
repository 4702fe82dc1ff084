"""cnntool compare: runs side by side (best/final metrics, time, the options that differ), overlaid curves."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from cnntool.cli.common import print_json, stderr_console


def compare(
    runs: Annotated[list[str], typer.Argument(help="Run directories or glob patterns (quote globs for "
                                                   "recursive ones: 'runs/sweep-x/trial*').", show_default=False)],
    sort: Annotated[Optional[str], typer.Option(
        "--sort", help="Sort by a column (val_acc = best val acc, test_acc, seconds, ...) or a differing option; "
                       "accuracies best first, the rest ascending.")] = None,
    out: Annotated[Optional[str], typer.Option(
        "--out", "-o", help="PNG of the overlaid curves; replaced if it exists (default: runs/compare.png, "
                            "or runs/compare-2.png, -3, ... when that exists).")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Options that differ as columns of the main table "
                                                      "(default: a second table, to fit 80 columns).")] = False,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Skip the curves PNG.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table on stderr.")] = False,
) -> None:
    """Compare runs: best/final metrics, epochs, seconds and the options that differ; overlaid curves PNG.

    Example: [bold]cnntool compare runs/train runs/train2 --sort val_acc[/bold]
    """
    from cnntool.experiments.compare import compare_runs

    from cnntool.fileio import next_free_path

    plot = None if no_plot else (out or next_free_path("runs/compare.png"))
    result = compare_runs(runs, sort=sort, plot=plot)
    if not quiet:
        _render(stderr_console(), result, wide=wide)
    if json:
        print_json(result)
    elif result["plot"]:
        typer.echo(result["plot"])


# (header, key): short headers so the eight number columns fit 80 columns
COLUMNS = (("val acc", "best_val_acc"), ("val loss", "best_val_loss"), ("last val", "final_val_acc"),
           ("train acc", "final_train_acc"), ("test acc", "test_acc"), ("epochs", "epochs"), ("sec", "seconds"))


def _render(console, result: dict[str, Any], wide: bool = False) -> None:
    from cnntool.cli.tables import build_table
    from cnntool.numfmt import fmt_option

    keys = {k for _, k in COLUMNS}
    # an option that is also a column (epochs) is shown once, in the column
    options = [o for o in result["differing_options"] if o not in keys]
    title = (f"{len(result['runs'])} runs" + (f", sorted by {result['sort']}" if result["sort"] else "")
             + " (val acc/loss: best epoch; last val: final epoch)")
    names = [r["label"] + ("" if r["finished"] else " (unfinished)") for r in result["runs"]]
    columns = [("run", "key"), *((name, "num") for name, _ in COLUMNS)]
    rows = [[n, *(r[k] for _, k in COLUMNS)] for n, r in zip(names, result["runs"])]
    if wide:
        columns += [(o, "text") for o in options]
        rows = [row + [_opt(r["options"].get(o)) for o in options] for row, r in zip(rows, result["runs"])]
    console.print(build_table(title, columns, rows))
    if options and not wide:
        console.print(build_table("options that differ (--wide: as columns)",
                                  [("run", "key"), ("options", "text")],
                                  [[n, " ".join(fmt_option(o, r["options"].get(o), sig=4) for o in options)]
                                   for n, r in zip(names, result["runs"])]))
    if result["skipped"]:
        console.print(f"  skipped {len(result['skipped'])} path(s) that are not runs: {', '.join(result['skipped'])}")
    if not result["differing_options"]:
        console.print("  all options are the same")


def _opt(v: Any) -> str:
    from cnntool.numfmt import fmt_num

    return ",".join(fmt_num(x) for x in v) if isinstance(v, (list, tuple)) else fmt_num(v)
