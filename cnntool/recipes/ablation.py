"""ablation: SimpleCNN with BatchNorm, dropout and augmentation switched on one at a time, then all three."""

from __future__ import annotations

from typing import Any

from cnntool.recipes import recipe
from cnntool.recipes.base import ADAM, RUN_COLUMNS, Context, confusion, curves, run_row, table


def variants(ctx: Context) -> dict[str, dict[str, Any]]:
    aug = ctx.augment_preset()
    return {"base": {}, "+bn": {"bn": True}, "+dropout 0.5": {"dropout": 0.5}, f"+augment {aug}": {"augment": aug},
            "all three": {"bn": True, "dropout": 0.5, "augment": aug}}


@recipe("ablation", title="Ablation: BatchNorm, dropout, augmentation", quick="5 epochs instead of 20")
def run(ctx: Context) -> dict[str, Any]:
    """SimpleCNN, 20 epochs, Adam lr 1e-3, weight decay 1e-4, five variants (base, +BN, +dropout 0.5,
    +augmentation, all three): train/test loss and accuracy per variant, overlaid curves, one confusion matrix
    per variant."""
    epochs = ctx.pick(20, 5)
    rows, plots = [], []
    for i, (label, change) in enumerate(variants(ctx).items()):
        folder = f"{i}-{label.strip('+').replace(' ', '-')}"
        result = ctx.train(folder, model="simplecnn", epochs=epochs, **{**ADAM, "weight_decay": 1e-4}, **change)
        rows.append(run_row(result, ctx, variant=label))
        plots += confusion(ctx, result["run_dir"], folder)
    best = max(rows, key=lambda r: r["test_acc"])
    plots.insert(0, curves(ctx, [ctx.out / r["run_dir"] for r in rows], title="ablation (val solid, train dashed)"))
    return {
        "headline": f"best: {best['variant']} (test acc {best['test_acc']:.4f}); base {rows[0]['test_acc']:.4f}",
        "tables": [table(f"simplecnn, {epochs} epochs, Adam lr 1e-3, weight decay 1e-4", ["variant"] + RUN_COLUMNS,
                         rows)],
        "plots": plots, "runs": [r["run_dir"] for r in rows],
        "notes": ["train/val columns are from the best-validation epoch (the checkpoint that is tested); "
                  "test = that checkpoint on the test split (summary.json of each run)."],
    }
