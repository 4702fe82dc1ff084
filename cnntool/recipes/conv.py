"""conv: the Numba convolution's conformance and benchmark table (cnntool conv-test)."""

from __future__ import annotations

from typing import Any

from cnntool.recipes import recipe
from cnntool.recipes.base import Context, table


def bench_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timed rows of exactly the a–e benchmark cases (not "blur…", "bias…", "dilation…")."""
    from cnntool.conv.suite import BENCH_CASES

    names = {c.name for c in BENCH_CASES}
    return [r for r in rows if r.get("ratio") is not None and r["case"] in names]


def _plot(rows: list[dict[str, Any]], path) -> str | None:
    timed = bench_rows(rows)
    if not timed:
        return None
    from cnntool.experiments.plots import _plt, _save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(timed)), 4))
    ax.bar(range(len(timed)), [r["ratio"] for r in timed])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(timed)))
    ax.set_xticklabels([f"{r['case']} {r['part']}"[:28] for r in timed], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("numba ms / torch ms")
    ax.set_title("Numba conv vs torch on the a–e benchmark (lower is faster)")
    return _save(fig, path)


@recipe("conv", title="Numba convolution: conformance and benchmark", quick="the conv suite's quick mode "
        "(small shapes, 3 timing repetitions)", online="no data set")
def run(ctx: Context) -> dict[str, Any]:
    """The conv-test suite: every coursework convolution case checked against torch (max abs error vs tolerance,
    forward and backward) and the benchmark against torch."""
    from cnntool.conv.suite import run_suite

    report = run_suite(quick=ctx.quick, threads=ctx.thread_count(), progress=lambda case: ctx.log(f"[conv] {case}"))
    rows = [{"case": r.case, "shape": r.shape, "part": r.part, "max_abs_error": r.max_abs_error,
             "tolerance": r.tolerance, "passed": r.passed, "numba_ms": r.numba_ms, "torch_ms": r.torch_ms,
             "ratio": r.ratio} for r in report.results]
    cols = ["case", "shape", "part", "max_abs_error", "tolerance", "passed", "numba_ms", "torch_ms", "ratio"]
    plot = _plot(rows, ctx.out / "conv_ratio.png")
    return {
        "headline": f"{len(rows) - report.failures} of {len(rows)} checks passed ({report.mode} suite, "
                    f"{report.threads} threads, {report.seconds:.1f} s)",
        "passed": report.passed,
        "tables": [table("conv-test", cols, rows)],
        "plots": [plot] if plot else [],
    }
