"""cnntool benchmark: one model on torch eager, torch channels-last, ONNX FP32 and ONNX INT8."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnntool.cli.common import print_json, stderr_console
from cnntool.export.choices import DEFAULT_CALIB, DEFAULT_REPEATS, RUNTIMES


def benchmark(
    target: Annotated[str, typer.Argument(help="Run directory (uses best.pt) or checkpoint file.",
                                          show_default=False)],
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Threads for every runtime "
                                                   "(default: all cores).")] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Interleaved timing repeats (medians are "
                                         "reported).")] = DEFAULT_REPEATS,
    runtime: Annotated[Optional[list[str]], typer.Option("--runtime", help="Only these runtimes (repeatable): "
                                                         f"{', '.join(RUNTIMES)}.")] = None,
    calib: Annotated[int, typer.Option("--calib", min=1, help="INT8 calibration images from the training "
                                       "split.")] = DEFAULT_CALIB,
    test_limit: Annotated[Optional[int], typer.Option("--test-limit", min=1, help="Top-1 on at most this many "
                                                      "test images (default: all).")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the table as one JSON object on stdout.")] = False,
) -> None:
    """Latency (batch 1), throughput (batch 32, 64), file size and test top-1 on every runtime.

    Every runtime gets the same input and thread count; repeats are interleaved and medians reported.

    Example: [bold]cnntool benchmark runs/train --threads 2 --json[/bold]
    """
    from cnntool.export.benchmark import benchmark as run_benchmark

    console = stderr_console()
    status = console.status("benchmarking") if console.is_terminal and not json else None
    if status:
        status.start()
    try:
        result = run_benchmark(target, threads=threads, repeats=repeats, runtimes=tuple(runtime or ()),
                               calib=calib, test_limit=test_limit, progress=status.update if status else None)
    finally:
        if status:
            status.stop()
    if json:
        print_json(result.to_dict())
        return
    _render(console, result)


def _render(console, r) -> None:
    from rich.table import Table

    t = Table(title=f"{r.arch} {r.input}: {r.threads} thread(s), median of {r.repeats} interleaved repeats")
    t.add_column("runtime", no_wrap=True)
    for col in ("b1 ms", "b32 img/s", "b64 img/s", "×FP32 b32", "MB", "top-1", "agree"):
        t.add_column(col, justify="right")

    def f(v, fmt):
        return "—" if v is None else format(v, fmt)

    for row in r.rows:
        t.add_row(row.runtime, f(row.latency_ms_b1, ".2f"), f(row.images_per_s_b32, ",.0f"),
                  f(row.images_per_s_b64, ",.0f"), f(row.speedup_b32, ".2f"),
                  f(None if row.size_bytes is None else row.size_bytes / 1e6, ".2f"),
                  f(row.top1, ".2%"), f(row.agreement, ".2%"))
    console.print(t)
    console.print("b1 ms: latency at batch 1; img/s: throughput; ×FP32 b32: throughput at batch 32 relative to "
                  "ONNX FP32; agree: top-1 agreement with torch eager"
                  + (f"; top-1 on {r.test_images} test images" if r.test_images else ""))
    for note in r.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
