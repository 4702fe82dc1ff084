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


def _axis(name: str, vals: list[Any], spec: dict[str, Any] | None) -> dict[str, Any]:
    """How one parallel-coordinates axis maps values to [0, 1] and where its labelled ticks go.

    ``spec`` (from the sweep space: type, low, high, log, choices) fixes the range, scale and category order;
    without it the trials' values decide (numbers spanning more than a factor 20 on a log scale)."""
    import math

    import numpy as np
    from matplotlib.ticker import LogLocator, MaxNLocator

    from cnntool.numfmt import fmt_num

    spec = spec or {}
    present = [v for v in vals if v is not None]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if spec.get("type") == "categorical" or not numeric or not present and not spec:
        choices = list(spec.get("choices", ())) or [v for _, v in sorted({str(v): v for v in present}.items())]
        if choices and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in [*choices, *present]):
            # numbers as choices (lr: [1e-2, 1e-3, 1e-4]): ascending from the bottom, written like ticks
            choices = sorted({float(c) for c in [*choices, *present]})
            small = [abs(c) for c in choices if c]
            sci = 1.0 if small and min(small) < 1e-2 else 1e-3
            key, names = float, [fmt_num(c, 3, sci_below=sci) if c else "0" for c in choices]
        else:
            key = str
            names = [str(c) for c in choices]
            names += sorted({str(v) for v in present} - set(names))
            choices = names
        pos = {key(c): (i / (len(names) - 1) if len(names) > 1 else 0.5) for i, c in enumerate(choices)}
        return {"y": [pos[key(v)] if v is not None else math.nan for v in vals], "log": False,
                "lim": (-0.05, 1.05), "ticks": list(pos.values()), "labels": names}
    nums = [float(v) for v in present]
    lo = float(spec["low"]) if spec.get("low") is not None else min(nums)
    hi = float(spec["high"]) if spec.get("high") is not None else max(nums)
    lo, hi = min([lo, *nums]), max([hi, *nums])
    log = bool(spec["log"]) if "log" in spec else (lo > 0 and hi / lo > 20)
    log = log and lo > 0
    f = math.log10 if log else float
    a, b = f(lo), f(hi)
    if b - a < 1e-12:
        a, b = (a - 0.5, b + 0.5) if log else (a - (abs(a) or 1) * 0.1, b + (abs(b) or 1) * 0.1)
    pad = 0.05 * (b - a)
    lim = (10 ** (a - pad), 10 ** (b + pad)) if log else (a - pad, b + pad)

    def inside(ts):
        return [t for t in ts if lo - 1e-9 * abs(lo) <= t <= hi + 1e-9 * abs(hi)]

    if log:
        ticks = inside(LogLocator(base=10).tick_values(lo, hi))
        if len(ticks) < 2:  # less than two decades: 1-2-5 steps (32 … 256: 50, 100, 200)
            ticks = inside(LogLocator(base=10, subs=(1.0, 2.0, 5.0)).tick_values(lo, hi))
        sci = 1.0 if min(ticks, default=1.0) < 1e-2 else 1e-3  # one notation per axis: 1e-4 … 1e-2
    else:
        ticks = inside(MaxNLocator(nbins=5, integer=spec.get("type") == "int").tick_values(lo, hi))
        sci = 1e-3
    if len(ticks) < 2:
        ticks = sorted({lo, hi})
    labels = [fmt_num(float(t), 3, sci_below=sci) for t in ticks]
    y = [(f(float(v)) - a) / (b - a) if v is not None else math.nan for v in vals]
    return {"y": y, "log": log, "lim": lim, "ticks": [float(t) for t in np.asarray(ticks)], "labels": labels}


def parallel_axes(trials: list[dict[str, Any]], params: list[str], monitor: str, maximize: bool,
                  dims: dict[str, dict[str, Any]] | None = None):
    """The parallel-coordinates figure (not saved): one vertical axis per hyper-parameter plus the
    objective, each with its own scale and ticks, one line per complete trial coloured by ``monitor``
    (the colour bar on the right; brighter is better)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.ticker import FixedLocator, NullLocator

    plt = _plt()
    done = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    names = list(params) + [monitor]
    fig, (ax, cax) = plt.subplots(1, 2, figsize=(max(6.5, 1.5 * len(names) + 1.5), 4.8), layout="constrained",
                                  gridspec_kw={"width_ratios": [40, 1]})
    values = [float(t["value"]) for t in done]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    norm = Normalize(lo, hi if hi > lo else lo + 1e-12)
    cmap = plt.get_cmap("viridis" if maximize else "viridis_r")
    columns = []
    for name in names:
        vals = [t["value"] if name == monitor else t["params"].get(name) for t in done]
        columns.append(_axis(name, vals, None if name == monitor else (dims or {}).get(name)))
    last = max(len(names) - 1, 1)
    for j in sorted(range(len(done)), key=lambda j: values[j] if maximize else -values[j]):  # best on top
        ax.plot(range(len(names)), [col["y"][j] for col in columns], color=cmap(norm(values[j])), alpha=0.85,
                linewidth=1.2)
    ax.set_xlim(0, last)
    ax.set_ylim(-0.05, 1.05)
    ax.yaxis.set_major_locator(NullLocator())
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20 if len(names) > 6 else 0)
    for i, col in enumerate(columns):  # one twin axes per dimension, its left spine moved to x = i
        tw = ax.twinx()
        for side in ("right", "top", "bottom"):
            tw.spines[side].set_visible(False)
        tw.spines["left"].set_position(("axes", i / last))
        tw.yaxis.set_ticks_position("left")
        if col["log"]:
            tw.set_yscale("log")
        tw.set_ylim(*col["lim"])
        tw.yaxis.set_major_locator(FixedLocator(col["ticks"]))
        tw.yaxis.set_minor_locator(NullLocator())
        tw.set_yticklabels(col["labels"], fontsize=7)
        plt.setp(tw.get_yticklabels(), bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                             "alpha": 0.8})
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, label=monitor)
    ax.set_title(f"parallel coordinates ({len(done)} complete trials)")
    return fig


def parallel_figure(trials: list[dict[str, Any]], params: list[str], monitor: str, maximize: bool,
                    path: str | Path, dims: dict[str, dict[str, Any]] | None = None) -> str:
    """``parallel_axes`` saved as a PNG."""
    return _save(parallel_axes(trials, params, monitor, maximize, dims), path)
