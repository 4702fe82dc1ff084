"""Feature maps of the first conv layers for one image, one subplot per channel."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from cnntool.errors import ConfigError
from cnntool.viz._plot import figure, safe_name, save, short, show_image
from cnntool.viz.filters import conv_layers

CELL = 1.3


def feature_maps(model: nn.Module, x: torch.Tensor, n_layers: int = 3) -> list[tuple[str, torch.Tensor]]:
    """Outputs of the first ``n_layers`` Conv2d modules (in forward order) for the batch ``x``."""
    convs = conv_layers(model)[:n_layers]
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in convs:
        def hook(mod, inp, out, name=name):
            captured.setdefault(name, out.detach().clone())
        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()
            model(x)
    finally:
        for h in handles:
            h.remove()
    return [(name, captured[name]) for name, _ in convs if name in captured]


def features_figsize(channels: int) -> tuple[tuple[float, float], int, int]:
    cols = min(channels, 8)
    rows = -(-channels // cols)
    return (cols * CELL + CELL * 1.6, rows * CELL + 0.9), rows, cols


def plot_feature_maps(target: str | Path, images: Sequence[str] | None = None, n_layers: int = 3,
                      from_split: str | None = None, n: int = 1, wrong: bool | None = None,
                      out_dir: str | Path | None = None, max_channels: int = 64, which: str = "best",
                      data: str | None = None) -> list[Path]:
    """One PNG per image and layer: the input on the left, then each channel of the conv output
    (before BatchNorm and activation) with its own colour scale."""
    from cnntool.runs import load_run
    from cnntool.viz.inputs import normalise, pick

    if n_layers < 1:
        raise ConfigError(f"--layers {n_layers} must be >= 1")
    if max_channels < 1:
        raise ConfigError(f"--max-channels {max_channels} must be >= 1")
    run = load_run(target, which)
    ex = pick(run, images, from_split, n, wrong, data)
    maps = feature_maps(run.model, normalise(ex.images, run.spec), n_layers)
    out_dir = run.plots_dir(out_dir)
    paths = []
    for i, img_name in enumerate(ex.names):
        for li, (layer, fmap) in enumerate(maps):
            m = fmap[i]
            c = min(m.shape[0], max_channels)
            size, rows, cols = features_figsize(c)
            fig = figure(*size)
            grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1.6] + [1] * cols)
            ax = fig.add_subplot(grid[0, 0])
            label = ex.labels[i]
            truth = f"true: {short(run.spec.class_names[label])}" if label is not None else img_name
            show_image(ax, ex.images[i], f"input\n{truth}", fontsize=8)
            for ch in range(c):
                ax = fig.add_subplot(grid[ch // cols, 1 + ch % cols])
                ax.imshow(m[ch].numpy(), cmap="viridis", interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"ch {ch}", fontsize=7, pad=2)
            h, w = m.shape[-2:]
            more = f", first {c} of {m.shape[0]} channels" if c < m.shape[0] else ""
            fig.suptitle(f"{run.spec.arch} — conv layer {li + 1} '{layer}': {m.shape[0]} maps of {h}×{w}{more}\n"
                         f"image {img_name}; conv output before BN/activation, each map on its own scale",
                         fontsize=10)
            paths.append(save(fig, out_dir / f"features_{safe_name(img_name)}_{li + 1}_{safe_name(layer)}.png"))
    return paths
