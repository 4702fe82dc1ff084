"""Compare run directories: best and final metrics, epochs, seconds, and the options that differ."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnntool.config import TRACKING_OPTIONS
from cnntool.errors import ConfigError

COLUMNS = ("best_val_acc", "best_val_loss", "final_val_acc", "final_val_loss", "final_train_acc",
           "final_train_loss", "test_acc", "test_loss", "epochs", "seconds")
# Options that differ between any two runs but say nothing about the model (where it ran, how fast).
IGNORED_OPTIONS = {"threads", "workers", "device", "data_dir", "download", *TRACKING_OPTIONS}


def describe_run(path: Path) -> dict[str, Any]:
    """One run's row: best/final metrics from metrics.csv, test metrics and seconds from summary.json."""
    from cnntool.experiments.plots import epoch_rows
    from cnntool.training.rundir import read_json, read_metrics

    rows = read_metrics(path)
    config = read_json(path / "config.json") if (path / "config.json").is_file() else {}
    summary = read_json(path / "summary.json") if (path / "summary.json").is_file() else {}
    vals = [r for r in rows if r.get("val_acc") is not None and not _nan(r["val_acc"])]
    last = rows[-1] if rows else {}
    return {
        "run": str(path),
        "command": config.get("command"),
        "finished": bool(summary),
        "best_val_acc": max((r["val_acc"] for r in vals), default=None),
        "best_val_loss": min((r["val_loss"] for r in vals if r.get("val_loss") is not None), default=None),
        "final_val_acc": last.get("val_acc"), "final_val_loss": last.get("val_loss"),
        "final_train_acc": last.get("train_acc"), "final_train_loss": last.get("train_loss"),
        "test_acc": summary.get("test_acc"), "test_loss": summary.get("test_loss"),
        "epochs": last.get("epoch"),
        "seconds": summary.get("seconds", last.get("time")),
        "options": config.get("options", {}),
        "curve": epoch_rows(rows),
    }


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def differing_options(runs: list[dict[str, Any]]) -> list[str]:
    keys = sorted({k for r in runs for k in r["options"]} - IGNORED_OPTIONS)
    return [k for k in keys if len({repr(r["options"].get(k)) for r in runs}) > 1]


def compare_runs(patterns: list[str], sort: str | None = None, plot: str | Path | None = None) -> dict[str, Any]:
    """Describe the runs, find the options that differ, optionally sort and draw overlaid curves.

    ``sort``: a column (``val_acc`` means ``best_val_acc``) or a differing option; accuracies sort best first
    (descending), everything else ascending; runs missing the value go last.
    """
    from cnntool.runs import expand_runs

    paths, skipped = expand_runs(patterns)
    runs = [describe_run(p) for p in paths]
    differ = differing_options(runs)
    if sort:
        key = _sort_column(sort, differ)
        descending = key.endswith("acc")
        present = [r for r in runs if _value(r, key) is not None]
        missing = [r for r in runs if _value(r, key) is None]
        present.sort(key=lambda r: _sortable(_value(r, key)), reverse=descending)
        runs = present + missing
    table = [{"label": label, **{k: r[k] for k in ("run", "command", "finished", *COLUMNS)},
              "options": {k: r["options"].get(k) for k in differ}} for label, r in zip(_labels(runs), runs)]
    result = {"runs": table, "differing_options": differ, "sort": sort, "plot": None, "skipped": skipped}
    if plot:
        from cnntool.viz.curves import plot_curves

        plot = Path(plot)
        result["plot"] = str(plot_curves([r["run"] for r in runs], plot.parent, title=f"{len(runs)} runs",
                                         filename=plot.name))
    return result


def _labels(runs: list[dict[str, Any]]) -> list[str]:
    paths = [Path(r["run"]) for r in runs]
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{p.parent.name}/{p.name}" for p in paths]


def _sort_column(sort: str, differ: list[str]) -> str:
    key = sort.replace("-", "_")
    if key in COLUMNS or key in differ:
        return key
    if f"best_{key}" in COLUMNS:
        return f"best_{key}"
    raise ConfigError(f"--sort {sort!r} is not a column ({', '.join(COLUMNS)}) or a differing option")


def _value(run: dict[str, Any], key: str) -> Any:
    return run[key] if key in COLUMNS else run["options"].get(key)


def _sortable(v: Any) -> Any:
    return (0, v) if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, str(v))
