"""Learned convolution kernels as an image grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from cnntool.errors import ConfigError, ModelError
from cnntool.viz._plot import figure, safe_name, save

TILE = 0.75  # inches per kernel tile


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every Conv2d in registration (≈ forward) order, with its dotted name."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def get_conv(model: nn.Module, layer: str | None) -> tuple[str, nn.Conv2d]:
    convs = conv_layers(model)
    if not convs:
        raise ModelError(f"{type(model).__name__} has no Conv2d layer")
    if layer is None:
        return convs[0]
    names = dict(convs)
    if layer in names:
        return layer, names[layer]
    if layer.isdigit() and int(layer) < len(convs):
        return convs[int(layer)]
    listing = ", ".join(n for n, _ in convs[:20]) + (" …" if len(convs) > 20 else "")
    raise ConfigError(f"--layer {layer!r} is not a conv layer of this model (conv layers: {listing}; "
                     f"or an index 0…{len(convs) - 1})")


def filters_figsize(rows: int, cols: int) -> tuple[float, float]:
    return max(4.0, cols * TILE + 1.3), rows * TILE + 0.8


def plot_filters(target: str | Path, layer: str | None = None, out_dir: str | Path | None = None,
                 max_filters: int | None = None, max_inputs: int = 16, which: str = "best") -> Path:
    """The kernels of a conv layer (default: the first).

    First layer with RGB input: one colour tile per output filter (each min-max scaled). Single-channel
    input: one tile per filter on a shared diverging scale (blue negative, red positive); up to
    ``max_filters`` (default 64) filters. Deeper layers: one row per output filter (up to ``max_filters``,
    default 16), one column per input channel (up to ``max_inputs``).
    """
    from cnntool.runs import load_run

    run = load_run(target, which)
    name, conv = get_conv(run.model, layer)
    w = conv.weight.detach().cpu().numpy()  # (Cout, Cin/groups, kh, kw)
    cout, cin, kh, kw = w.shape
    colour = cin == 3 and conv is conv_layers(run.model)[0][1]
    tiles = colour or cin == 1
    if max_filters is not None and max_filters < 1:
        raise ConfigError(f"--max-filters {max_filters} must be >= 1")
    n_out = min(cout, max_filters or (64 if tiles else 16))
    fig_title = (f"{run.spec.arch}, conv layer '{name}': {cout} filters of {cin}×{kh}×{kw}"
                 f"{f' (first {n_out} shown)' if n_out < cout else ''}")
    if tiles:
        cols = min(n_out, 8 if n_out <= 64 else 16)
        rows = -(-n_out // cols)
        fig = figure(*filters_figsize(rows, cols))
        lim = float(np.abs(w[:n_out]).max()) or 1.0
        im = None
        for i in range(n_out):
            ax = fig.add_subplot(rows, cols, i + 1)
            if colour:
                k = w[i].transpose(1, 2, 0)
                k = (k - k.min()) / (k.max() - k.min() + 1e-12)
                ax.imshow(k, interpolation="nearest")
            else:
                im = ax.imshow(w[i, 0], cmap="bwr", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(str(i), fontsize=7, pad=2)
        note = "colour: each filter min-max scaled" if colour else "blue negative, red positive weights"
        if im is not None:
            fig.colorbar(im, ax=fig.axes, fraction=0.03, pad=0.02, label="weight")
        fig.suptitle(f"{fig_title}\n{note}", fontsize=10)
    else:
        n_in = min(cin, max_inputs)
        fig = figure(*filters_figsize(n_out, n_in))
        lim = float(np.abs(w[:n_out, :n_in]).max()) or 1.0
        im = None
        for i in range(n_out):
            for j in range(n_in):
                ax = fig.add_subplot(n_out, n_in, i * n_in + j + 1)
                im = ax.imshow(w[i, j], cmap="bwr", vmin=-lim, vmax=lim, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"in {j}", fontsize=7, pad=2)
                if j == 0:
                    ax.set_ylabel(f"out {i}", fontsize=7)
        fig.colorbar(im, ax=fig.axes, fraction=0.03, pad=0.02, label="weight")
        shown = f"rows: output filters 0…{n_out - 1}, columns: input channels 0…{n_in - 1}"
        fig.suptitle(f"{fig_title}\n{shown}; blue negative, red positive", fontsize=10)
    path = run.plots_dir(out_dir) / f"filters_{safe_name(name)}.png"
    return save(fig, path)
