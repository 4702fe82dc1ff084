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
from cnntool.viz._plot import figure, save

CURVES_SIZE = (13.0, 5.0)  # inches: 1300×500 px
# Options that never explain a difference in the curves (or are the seed, which groups runs instead).
_IGNORED = {"seed", "threads", "device", "workers", "data_dir", "download", "compile", "channels_last",
            "eval_every", "patience", "resume", "name", "out", "runs_root", *TRACKING_OPTIONS}


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
    if isinstance(value, bool):
        return key if value else f"no {key}"
    if value is None:
        return f"{key} default"
    return f"{key}={value}"


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
    differing = [k for k in all_keys if len({json.dumps(ident.get(k), default=str) for ident in keys.values()}) > 1]
    out = []
    for sig, members in groups.items():
        ident = keys[sig]
        parts = [_label_part(k, ident.get(k)) for k in differing
                 if ident.get(k) != defaults.get(k, object()) and ident.get(k) is not None]
        label = ", ".join(parts) if parts else "base"
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
                title: str | None = None, filename: str | None = None) -> Path:
    """``curves.png`` in ``out_dir`` (default ``RUN/plots``, or ``plots/`` for several runs): loss (left) and
    accuracy (right) per ``x`` (epoch or step), validation solid, training dashed.

    Several runs are overlaid with a legend built from the options that differ between them; runs that
    differ only in ``seed`` are drawn as their mean with a ± std band.
    """
    from matplotlib.ticker import MaxNLocator

    if x not in ("epoch", "step"):
        raise ConfigError(f"--x {x!r} must be epoch or step")
    if not runs:
        raise ConfigError("give at least one run directory")
    loaded = [read_run(r) for r in runs]
    groups = group_runs(loaded)
    fig = figure(*CURVES_SIZE)
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    colors = [f"C{i % 10}" for i in range(len(groups))]
    for (label, members), color in zip(groups, colors):
        for ax, metric in zip(axes, ("loss", "acc")):
            for split, style in (("val", "-"), ("train", "--")):
                xs, mean, std = _mean_std(members, x, f"{split}_{metric}")
                if not len(xs):
                    continue
                name = f"{label} — {split}" if len(groups) > 1 else split
                marker = "o" if len(xs) <= 30 else None
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
    axes[1].set_ylim(top=1.0)
    if any(len(m) > 1 for _, m in groups):
        axes[0].text(0.99, 0.98, "band: mean ± std over seeds", transform=axes[0].transAxes, ha="right",
                     va="top", fontsize=8, color="0.3")
    handles, labels = axes[1].get_legend_handles_labels()
    if len(labels) > 8:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(groups)), fontsize=8)
    else:
        axes[1].legend(fontsize=8, loc="lower right")
    if title is None:
        title = (f"Training curves: {loaded[0].path.name}" if len(loaded) == 1
                 else f"Training curves: {len(loaded)} runs")
    fig.suptitle(title, fontsize=12)
    if out_dir is None:
        out_dir = (loaded[0].path / PLOTS_DIR) if len(loaded) == 1 else Path(PLOTS_DIR)
    name = filename or ("curves.png" if x == "epoch" else "curves_step.png")
    return save(fig, Path(out_dir) / name)


def plot_run_curves(patterns: Sequence[str], out_dir: str | Path | None = None, x: str = "epoch",
                    title: str | None = None) -> tuple[Path, list[str]]:
    """``plot_curves`` over run directories, globs and folders of runs (seeds, recipes, sweeps); returns the
    PNG and the paths skipped as not runs."""
    from cnntool.runs import expand_runs

    runs, skipped = expand_runs(list(patterns))
    return plot_curves(runs, out_dir, x=x, title=title), skipped
