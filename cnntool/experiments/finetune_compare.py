"""Run several fine-tuning strategies on one data set: a table and one overlaid curves plot.

Each strategy is an ordinary finetune run (``OUT/<strategy>``), so every one can be evaluated,
visualised and exported on its own; ``OUT/strategies.json``, ``OUT/strategies.csv`` and
``OUT/curves.png`` compare them.
"""

from __future__ import annotations

import csv
import dataclasses
from typing import Any, Callable

from cnntool.config import RunConfig
from cnntool.errors import ConfigError
from cnntool.finetune.core import FinetuneOptions
from cnntool.runner import finetune
from cnntool.finetune.strategy import STRATEGIES
from cnntool.training.events import Reporter
from cnntool.training.rundir import allocate_run_dir, read_metrics, write_json

COLUMNS = ["strategy", "best_val_acc", "test_acc", "trainable_start", "trainable_end", "sec_per_epoch",
           "epochs", "run_dir"]


def parse_strategies(text: str) -> list[str]:
    names = list(STRATEGIES) if text.strip().lower() == "all" else [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in STRATEGIES]
    if bad or not names:
        raise ConfigError(f"--compare {text!r}: strategies are all or a list of {', '.join(STRATEGIES)}")
    return list(dict.fromkeys(names))


def compare_strategies(cfg: RunConfig, ft: FinetuneOptions, strategies: list[str],
                       reporter: Callable[[str], Reporter] | None = None,
                       on_done: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Fine-tune once per strategy with the same data, weights, head, seed and schedule."""
    out = allocate_run_dir(cfg.runs_root, "finetune-compare", cfg.name, cfg.out)
    rows = []
    for strategy in strategies:
        run_cfg = dataclasses.replace(cfg, out=str(out / strategy), name=None, resume=None)
        run_ft = dataclasses.replace(ft, strategy=strategy)
        result = finetune(run_cfg, run_ft, reporter(strategy) if reporter else None)
        metrics = read_metrics(result["run_dir"])
        first = result.get("trainable_start", result["trainable_params"])
        row = {
            "strategy": strategy,
            "best_val_acc": max(r["val_acc"] for r in metrics),
            "test_acc": result["test_acc"],
            "trainable_start": first,
            "trainable_end": result["trainable_params"],
            "sec_per_epoch": round(result["seconds"] / max(result["epochs_run"], 1e-9), 3),
            "epochs": result["epochs_run"],
            "run_dir": result["run_dir"],
            "curves": [{"epoch": r["epoch"], "val_acc": r["val_acc"], "train_loss": r["train_loss"],
                        "val_loss": r["val_loss"]} for r in metrics],
        }
        rows.append(row)
        if on_done:
            on_done(row)
    with open(out / "strategies.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    from cnntool.viz.curves import plot_curves

    plot = plot_curves([r["run_dir"] for r in rows], out, title="fine-tuning strategies", filename="curves.png")
    summary = {"out": str(out), "plot": str(plot), "strategies": rows}
    write_json(out / "strategies.json", summary)
    return summary
