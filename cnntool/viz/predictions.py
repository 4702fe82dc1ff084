"""Grids of images with their true and predicted classes (the coursework's 10×3 prediction grid)."""

from __future__ import annotations

from pathlib import Path

import torch

from cnntool.errors import ConfigError
from cnntool.viz._plot import RIGHT_COLOR, WRONG_COLOR, short
from cnntool.viz.grid import examples_figsize, plot_examples

MAX_GRID = 50  # rows and columns of a prediction grid (a figure of 2,500 images is already large)


def plot_predictions(target: str | Path, rows: int = 10, cols: int = 3, split: str = "test",
                     wrong: bool | None = None, data: str | None = None, out_dir: str | Path | None = None,
                     which: str = "best", force: bool = False) -> Path:
    """The first rows×cols images of a split with true and predicted class (and confidence); wrong ones in
    red with a red frame. ``wrong=True``/``False`` shows only misclassified / only correct images
    (``predictions_SPLIT_wrong.png`` / ``_right.png``)."""
    from cnntool.runs import load_run
    from cnntool.viz.inputs import from_split, normalise

    if not (1 <= rows <= MAX_GRID and 1 <= cols <= MAX_GRID):
        raise ConfigError(f"--rows {rows} and --cols {cols} must be in 1..{MAX_GRID}")
    run = load_run(target, which)
    ex = from_split(run, split, rows * cols, wrong, data)
    with torch.no_grad():
        probs = run.model(normalise(ex.images, run.spec)).softmax(1)
    conf, pred = probs.max(1)
    names = run.spec.class_names
    titles, flags = [], []
    for y, p, c in zip(ex.labels, pred.tolist(), conf.tolist()):
        flags.append(p != y)
        mark = "✗ " if p != y else ""
        titles.append(f"{mark}true: {short(names[y])}\npred: {short(names[p])} ({c:.0%})")
    n_wrong = sum(flags)
    which_ones = {None: "", True: "misclassified ", False: "correctly classified "}[wrong]
    heading = (f"{run.spec.arch}: {which_ones}{split} images — {len(flags) - n_wrong} right, {n_wrong} wrong "
               f"(red)")
    kind = {None: "", True: "_wrong", False: "_right"}[wrong]
    path = run.plots_dir(out_dir) / f"predictions_{split}{kind}.png"
    if out_dir is None and not force:  # the default folder: keep an earlier grid, number the new one
        from cnntool.fileio import next_free_path

        path = next_free_path(path)
    return plot_examples(ex.images, titles, flags, path, cols=cols, title=heading)


__all__ = ["plot_examples", "plot_predictions", "examples_figsize", "RIGHT_COLOR", "WRONG_COLOR"]
