"""Image grids with a title per cell (prediction grids, confidently wrong examples); numpy or torch images,
no torch import, so torch-free ONNX evaluation draws them too."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cnntool.viz._plot import RIGHT_COLOR, WRONG_COLOR, figure, save, show_image

CELL_W, CELL_H, TITLE_H = 2.0, 2.35, 0.5


def wrap_title(title: str, width_in: float, fontsize: float = 11) -> str:
    """The title broken into lines that fit ``width_in`` inches (a 2-column grid must not cut it)."""
    import textwrap

    per_line = max(12, int(width_in / (fontsize * 0.0075)))
    return "\n".join(textwrap.wrap(title, per_line)) or title


def examples_figsize(rows: int, cols: int) -> tuple[float, float]:
    return cols * CELL_W, rows * CELL_H + TITLE_H


def plot_examples(images, titles: Sequence[str], wrong: Sequence[bool | None], path: str | Path,
                  cols: int = 3, title: str | None = None) -> Path:
    """One image per cell with a title; ``wrong[i]`` True draws it in red with a red frame (False: green
    title, None: black). ``images``: (N, C, H, W) uint8 or float, a torch tensor or a numpy array."""
    n = len(images)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig = figure(*examples_figsize(rows, cols))
    if title:
        fig.suptitle(wrap_title(title, examples_figsize(rows, cols)[0]), fontsize=11)
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        if i >= n:
            ax.axis("off")
            continue
        color = None if wrong[i] is None else (WRONG_COLOR if wrong[i] else RIGHT_COLOR)
        show_image(ax, images[i], titles[i], color)
    return save(fig, path)


def file_label(path: str, limit: int = 22) -> str:
    """A file under an image: its folder and name, cut from the left (``…cat/IMG_0042.jpg``)."""
    from cnntool.numfmt import cut_left

    p = Path(path)
    return cut_left(f"{p.parent.name}/{p.name}", limit)


def plot_confident_wrong(items: Sequence[dict], images, path: str | Path, title: str) -> Path:
    """The most confidently wrong examples of an evaluation (``items`` as in ``EvalResult.confident_wrong``,
    ``images`` theirs in the same order): file name or index, true and predicted class, confidence."""
    titles = [(f"{file_label(it['path'])}\n" if it.get("path") else f"#{it['index']}\n")
              + f"true {it['true']}\npred {it['pred']} ({it['confidence']:.0%})" for it in items]
    return plot_examples(images, titles, [True] * len(items), path, cols=min(5, len(items)), title=title)
