"""Matplotlib plumbing shared by the figures: Agg backend, saving, showing a uint8 image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # inside the viz package only: never at cnntool import time

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 100
WRONG_COLOR = "#d62728"
RIGHT_COLOR = "#2ca02c"


def figure(width: float, height: float):
    """A figure of exactly width×height inches (PNG: width·DPI × height·DPI pixels), constrained layout."""
    return plt.figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig, path: str | Path) -> Path:
    """Write the PNG (fixed size: no tight bounding box) and free the figure."""
    from cnntool.fileio import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return path


def to_display(image: Any) -> tuple[np.ndarray, str | None]:
    """uint8 or float (C, H, W) image -> (array for imshow, colormap): gray for 1 channel, RGB for 3."""
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim == 2:
        return arr, "gray"
    if arr.shape[0] == 1:
        return arr[0], "gray"
    return np.ascontiguousarray(arr[:3].transpose(1, 2, 0)), None


def show_image(ax, image: Any, title: str | None = None, color: str | None = None, fontsize: float = 9) -> None:
    arr, cmap = to_display(image)
    vmax = 255 if arr.dtype == np.uint8 else 1.0
    ax.imshow(arr, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=fontsize, color=color or "black")
    if color is not None:
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(3)


def run_colors(n: int) -> list[tuple[str | tuple, str]]:
    """(colour, marker) per run: tab10 up to 10 runs, tab20 up to 20, then a hue wheel; markers also
    cycle past 10 so that no two runs look alike."""
    import matplotlib

    if n <= 10:
        return [(f"C{i}", "o") for i in range(n)]
    markers = "osD^v<>"
    if n <= 20:
        cmap = matplotlib.colormaps["tab20"]
        return [(cmap(i), markers[i % 2]) for i in range(n)]
    cmap = matplotlib.colormaps["hsv"]
    return [(cmap(i / n), markers[i % len(markers)]) for i in range(n)]


def short(name: str, limit: int = 14) -> str:
    """A class name cut to fit under a small image."""
    return name if len(name) <= limit else name[:limit - 1] + "…"


def safe_name(text: str) -> str:
    """A string usable in a file name."""
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return out.strip("._") or "x"
