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
    out: Annotated[str, typer.Option("--out", "-o", help="PNG of the overlaid curves.")] = "runs/compare.png",
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Skip the curves PNG.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table on stderr.")] = False,
) -> None:
    """Compare runs: best/final metrics, epochs, seconds and the options that differ; overlaid curves PNG.

    Example: [bold]cnntool compare runs/train runs/train2 --sort val_acc[/bold]
    """
    from cnntool.experiments.compare import compare_runs

    result = compare_runs(runs, sort=sort, plot=None if no_plot else out)
    if not quiet:
        _render(stderr_console(), result)
    if json:
        print_json(result)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e6:
            return f"{v:g}"
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _render(console, result: dict[str, Any]) -> None:
    from rich.table import Table

    cols = [("best val acc", "best_val_acc"), ("best val loss", "best_val_loss"), ("final val acc", "final_val_acc"),
            ("final train acc", "final_train_acc"), ("test acc", "test_acc"), ("epochs", "epochs"),
            ("sec", "seconds")]
    t = Table(title=f"{len(result['runs'])} runs" + (f", sorted by {result['sort']}" if result["sort"] else ""),
              title_justify="left")
    t.add_column("run", no_wrap=True)
    for name, _ in cols:
        t.add_column(name, justify="right")
    for opt in result["differing_options"]:
        t.add_column(opt)
    for r in result["runs"]:
        name = r["label"] + ("" if r["finished"] else " (unfinished)")
        t.add_row(name, *(_fmt(r[k]) for _, k in cols), *(_fmt(r["options"].get(o)) for o in
                                                          result["differing_options"]))
    console.print(t)
    if result["skipped"]:
        console.print(f"  skipped {len(result['skipped'])} path(s) that are not runs: {', '.join(result['skipped'])}")
    if not result["differing_options"]:
        console.print("  all options are the same")
    if result["plot"]:
        console.print(f"  curves → {result['plot']}")
