"""cnntool report: one self-contained HTML report (or Markdown + PNGs) of runs, seeds, sweeps and recipes."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnntool.cli.common import print_json, stderr_console


def report(
    targets: Annotated[list[str], typer.Argument(help="Run directories, or folders of runs, seeds (seeds.json), "
                                                      "a sweep (sweep.json) or a recipe (results.json).",
                                                 show_default=False)],
    out: Annotated[str, typer.Option("--out", "-o", help="The report file (.html; with --md, .md plus "
                                                         "NAME_files/ PNGs).")] = "report.html",
    md: Annotated[bool, typer.Option("--md", help="Write Markdown + PNG files instead of HTML (pandoc-ready).")
                  ] = False,
    explain: Annotated[int, typer.Option("--explain", help="One run: also filters, feature maps, CAM and saliency "
                                                           "for N test images (0 = off).")] = 0,
    title: Annotated[Optional[str], typer.Option("--title", help="Report title.", show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="Where evaluation runs (cpu, cuda).")] = "cpu",
    json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary line on stderr.")] = False,
) -> None:
    """Write a report: options, model summary, curves, metrics, confusion matrices, predictions; comparison tables
    and overlaid curves for several runs; trial table, history and parallel plots for a sweep.

    Example: [bold]cnntool report runs/train -o report.html[/bold]
    """
    from cnntool.report import build_report

    result = build_report(targets, out, markdown=md, explain=explain, title=title, device=device)
    if not quiet:
        stderr_console().print(f"report → [cyan]{result['out']}[/cyan] ({len(result['sections'])} section(s), "
                               f"{result['tables']} tables, {result['figures']} figures)")
    if json:
        print_json(result)
