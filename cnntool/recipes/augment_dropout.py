"""augment-dropout: the augmentation gallery, then a dropout sweep 0.0–0.5."""

from __future__ import annotations

from typing import Any

from cnntool.recipes import recipe
from cnntool.recipes.base import ADAM, RUN_COLUMNS, Context, curves, run_row, table

RATES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


def _plot(rows: list[dict[str, Any]], path) -> str:
    from cnntool.experiments.plots import _plt, _save

    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = [r["dropout"] for r in rows]
    a.plot(x, [r["val_acc"] for r in rows], marker="o", label="validation (picks the rate)")
    a.plot(x, [r["test_acc"] for r in rows], marker="s", linestyle="--", label="test (reported)")
    a.set(xlabel="dropout", ylabel="accuracy", title="accuracy per dropout rate")
    a.legend(fontsize=8)
    b.plot(x, [r["test_loss"] for r in rows], marker="o", color="C1")
    b.set(xlabel="dropout", ylabel="test loss", title="test loss per dropout rate")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return _save(fig, path)


@recipe("augment-dropout", title="Augmentation gallery and dropout sweep", quick="4 epochs per rate instead of 15")
def run(ctx: Context) -> dict[str, Any]:
    """Every augmentation alone on a few training images (the gallery), then SimpleCNN with augmentation
    trained at dropout 0.0, 0.1, …, 0.5: test accuracy and loss per rate."""
    from cnntool.viz.dataset import plot_augmentations

    ctx.log("[augment-dropout] augmentation gallery")
    gallery = plot_augmentations(ctx.data, None, out_dir=ctx.out, rows=4, data_dir=ctx.data_dir)
    aug = ctx.augment_preset()
    epochs = ctx.pick(15, 4)
    rows = []
    for p in RATES:
        result = ctx.train(f"dropout{p:.1f}", model="simplecnn", epochs=epochs, augment=aug, dropout=p, **ADAM)
        rows.append(run_row(result, ctx, dropout=p))
    best = max(rows, key=lambda r: r["val_acc"])  # chosen on validation; test only reports it
    plots = [str(gallery), _plot(rows, ctx.out / "dropout.png"),
             curves(ctx, [ctx.out / r["run_dir"] for r in rows], title="dropout sweep")]
    return {
        "headline": f"best dropout by validation {best['dropout']:.1f}: val acc {best['val_acc']:.4f}, "
                    f"test acc {best['test_acc']:.4f} (0.0: {rows[0]['test_acc']:.4f})",
        "tables": [table(f"simplecnn --augment {aug}, {epochs} epochs, Adam lr 1e-3", ["dropout"] + RUN_COLUMNS,
                         rows)],
        "plots": plots, "runs": [r["run_dir"] for r in rows],
    }
