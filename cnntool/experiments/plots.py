"""Small matplotlib figures for sweeps and seed groups (Agg backend, imported lazily).

Overlaid training curves of several runs are ``cnntool.viz.curves.plot_curves``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> str:
    from cnntool.fileio import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    finally:
        _plt().close(fig)
    return str(path)


def epoch_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The epoch-end rows of a metrics.csv (integer epochs); all rows if there are none."""
    ends = [r for r in rows if r.get("epoch") is not None and float(r["epoch"]).is_integer()]
    return ends or rows


def band_figure(per_seed: Sequence[list[dict[str, Any]]], path: str | Path, title: str = "") -> str:
    """Mean ± std band over seeds of the per-epoch loss and accuracy (val and train), thin lines per seed."""
    import numpy as np

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    n = min(len(r) for r in per_seed)
    x = np.array([per_seed[0][i]["epoch"] for i in range(n)], dtype=float)
    for ax, metric in zip(axes, ("loss", "acc")):
        for split, color, style in (("val", "C0", "-"), ("train", "C1", "--")):
            ys = np.array([[float(r[i][f"{split}_{metric}"]) for i in range(n)] for r in per_seed])
            for y in ys:
                ax.plot(x, y, style, color=color, alpha=0.25, linewidth=0.8)
            mean, std = ys.mean(0), ys.std(0, ddof=1) if len(ys) > 1 else np.zeros(n)
            ax.plot(x, mean, style, color=color, label=f"{split} mean ± std")
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.25)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss" if metric == "loss" else "accuracy")
        ax.set_title(f"{'loss' if metric == 'loss' else 'accuracy'} (solid: validation, dashed: training)",
                     fontsize=10)
        ax.grid(alpha=0.3)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.suptitle(title or f"{len(per_seed)} seeds")
    return _save(fig, path)


def history_figure(trials: list[dict[str, Any]], monitor: str, maximize: bool, path: str | Path) -> str:
    """Monitored value per trial (complete: dots, pruned: crosses at the last reported value), best so far."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    done = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    pruned = [t for t in trials if t["state"] == "PRUNED" and t.get("last_value") is not None]
    ax.scatter([t["number"] for t in done], [t["value"] for t in done], label="complete", zorder=3)
    if pruned:
        ax.scatter([t["number"] for t in pruned], [t["last_value"] for t in pruned], marker="x", color="grey",
                   label="pruned (last report)", zorder=3)
    best, xs, ys = None, [], []
    for t in sorted(done, key=lambda t: t["number"]):
        if best is None or (t["value"] > best if maximize else t["value"] < best):
            best = t["value"]
        xs.append(t["number"])
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="C3", label="best so far")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(monitor)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{monitor} per trial")
    return _save(fig, path)


def parallel_figure(trials: list[dict[str, Any]], params: list[str], monitor: str, maximize: bool,
                    path: str | Path) -> str:
    """Parallel coordinates: one vertical axis per hyper-parameter plus the objective, one line per trial."""
    import math

    plt = _plt()
    done = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    axes_names = list(params) + [monitor]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(axes_names)), 4.5))
    ticks: dict[str, list[tuple[float, str]]] = {}
    columns: list[list[float]] = []
    for name in axes_names:
        vals = [t["value"] if name == monitor else t["params"].get(name) for t in done]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals if v is not None)
        if numeric and vals:
            nums = [float(v) for v in vals]
            log = name != monitor and min(nums) > 0 and max(nums) / min(nums) > 50
            f = (lambda v: math.log10(v)) if log else (lambda v: v)
            lo, hi = min(map(f, nums)), max(map(f, nums))
            span = (hi - lo) or 1.0
            columns.append([(f(v) - lo) / span for v in nums])
            ticks[name] = [(0.0, f"{min(nums):.3g}"), (1.0, f"{max(nums):.3g}")]
        else:
            cats = sorted({str(v) for v in vals})
            pos = {c: (i / (len(cats) - 1) if len(cats) > 1 else 0.5) for i, c in enumerate(cats)}
            columns.append([pos[str(v)] for v in vals])
            ticks[name] = [(p, c) for c, p in pos.items()]
    values = [t["value"] for t in done]
    if values:
        lo, hi = min(values), max(values)
        cmap = plt.get_cmap("viridis" if maximize else "viridis_r")
        for j in sorted(range(len(done)), key=lambda j: values[j] if maximize else -values[j]):
            c = cmap((values[j] - lo) / ((hi - lo) or 1.0))
            ax.plot(range(len(axes_names)), [col[j] for col in columns], color=c, alpha=0.8)
    for i, name in enumerate(axes_names):
        ax.axvline(i, color="black", linewidth=0.8)
        for y, text in ticks.get(name, []):
            ax.text(i + 0.03, y, text, fontsize=7, va="center")
    ax.set_xticks(range(len(axes_names)))
    ax.set_xticklabels(axes_names, rotation=20)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"parallel coordinates ({len(done)} complete trials, colour = {monitor})")
    return _save(fig, path)
