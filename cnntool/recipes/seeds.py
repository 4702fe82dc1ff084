"""seeds: one model under ten seeds, mean ± std of the test accuracy and a band plot."""

from __future__ import annotations

from typing import Any

from cnntool.recipes import recipe
from cnntool.recipes.base import ADAM, Context, table

MODEL = {"model": "simplecnn", "bn": True, "dropout": 0.3, **ADAM}


@recipe("seeds", title="Seed variance: one model under several seeds (10; --quick: 5)", quick="5 seeds × 3 epochs instead of 10 × 10")
def run(ctx: Context) -> dict[str, Any]:
    """SimpleCNN (BN, dropout 0.3, Adam lr 1e-3) trained under seeds 0–9 on the same split: each seed's test
    accuracy, their mean ± sample std, and the per-epoch mean ± std band of loss and accuracy."""
    from cnntool.experiments.seeds import run_seeds

    seeds = list(range(ctx.pick(10, 5)))
    epochs = ctx.pick(10, 3)
    cfg = ctx.config("seeds", folder=ctx.out / "seeds", epochs=epochs, **MODEL)
    ctx.log(f"[seeds] {len(seeds)} seeds × {epochs} epochs")
    result = run_seeds(cfg, seeds, reporter=lambda s: ctx.reporter_for(f"seed {s}"))
    rows = [{"seed": str(r["seed"]), "test_acc": r["test_acc"], "test_loss": r["test_loss"], "val_acc": r["val_acc"],
             "best_epoch": r["best_epoch"], "seconds": r["seconds"], "run_dir": ctx.rel(r["run_dir"])}
            for r in result["runs"]]
    agg = result["aggregate"]
    for stat in ("mean", "std"):
        rows.append({"seed": stat, **{k: agg[k][stat] for k in ("test_acc", "test_loss", "val_acc", "best_epoch",
                                                                   "seconds")}})
    acc = agg["test_acc"]
    notes = []
    if agg.get("threads_per_seed") is not None:
        notes.append(f"each seed trained with {agg['threads_per_seed']} thread(s) ({agg.get('jobs', 1)} at a time); "
                     "another thread count changes the float summation order and so the per-seed numbers.")
    return {
        "title": f"Seed variance: one model under {len(seeds)} seeds",
        "headline": f"test acc {acc['mean']:.4f} ± {acc['std']:.4f} over {len(seeds)} seeds "
                    f"(min {acc['min']:.4f}, max {acc['max']:.4f})",
        "aggregate": agg,
        "tables": [table(f"simplecnn --bn --dropout 0.3, {epochs} epochs, seeds {seeds[0]}–{seeds[-1]}",
                         ["seed", "test_acc", "test_loss", "val_acc", "best_epoch", "seconds", "run_dir"], rows)],
        "plots": [result["plot"]] if result.get("plot") else [],
        "runs": [r["run_dir"] for r in rows if r.get("run_dir")],
        "notes": ["std is the sample standard deviation (n−1); the split depends on --split-seed, not --seed, "
                  "so every seed is tested on the same images.", *notes],
    }
