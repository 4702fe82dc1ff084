"""architectures: dense-head nets (LeNet-style, AlexNet-style) vs Network in Network with global average pooling."""

from __future__ import annotations

from typing import Any

from cnntool.recipes import recipe
from cnntool.recipes.base import ADAM, RUN_COLUMNS, Context, curves, run_row, table

NETS = {"lenet": "LeNet-style, dense head", "alexnet": "AlexNet-style, dense head",
        "nin": "NiN, global average pooling"}
VARIANTS = {"plain": {"bn": False, "dropout": 0.0}, "bn+dropout 0.5": {"bn": True, "dropout": 0.5}}


def visualise(ctx: Context, run_dir: str, label: str) -> tuple[list[str], list[str]]:
    """Filters, then feature maps, CAM and guided backprop for a correctly and an incorrectly classified test
    image (cnntool.viz functions); returns (plots, notes)."""
    from cnntool.errors import DataError
    from cnntool.viz.cam import plot_cam
    from cnntool.viz.features import plot_feature_maps
    from cnntool.viz.filters import plot_filters
    from cnntool.viz.saliency import plot_saliency

    base = ctx.out / "viz" / label
    plots = [str(plot_filters(run_dir, out_dir=base))]
    notes = []
    for wrong, kind in ((False, "correct"), (True, "wrong")):
        where = base / kind
        try:
            plots += [str(p) for p in plot_feature_maps(run_dir, from_split="test", n=1, wrong=wrong, n_layers=2,
                                                        out_dir=where)]
        except DataError as e:
            notes.append(f"{label}: no {kind} image to show ({e})")
            continue
        plots.append(str(plot_cam(run_dir, from_split="test", n=1, wrong=wrong, out_dir=where)))
        plots.append(str(plot_saliency(run_dir, method="guided", from_split="test", n=1, wrong=wrong,
                                       out_dir=where)))
    return plots, notes


@recipe("architectures", title="Architectures: dense head vs global average pooling",
        quick="3 epochs per net instead of 15")
def run(ctx: Context) -> dict[str, Any]:
    """A LeNet-like and an AlexNet-like net with dense heads vs a Network-in-Network with global average pooling, each without
    and with BN + dropout; then filters, feature maps, CAM / Grad-CAM and guided-backprop images for a correctly
    and an incorrectly classified test image of each net (its better variant)."""
    epochs = ctx.pick(15, 3)
    rows, results = [], {}
    for net, what in NETS.items():
        for vname, opts in VARIANTS.items():
            label = f"{net}-{vname.split()[0].replace('+', '-')}"
            result = ctx.train(label, model=net, epochs=epochs, **ADAM, **opts)
            rows.append(run_row(result, ctx, net=net, variant=vname))
            results[label] = (net, result)
    plots = [curves(ctx, [ctx.out / r["run_dir"] for r in rows], title="architectures")]
    notes = ["CAM needs global average pooling followed by the class scores (NiN); the dense-head net gets "
             "Grad-CAM. Visualisations use each architecture's variant with the better validation accuracy."]
    for net in NETS:
        mine = [(label, r) for label, (n, r) in results.items() if n == net]
        label, best = max(mine, key=lambda t: t[1]["val_acc"])
        ctx.log(f"[architectures] visualising {label}")
        p, n = visualise(ctx, best["run_dir"], label)
        plots += p
        notes += n
    top = max(rows, key=lambda r: r["val_acc"])  # picked on validation, test reported
    return {
        "headline": f"best by validation: {top['net']} {top['variant']} (val acc {top['val_acc']:.4f}, "
                    f"test acc {top['test_acc']:.4f})",
        "tables": [table(f"{epochs} epochs, Adam lr 1e-3", ["net", "variant"] + RUN_COLUMNS, rows)],
        "plots": plots, "runs": [r["run_dir"] for r in rows], "notes": notes,
    }
