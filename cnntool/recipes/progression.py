"""cifar-progression: the coursework's 3-conv CNN improved one change at a time, each change kept."""

from __future__ import annotations

from typing import Any

from cnntool.recipes import recipe
from cnntool.recipes.base import ADAM, GRAYSCALE_DATA, Context, curves, table

STEPS: list[tuple[str, dict[str, Any]]] = [
    ("base: 3 convs 16/32/64, dense 500, Adam lr 1e-3", {}),
    ("+ weight decay 1e-5", {"weight_decay": 1e-5}),
    ("+ dropout 0.5 (last conv, first dense)", {"dropout": 0.5}),
    ("+ horizontal flip + colour jitter 0.2", {"hflip": True, "color_jitter": 0.2}),
    ("+ no bias anywhere", {"bias": False}),
    ("+ BN after each conv, lr 7e-4", {"bn": True, "lr": 7e-4}),
]


@recipe("cifar-progression", title="CIFAR-10 progression: one change at a time",
        quick="5 epochs per step instead of 20")
def run(ctx: Context) -> dict[str, Any]:
    """The 3-conv CNN (cnn3: 16/32/64 3×3 convs, max-pool after each, dense 500) with Adam lr 1e-3, then one change
    at a time, each kept: weight decay 1e-5 → dropout 0.5 → horizontal flip + colour jitter 0.2 → no bias → BN
    after each conv with lr 7e-4; test accuracy after each step."""
    epochs = ctx.pick(20, 5)
    options: dict[str, Any] = {"model": "cnn3", "epochs": epochs, **ADAM}
    rows = []
    prev = None
    for i, (change, delta) in enumerate(STEPS):
        options.update(delta)
        result = ctx.train(f"step{i}", **options)
        rows.append({"step": str(i), "change": change, "test_acc": result["test_acc"],
                     "delta": None if prev is None else result["test_acc"] - prev, "test_loss": result["test_loss"],
                     "val_acc": result["val_acc"], "params": result["params"], "seconds": result["seconds"],
                     "run_dir": ctx.rel(result["run_dir"])})
        prev = result["test_acc"]
    notes = ["each step keeps every earlier change (options in each run's config.json)."]
    if ctx.data in GRAYSCALE_DATA:
        notes.append(f"on {ctx.data} the horizontal flip is kept as in the coursework (CIFAR-10), although it "
                     f"changes what a digit looks like; colour jitter acts on brightness/contrast only.")
    return {
        "headline": f"test acc {rows[0]['test_acc']:.4f} (base) → {rows[-1]['test_acc']:.4f} (all changes)",
        "tables": [table(f"cnn3, {epochs} epochs per step", ["step", "change", "test_acc", "delta", "test_loss",
                                                           "val_acc", "params", "seconds", "run_dir"], rows)],
        "plots": [curves(ctx, [ctx.out / r["run_dir"] for r in rows], title="progression",
                         labels=[f"{r['step']}: {r['change'].split(':')[0]}" for r in rows])],
        "runs": [r["run_dir"] for r in rows], "notes": notes,
    }
