"""sweep: the 9-dimension cnn5 space (sweep_cnn5.yaml), the best trial retrained, a 10×3 prediction grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnntool.recipes import recipe
from cnntool.recipes.base import GRAYSCALE_DATA, Context, table

SPACE = Path(__file__).with_name("sweep_cnn5.yaml")
# --quick: the cheap end of the dimensions whose cost grows fastest (all 9 dimensions are still searched)
QUICK_CHOICES = {"filters": ["equal16", "doubling16"], "kernels": ["constant3", "increasing", "decreasing"],
                 "dense": [512, 1024], "batch_size": [16, 32]}


def space_doc(ctx: Context) -> dict[str, Any]:
    import yaml

    doc = yaml.safe_load(SPACE.read_text())
    doc["base"].update({k: v for k, v in ctx.data_options().items() if v is not None})
    doc["base"]["threads"] = ctx.thread_count()
    if ctx.data not in GRAYSCALE_DATA:
        doc["params"]["augment"] = ["standard" if a == "digits" else a for a in doc["params"]["augment"]]
    if ctx.quick:
        doc["base"]["epochs"] = 1
        doc["params"].update(QUICK_CHOICES)
        doc["pruner"] = "none"
    return doc


@recipe("sweep", title="Hyper-parameter sweep of cnn5 (9 dimensions)",
        quick="5 trials of 1 epoch on the cheaper half of filters/kernels/dense/batch size, best retrained for "
              "3 epochs (full: 30 trials of 5 epochs, retrained for 15)")
def run(ctx: Context) -> dict[str, Any]:
    """cnn5 over augment yes/no, BN yes/no, dropout 0/0.2/0.3/0.4, lr 1e-2/1e-3/5e-4/1e-4, six activations,
    six filter patterns, five kernel patterns, dense 2048/1024/512 and batch size 8/16/32 (TPE sampler, median
    pruning); the best trial is retrained for longer and its test accuracy and a 10×3 prediction grid reported."""
    from cnntool.experiments.space import parse_space
    from cnntool.experiments.sweep import run_sweep
    from cnntool.viz.predictions import plot_predictions

    space = parse_space(space_doc(ctx), str(SPACE))
    trials = ctx.pick(30, 5)
    ctx.log(f"[sweep] {trials} trials")
    summary = run_sweep(space, trials, study="cnn5", runs_root=ctx.out, sampler_seed=0)
    best = summary["best"]
    if best is None:
        from cnntool.errors import TrainingError

        raise TrainingError(f"no trial of the sweep finished (see {summary['sweep_dir']}/sweep.json)")
    epochs = ctx.pick(15, 3)
    retrained = ctx.train("best", **{**best["options"], "epochs": epochs})
    grid = plot_predictions(retrained["run_dir"], rows=10, cols=3, out_dir=ctx.out)
    dims = summary["params"]
    trial_rows = [{"trial": t["number"], "state": t["state"], "val_acc": t["value"], "test_acc": t["test_acc"],
                   **{d: t["params"].get(d) for d in dims}} for t in summary["trials"]]
    best_row = {"trial": best["number"], "val_acc": best["value"], "test_acc (trial)": best["test_acc"],
                "epochs": epochs, "test_acc": retrained["test_acc"], "test_loss": retrained["test_loss"],
                "params": retrained["params"], "run_dir": ctx.rel(retrained["run_dir"])}
    return {
        "headline": f"best trial {best['number']} (val acc {best['value']:.4f}); retrained {epochs} epochs: "
                    f"test acc {retrained['test_acc']:.4f}",
        "tables": [table("trials", ["trial", "state", "val_acc", "test_acc"] + dims, trial_rows),
                   table("best trial retrained", list(best_row), [best_row])],
        "plots": [*summary.get("plots", {}).values(), str(grid)],
        "runs": [best_row["run_dir"]],
        "best_command": best["command"],
        "importances": summary.get("importances", {}),
        "notes": [f"best options: `{best['command']}` (retrained with --epochs {epochs})",
                  f"study journal and every trial: {ctx.rel(summary['sweep_dir'])}"],
    }
