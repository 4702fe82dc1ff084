"""cnntool conv-test: the Numba convolution's conformance suite and benchmark against torch."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnntool.errors import ExitStatus
from cnntool.cli.common import print_json, stderr_console


def conv_test(
    quick: Annotated[bool, typer.Option("--quick", help="Smaller shapes and fewer repetitions (a few seconds).")]
    = False,
    bench_only: Annotated[bool, typer.Option("--bench-only", help="Only the a-e benchmark (forward and backward).")]
    = False,
    check_only: Annotated[bool, typer.Option("--check-only", help="Only the conformance cases, no benchmark.")]
    = False,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1,
                                                   help="Threads for both torch and Numba (default: torch's).")]
    = None,
    reps: Annotated[Optional[int], typer.Option("--reps", min=1, help="Paired timing repetitions per benchmark.")]
    = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Time one training step of this model (e.g. tv:mobilenet_v2, simplecnn) with torch's vs "
                        "the Numba convolutions, and every distinct conv layer of it.")] = None,
    img_size: Annotated[int, typer.Option("--img-size", min=8, help="Image side for --model.")] = 64,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch size for --model.")] = 32,
) -> None:
    """Check the Numba conv2d (forward, grad-input, grad-weight, grad-bias, filter2d) against a float64 torch
    reference and time it against torch. Exits 1 if any case fails.

    Example: [bold]cnntool conv-test --bench-only --threads 2[/bold]
    or [bold]cnntool conv-test --model tv:mobilenet_v2 --img-size 64[/bold]
    """
    from cnntool.errors import ConfigError

    if bench_only and check_only:
        raise ConfigError("--bench-only and --check-only exclude each other; pass at most one")
    if model is not None:
        if bench_only or check_only or quick:
            raise ConfigError("--model times a model; it excludes --quick, --bench-only and --check-only")
        _model_bench(model, img_size, batch, threads, reps, json_out)
        return

    from cnntool.conv.suite import run_suite

    console = stderr_console()
    if console.is_terminal and not json_out:
        with console.status("compiling / running…") as status:
            report = run_suite(quick=quick, check=not bench_only, bench=not check_only, threads=threads, reps=reps,
                               progress=lambda name: status.update(f"conv-test: {name}"))
    else:
        report = run_suite(quick=quick, check=not bench_only, bench=not check_only, threads=threads, reps=reps)

    if json_out:
        print_json(report.to_dict())
    else:
        _render(console, report)
    if not report.passed:
        raise typer.Exit(ExitStatus.FAILURE)


def _model_bench(model: str, img_size: int, batch: int, threads: int | None, reps: int | None,
                 json_out: bool) -> None:
    from cnntool.conv.modelbench import REPS, bench_model

    console = stderr_console()
    if not console.is_terminal:
        console.width = max(console.width, 150)
    kwargs = dict(img_size=img_size, batch=batch, threads=threads, reps=reps or REPS)
    if console.is_terminal and not json_out:
        with console.status("compiling / running…") as status:
            result = bench_model(model, progress=lambda s: status.update(f"conv-test: {s}"), **kwargs)
    else:
        result = bench_model(model, **kwargs)
    if json_out:
        print_json(result.to_dict())
        return
    from rich.table import Table

    step = Table(title=f"one training step: {model}, batch {batch}, 3x{img_size}x{img_size}, "
                       f"{result.threads} threads")
    for col in ("model", "torch ms", "numba ms", "ratio", "goal", "met", "torch channels_last ms", "ratio"):
        step.add_column(col, justify="left" if col == "model" else "right")
    met = "" if result.met is None else ("[green]yes[/green]" if result.met else "[red]no[/red]")
    step.add_row(model, f"{result.torch_ms:.1f}", f"{result.numba_ms:.1f}", f"{result.ratio:.2f}",
                 _fmt(result.goal, ".2f"), met, f"{result.torch_cl_ms:.1f}", f"{result.ratio_cl:.2f}")
    console.print(step)
    layers = Table(title="each distinct conv layer: forward + backward")
    for col in ("shape", "count", "numba ms", "torch ms", "ratio"):
        layers.add_column(col, justify="left" if col == "shape" else "right", no_wrap=col == "shape")
    for lt in result.layers:
        layers.add_row(lt.shape, str(lt.count), f"{lt.numba_ms:.2f}", f"{lt.torch_ms:.2f}", f"{lt.ratio:.2f}")
    console.print(layers)
    console.print(f"losses of the first step: torch {result.loss_torch:.5f}, numba {result.loss_numba:.5f} "
                  "(ratio = median of paired numba/torch times; < 1 means numba is faster)")


def _fmt(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def _err(v: float | None) -> str:
    return "" if v is None else f"{v:.2e}"


def _render(console, report) -> None:
    from cnntool.cli.tables import build_table
    from cnntool.numfmt import fmt_num

    checks = [r for r in report.results if r.max_abs_error is not None]
    timed = [r for r in report.results if r.numba_ms is not None]
    if checks:
        rows = [[r.case, r.shape, r.part, _err(r.max_abs_error), _err(r.tolerance),
                 "[green]pass[/green]" if r.passed else "[bold red]FAIL[/bold red]"] for r in checks]
        console.print(build_table(f"conformance ({report.mode}): max abs error vs a float64 torch reference",
                                  [("case", "text"), ("shape", "text"), ("part", "key"), ("max abs err", "num"),
                                   ("tolerance", "num"), ("ok", "key")], rows))
    if timed:
        rows = [[r.case, r.shape, r.part, f"{r.numba_ms:.2f}", f"{r.torch_ms:.2f}", f"{r.ratio:.2f}",
                 fmt_num(r.gflops, 3)] for r in timed]
        console.print(build_table(f"benchmark ({report.mode}, {report.threads} threads): numba vs torch",
                                  [("case", "text"), ("shape", "text"), ("part", "key"), ("numba ms", "num"),
                                   ("torch ms", "num"), ("ratio", "num"), ("GFLOP/s", "num")], rows))
    verdict = "[green]all passed[/green]" if report.passed else f"[bold red]{report.failures} failed[/bold red]"
    console.print(f"{len(report.results)} checks, {verdict} in {report.seconds:.1f} s "
                  "(ratio = median of paired numba/torch times; < 1 means numba is faster)")
