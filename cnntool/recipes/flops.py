"""flops: counted parameters and MACs of cnn5 next to their closed form."""

from __future__ import annotations

from typing import Any

from cnntool.recipes import recipe
from cnntool.recipes.base import Context, table

FULL_SETTINGS = [(8, 3, 64), (16, 3, 128), (16, 5, 256), (32, 3, 512), (32, 7, 1024), (64, 5, 2048)]
QUICK_SETTINGS = FULL_SETTINGS[:5]


def closed_form(m: int, k: int, n: int, c: int, h: int, w: int, o: int) -> dict[str, int]:
    """cnn5 with m filters of k×k in every layer ("same" padding, 2×2 max-pool after each), n dense units, o classes.

    params: m(Ck²+1) + 4m(mk²+1) + n·m·(H/32)·(W/32) + n + nO + O
    MACs:   Σ_i m·C_i·k²·(H/2^i)(W/2^i) over the five convs (C_0 = C, C_i = m) + n·m·(H/32)(W/32) + nO
    """
    hw = (h // 32) * (w // 32)
    params = m * (c * k * k + 1) + 4 * m * (m * k * k + 1) + n * m * hw + n + n * o + o
    macs = sum(m * (c if i == 0 else m) * k * k * (h // 2 ** i) * (w // 2 ** i) for i in range(5))
    macs += n * m * hw + n * o
    return {"params": params, "macs": macs}


def counted(m: int, k: int, n: int, c: int, h: int, w: int, o: int) -> dict[str, int]:
    """Parameters and MACs of the built model, counted by cnntool summary (torch.utils.flop_counter)."""
    from cnntool.models import create_model
    from cnntool.viz.summary import model_summary

    model = create_model("cnn5", o, c, input_size=[h, w], filters=f"equal{m}", kernels=f"constant{k}", dense=n)
    s = model_summary(model, [h, w], c, "cnn5")
    return {"params": s.total_params, "macs": s.macs}


def input_shape(ctx: Context) -> tuple[int, int, int, int]:
    """C, H, W and the number of classes cnn5 gets on the recipe's data (no images are decoded)."""
    from cnntool.data.bundle import resolve_input_size
    from cnntool.data.sources import load_raw
    from cnntool.models import get_model_info

    raw = load_raw(ctx.data, ctx.data_dir, ctx.download)
    info = get_model_info("cnn5")
    h, w = resolve_input_size(None, raw.native_size, info.min_size, info.default_size)
    return raw.in_channels, h, w, len(raw.class_names)


def compare(settings: list[tuple[int, int, int]], c: int, h: int, w: int, o: int) -> list[dict[str, Any]]:
    rows = []
    for m, k, n in settings:
        got, want = counted(m, k, n, c, h, w, o), closed_form(m, k, n, c, h, w, o)
        rows.append({"m": m, "k": k, "n": n, "params_counted": got["params"], "params_closed_form": want["params"],
                     "macs_counted": got["macs"], "macs_closed_form": want["macs"],
                     "equal": got == want})
    return rows


def _plot(rows: list[dict[str, Any]], path) -> str:
    from cnntool.experiments.plots import _plt, _save

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"m={r['m']} k={r['k']} n={r['n']}" for r in rows]
    x = list(range(len(rows)))
    for ax, what in zip(axes, ("params", "macs")):
        ax.bar([i - 0.2 for i in x], [r[f"{what}_counted"] for r in rows], width=0.4, label="counted")
        ax.bar([i + 0.2 for i in x], [r[f"{what}_closed_form"] for r in rows], width=0.4, label="closed form")
        ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_title("parameters" if what == "params" else "MACs (one image)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


@recipe("flops", title="cnn5 parameters and MACs: counted vs closed form",
        quick="five (m, k, n) settings instead of six", online="any data set (only its image shape is used)")
def run(ctx: Context) -> dict[str, Any]:
    """cnn5 with m filters of k×k in every conv and n dense units on the data's C×H×W input: the parameters and
    multiply-accumulates counted on the built model next to the closed-form values."""
    c, h, w, o = input_shape(ctx)
    rows = compare(ctx.pick(FULL_SETTINGS, QUICK_SETTINGS), c, h, w, o)
    ok = all(r["equal"] for r in rows)
    cols = ["m", "k", "n", "params_counted", "params_closed_form", "macs_counted", "macs_closed_form", "equal"]
    return {
        "headline": f"counted = closed form for {sum(r['equal'] for r in rows)} of {len(rows)} settings "
                    f"(input {c}×{h}×{w}, {o} classes)",
        "passed": ok,
        "tables": [table(f"cnn5 on {c}×{h}×{w}, O={o}", cols, rows)],
        "plots": [_plot(rows, ctx.out / "flops.png")],
        "notes": ["params: m(Ck²+1) + 4m(mk²+1) + n·m·(H/32)·(W/32) + n + nO + O; MACs: Σ m·C_i·k²·H_i·W_i over "
                  "the five 'same'-padded convs (H_i = H/2^i) + n·m·(H/32)(W/32) + nO. Counted: "
                  "torch.utils.flop_counter (convolutions and matrix multiplications; bias, activations and "
                  "pooling are not MACs)."],
    }
