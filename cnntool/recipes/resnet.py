"""resnet18: the CIFAR-style ResNet-18 from scratch."""

from __future__ import annotations

from typing import Any

from cnntool.recipes import recipe
from cnntool.recipes.base import RUN_COLUMNS, Context, confusion, curves, run_row, table

OPTIONS = {"model": "resnet18", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
           "scheduler": "onecycle", "batch_size": 128, "label_smoothing": 0.0}


SMALL_DATA = {"digits": "1,149"}


@recipe("resnet18", title="ResNet-18 from scratch", quick="8 epochs instead of 50")
def run(ctx: Context) -> dict[str, Any]:
    """The CIFAR-style ResNet-18 (3×3 stem, no max-pool) from scratch: SGD momentum 0.9, lr 0.1 one-cycle, weight
    decay 5e-4, batch 128, augmentation, 50 epochs (the coursework reached 87% on CIFAR-10)."""
    epochs = ctx.pick(50, 8)
    options = dict(OPTIONS)
    notes = []
    if ctx.data in SMALL_DATA:
        options.update(batch_size=64, lr=0.05)
        notes.append(f"{ctx.data} has {SMALL_DATA[ctx.data]} training images: batch 64 and lr 0.05 instead of 128 "
                     f"and 0.1, so that an epoch has more than a handful of steps.")
    result = ctx.train("resnet18", epochs=epochs, augment=ctx.augment_preset(), **options)
    row = run_row(result, ctx, model="resnet18", epochs=epochs)
    plots = [curves(ctx, [result["run_dir"]], title="resnet18")] + confusion(ctx, result["run_dir"], "resnet18")
    notes += ["reference: 87% test accuracy on CIFAR-10 after 50 epochs in the coursework "
             "(`cnntool recipe run resnet18 --data cifar10`)."]
    if ctx.quick:
        notes.append(f"--quick: {epochs} epochs only; the number is not comparable to the reference.")
    return {
        "headline": f"test acc {result['test_acc']:.4f} after {epochs} epochs on {ctx.data}",
        "tables": [table(f"resnet18, SGD lr {options['lr']} one-cycle, batch {options['batch_size']}, {epochs} epochs, "
                         f"--augment {ctx.augment_preset()}",
                         ["model", "epochs"] + RUN_COLUMNS, [row])],
        "plots": plots, "runs": [row["run_dir"]], "notes": notes,
    }
