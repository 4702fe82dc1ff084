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
) -> None:
    """Check the Numba conv2d (forward, grad-input, grad-weight, grad-bias, filter2d) against a float64 torch
    reference and time it against torch. Exits 1 if any case fails.

    Example: [bold]cnntool conv-test --bench-only --threads 2[/bold]
    """
    from cnntool.errors import ConfigError

    if bench_only and check_only:
        raise ConfigError("--bench-only and --check-only exclude each other; pass at most one")

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
