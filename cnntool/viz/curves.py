"""Training curves from metrics.csv: one run, several runs overlaid, seeds of one config as mean ± std."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cnntool.config import TRACKING_OPTIONS
from cnntool.errors import CheckpointError, ConfigError
from cnntool.runs import PLOTS_DIR
from cnntool.viz._plot import figure, run_colors, save

CURVES_SIZE = (13.0, 5.0)  # inches: 1300×500 px
# Options that never explain a difference in the curves (or are the seed, which groups runs instead).
_IGNORED = {"seed", "threads", "device", "workers", "data_dir", "download", "compile", "channels_last",
            "eval_every", "patience", "resume", "name", "out", "runs_root", "command", "weights_kind",
            *TRACKING_OPTIONS}
LOG_SPAN = 30.0  # loss axis in log scale when max/min of the plotted losses exceeds this
LEGEND_LABEL_MAX = 40  # characters of one legend entry


@dataclass
class RunCurves:
    path: Path
    options: dict[str, Any]
    rows: list[dict[str, Any]]


def read_run(path: str | Path) -> RunCurves:
    from cnntool.training.rundir import read_metrics

    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"{p}: not a run directory")
    rows = read_metrics(p)
    if not rows:
        raise CheckpointError(f"{p / 'metrics.csv'}: has no rows yet")
    options: dict[str, Any] = {}
    if (p / "config.json").is_file():
        try:
            cfg = json.loads((p / "config.json").read_text())
            options = dict(cfg.get("options", {}))
            options["command"] = cfg.get("command", "train")
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{p / 'config.json'}: not valid JSON ({e})") from None
    return RunCurves(p, options, rows)


def _label_part(key: str, value: Any) -> str:
    from cnntool.numfmt import fmt_option

    if isinstance(value, bool):
        return key if value else f"no {key}"
    if value is None:
        return f"{key} default"
    return fmt_option(key, value)


def _is_path(key: str, value: Any) -> bool:
    return key.endswith(("_dir", "_path", "_file")) or (isinstance(value, str) and ("/" in value or "\\" in value))


def _shorten(label: str, limit: int = LEGEND_LABEL_MAX) -> str:
    return label if len(label) <= limit else label[:limit - 1] + "…"


def group_runs(runs: Sequence[RunCurves]) -> list[tuple[str, list[RunCurves]]]:
    """Group runs that differ only in seed; label each group by the options that differ between groups
    ("base" for the group where those options are all at their defaults)."""
    from cnntool.config import RunConfig

    defaults = RunConfig().flat()
    groups: dict[str, list[RunCurves]] = {}
    keys: dict[str, dict[str, Any]] = {}
    for r in runs:
        ident = {k: v for k, v in r.options.items() if k not in _IGNORED}
        sig = json.dumps(ident, sort_keys=True, default=str)
        groups.setdefault(sig, []).append(r)
        keys[sig] = ident
    if len(groups) == 1:
        sig, members = next(iter(groups.items()))
        label = members[0].path.name if len(members) == 1 else f"{len(members)} seeds"
        return [(label, members)]
    all_keys = sorted({k for ident in keys.values() for k in ident})
    differing = [k for k in all_keys if len({json.dumps(ident.get(k), default=str) for ident in keys.values()}) > 1
                 and not any(_is_path(k, ident.get(k)) for ident in keys.values())]
    out = []
    for sig, members in groups.items():
        ident = keys[sig]
        parts = [_label_part(k, ident.get(k)) for k in differing
                 if ident.get(k) != defaults.get(k, object()) and ident.get(k) is not None]
        label = _shorten(", ".join(parts)) if parts else "base"
        if label in [lab for lab, _ in out]:
            label = f"{label} ({members[0].path.name})"
        if len(members) > 1:
            label += f" ({len(members)} seeds)"
        out.append((label, members))
    return out


def _series(rows: list[dict[str, Any]], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r[x], r[y]) for r in rows if r.get(x) is not None and r.get(y) is not None]
    if not pts:
        return np.zeros(0), np.zeros(0)
    xs, ys = zip(*pts)
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def _mean_std(members: list[RunCurves], x: str, y: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    series = [_series(m.rows, x, y) for m in members]
    common = sorted(set.intersection(*[set(s[0].tolist()) for s in series])) if series else []
    if not common:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    stacked = np.stack([np.interp(common, xs, ys) for xs, ys in series])
    return np.asarray(common), stacked.mean(0), stacked.std(0)


def plot_curves(runs: Sequence[str | Path], out_dir: str | Path | None = None, x: str = "epoch",
                title: str | None = None, filename: str | None = None, force: bool = False,
                labels: Sequence[str] | None = None) -> Path:
    """``curves.png`` in ``out_dir`` (default ``RUN/plots``, or ``plots/curves-RUNS.png`` for several runs;
    with neither ``out_dir`` nor ``filename`` given an existing file is kept and the next free name
    ``curves-2.png`` is used unless ``force``): loss (left) and
    accuracy (right) per ``x`` (epoch or step), validation solid, training dashed.

    Several runs are overlaid with a legend built from the options that differ between them; runs that
    differ only in ``seed`` are drawn as their mean with a ± std band. ``labels`` (one per run) names the runs
    instead (a recipe's step or strategy names); each run is then its own line.
    """
    if x not in ("epoch", "step"):
        raise ConfigError(f"--x {x!r} must be epoch or step")
    if not runs:
        raise ConfigError("give at least one run directory")
    loaded = [read_run(r) for r in runs]
    if labels is not None and len(labels) != len(loaded):
        raise ConfigError(f"{len(labels)} labels for {len(loaded)} runs")
    fig = curves_figure(loaded, x, title, labels)
    explicit = out_dir is not None or filename is not None
    if out_dir is None:
        out_dir = (loaded[0].path / PLOTS_DIR) if len(loaded) == 1 else Path(PLOTS_DIR)
    name = filename or _default_name(loaded, x)
    path = Path(out_dir) / name
    if not (explicit or force):
        from cnntool.fileio import next_free_path

        path = next_free_path(path)
    return save(fig, path)


def curves_figure(loaded: Sequence[RunCurves], x: str = "epoch", title: str | None = None,
                  labels: Sequence[str] | None = None):
    """The matplotlib figure of :func:`plot_curves` (not saved)."""
    from matplotlib.ticker import MaxNLocator

    groups = ([(lab, [r]) for lab, r in zip(labels, loaded)] if labels is not None
              else group_runs(loaded))
    colors = run_colors(len(groups))
    fig = figure(*CURVES_SIZE)
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    losses: list[float] = []
    for (label, members), (color, mark) in zip(groups, colors):
        for ax, metric in zip(axes, ("loss", "acc")):
            for split, style in (("val", "-"), ("train", "--")):
                xs, mean, std = _mean_std(members, x, f"{split}_{metric}")
                if not len(xs):
                    continue
                if metric == "loss":
                    losses += [float(v) for v in mean if np.isfinite(v) and v > 0]
                name = f"{label} — {split}" if len(groups) > 1 else split
                marker = mark if len(xs) <= 30 else None
                ax.plot(xs, mean, style, color=color, label=name, marker=marker, markersize=3)
                if len(members) > 1:
                    ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.18, linewidth=0)
    names = {"loss": "cross-entropy loss", "acc": "accuracy"}
    for ax, metric in zip(axes, ("loss", "acc")):
        ax.set_xlabel("epoch" if x == "epoch" else "optimizer step")
        ax.set_ylabel(names[metric])
        ax.set_title(f"{'Loss' if metric == 'loss' else 'Accuracy'} (solid: validation, dashed: training)",
                     fontsize=11)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if losses and max(losses) / min(losses) > LOG_SPAN:  # one huge early loss must not flatten the rest
        axes[0].set_yscale("log")
        axes[0].set_ylabel("cross-entropy loss (log scale)")
    axes[1].set_ylim(top=1.0)
    if any(len(m) > 1 for _, m in groups):
        axes[0].text(0.99, 0.98, "band: mean ± std over seeds", transform=axes[0].transAxes, ha="right",
                     va="top", fontsize=8, color="0.3")
    handles, labels = axes[1].get_legend_handles_labels()
    if len(groups) > 1:  # one entry per run (its colour), then the two line styles: no val/train pair split
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=c, marker=m, markersize=3, label=lab)
                   for (lab, _), (c, m) in zip(groups, colors)]
        handles += [Line2D([], [], color="0.35", linestyle=st, label=lab)
                    for st, lab in (("-", "validation"), ("--", "training"))]
        labels = [h.get_label() for h in handles]
    # outside the axes, below them: never over a line, never clipped (constrained layout makes room)
    ncols = 2 if len(groups) == 1 else min(4, max(2, (len(labels) + 3) // 4))
    legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=8)
    renderer = fig.canvas.get_renderer()
    while ncols > 1 and legend.get_window_extent(renderer).width > 0.98 * fig.bbox.width:  # long labels: fewer
        legend.remove()
        ncols -= 1
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=8)
    if title is None:
        title = (f"Training curves: {loaded[0].path.name}" if len(loaded) == 1
                 else f"Training curves: {len(loaded)} runs")
    fig.suptitle(title, fontsize=12)
    if len(labels) > 8:  # a tall legend: make the figure taller instead of squeezing the axes
        fig.set_size_inches(CURVES_SIZE[0], CURVES_SIZE[1] + 0.18 * -(-len(labels) // ncols))
    return fig


def _default_name(loaded: Sequence[RunCurves], x: str) -> str:
    """``curves.png`` for one run (in its own plots folder); ``curves-A+B+C.png`` for several runs."""
    from cnntool.viz._plot import safe_name

    suffix = "" if x == "epoch" else "_step"
    if len(loaded) == 1:
        return f"curves{suffix}.png"
    parents = {r.path.parent.name for r in loaded}
    what = (f"{next(iter(parents))}-{len(loaded)}runs" if len(parents) == 1 and len(loaded) > 4
            else "+".join(r.path.name for r in loaded))
    return f"curves{suffix}-{safe_name(what)[:80]}.png"


def plot_run_curves(patterns: Sequence[str], out_dir: str | Path | None = None, x: str = "epoch",
                    title: str | None = None, force: bool = False) -> tuple[Path, list[str]]:
    """``plot_curves`` over run directories, globs and folders of runs (seeds, recipes, sweeps); returns the
    PNG and the paths skipped as not runs."""
    from cnntool.runs import expand_runs

    runs, skipped = expand_runs(list(patterns))
    return plot_curves(runs, out_dir, x=x, title=title, force=force), skipped
