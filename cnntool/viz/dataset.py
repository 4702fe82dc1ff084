"""Data views: one sample per class, the class-frequency histogram, and augmentations side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnntool.errors import ConfigError
from cnntool.runs import PLOTS_DIR
from cnntool.viz._plot import figure, safe_name, save, short, show_image

SAMPLE_CELL = (1.6, 1.85)
AUG_CELL = (1.9, 2.1)
SPLIT_COLORS = {"train": "C0", "val": "C1", "test": "C2"}


def _load(data: str, data_dir: str | None = None, img_size: int | None = None, split_seed: int = 0,
          download: bool = False):
    from cnntool.config import DataConfig
    from cnntool.data.bundle import load_data

    cfg = DataConfig(data=data, data_dir=data_dir, img_size=img_size, split_seed=split_seed, download=download)
    cfg.validate()
    return load_data(cfg)


def _labels(split) -> np.ndarray:
    return np.asarray(split.labels, dtype=np.int64)


def samples_figsize(num_classes: int, cols: int = 10) -> tuple[tuple[float, float], int, int]:
    cols = max(1, min(cols, num_classes))
    rows = -(-num_classes // cols)
    return (cols * SAMPLE_CELL[0], rows * SAMPLE_CELL[1] + 0.5), rows, cols


def histogram_figsize(num_classes: int) -> tuple[float, float]:
    return min(24.0, max(8.0, 0.45 * num_classes + 2.0)), 5.0


def plot_dataset(data: str, out_dir: str | Path | None = None, data_dir: str | None = None,
                 img_size: int | None = None, split_seed: int = 0, max_classes: int = 100,
                 download: bool = False) -> list[Path]:
    """Two PNGs in ``out_dir``: ``<data>_samples.png`` (the first training image of each class) and
    ``<data>_classes.png`` (images per class in train, val and test)."""
    bundle = _load(data, data_dir, img_size, split_seed, download)
    out_dir = Path(out_dir if out_dir is not None else PLOTS_DIR)
    tag = safe_name(Path(bundle.name).name)
    names = bundle.class_names
    shown = names[:max_classes]
    train = bundle.split("train")
    labels = _labels(train)
    (size, rows, cols) = samples_figsize(len(shown))
    fig = figure(*size)
    h, w = bundle.input_size
    fig.suptitle(f"{bundle.name}: one training image per class ({len(names)} classes, {h}×{w} px"
                 f"{', first ' + str(max_classes) + ' shown' if len(names) > max_classes else ''})", fontsize=11)
    for c, name in enumerate(shown):
        ax = fig.add_subplot(rows, cols, c + 1)
        where = np.flatnonzero(labels == c)
        if len(where):
            show_image(ax, train.get(int(where[0]))[0], short(name), fontsize=9)
        else:
            ax.set_title(f"{short(name)}\n(none)", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    samples = save(fig, out_dir / f"{tag}_samples.png")

    fig = figure(*histogram_figsize(len(names)))
    ax = fig.add_subplot(1, 1, 1)
    n = len(names)
    splits = [s for s in ("train", "val", "test") if s in bundle.splits]
    width = 0.8 / len(splits)
    for k, s in enumerate(splits):
        counts = np.bincount(_labels(bundle.split(s)), minlength=n)
        ax.bar(np.arange(n) + (k - (len(splits) - 1) / 2) * width, counts, width,
               label=f"{s} ({counts.sum()})", color=SPLIT_COLORS[s])
    ax.set_xticks(np.arange(n) if n <= 60 else [])
    if n <= 60:
        rotate = n > 12 or max(len(c) for c in names) > 4
        ax.set_xticklabels([short(c, 16) for c in names], rotation=60 if rotate else 0,
                           ha="right" if rotate else "center", fontsize=9 if n <= 30 else 7)
    ax.set_xlabel("class" if n <= 60 else f"class index (0 … {n - 1})")
    ax.set_ylabel("images")
    ax.set_title(f"{bundle.name}: images per class and split", fontsize=11)
    ax.set_ylim(top=ax.get_ylim()[1] * 1.15)  # room for the legend above the bars
    ax.legend(fontsize=9, loc="upper center", ncols=len(splits))
    ax.grid(axis="y", alpha=0.3)
    classes = save(fig, out_dir / f"{tag}_classes.png")
    return [samples, classes]


# --------------------------------------------------------------------------- augmentations

DEFAULT_OPS = ("crop_pad", "hflip", "rotate", "rrc", "color_jitter", "blur", "noise", "cutout")


def default_strength(op: str, size: int) -> Any:
    return {"crop_pad": max(1, size // 8), "hflip": True, "rotate": 15.0, "rrc": 0.35, "color_jitter": 0.4,
            "blur": 1.0, "noise": 0.05, "cutout": max(1, size // 4), "random_erasing": 1.0,
            "policy": "trivialaugment"}[op]


def parse_ops(text: str | None, size: int) -> dict[str, Any]:
    """``"crop_pad=4,hflip,rotate=15"``, a preset name (``standard``), or None / ``all`` for every op at a
    visible strength. An op without a value gets that default strength."""
    from cnntool.config import AUGMENT_PRESETS
    from cnntool.data.augment import OPS

    if text is None or text.strip() in ("", "all"):
        return {op: default_strength(op, size) for op in DEFAULT_OPS}
    if text.strip() in AUGMENT_PRESETS:
        ops = dict(AUGMENT_PRESETS[text.strip()])
        if not ops:
            raise ConfigError(f"--ops {text!r}: preset {text!r} has no augmentations")
        return ops
    ops: dict[str, Any] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in OPS:
            raise ConfigError(f"--ops: unknown augmentation {key!r} (choose from {', '.join(OPS)} "
                              f"or a preset: {', '.join(p for p in AUGMENT_PRESETS if p != 'none')})")
        if not value:
            ops[key] = default_strength(key, size)
            continue
        try:
            ops[key] = value if key == "policy" else int(value) if key in ("crop_pad", "cutout") else (
                value.lower() in ("1", "true", "yes") if key == "hflip" else float(value))
        except ValueError:
            raise ConfigError(f"--ops: {key}={value!r} is not a number") from None
    return ops


def _describe(op: str, v: Any) -> str:
    if op in ("policy", "random_erasing"):  # v is a name / not for a float format
        return str(v) if op == "policy" else "random erasing"
    return {"crop_pad": f"random crop\n(pad {v})", "hflip": "horizontal flip", "rotate": f"rotate ±{v:g}°",
            "rrc": f"resized crop\n(area ≥ {v:g})", "color_jitter": f"colour jitter {v:g}",
            "blur": "Gaussian blur", "noise": f"salt & pepper {v:g}", "cutout": f"cutout {v}×{v}"}[op]


def apply_one(x: torch.Tensor, op: str, value: Any, g: torch.Generator) -> torch.Tensor:
    """One augmentation on float images in [0, 1], always applied (flip and blur are forced, not random)."""
    from cnntool.data import augment

    if op == "hflip":
        return augment.hflip(x, g, p=1.0)
    if op == "blur":
        return augment.gaussian_blur(x, 1.0, g)
    if op == "policy":  # the policies run on uint8
        return augment.apply_policy((x * 255).round().to(torch.uint8), str(value), g).float() / 255.0
    return augment.apply(x, {op: value}, g)


def plot_augmentations(data: str, ops: str | dict[str, Any] | None = None, out_dir: str | Path | None = None,
                       rows: int = 1, seed: int = 0, data_dir: str | None = None,
                       img_size: int | None = None, download: bool = False) -> Path:
    """``<data>_augment.png``: ``rows`` training images (of different classes), the original first and then
    the image under each augmentation alone, side by side."""
    if rows < 1:
        raise ConfigError(f"--rows {rows} must be >= 1")
    bundle = _load(data, data_dir, img_size, download=download)
    size = min(bundle.input_size)
    op_values = ops if isinstance(ops, dict) else parse_ops(ops, size)
    train = bundle.split("train")
    labels = _labels(train)
    idx = []
    for c in range(bundle.num_classes):
        where = np.flatnonzero(labels == c)
        if len(where):
            idx.append(int(where[0]))
        if len(idx) == rows:
            break
    x = torch.stack([train.get(i)[0] for i in idx]).float() / 255.0
    cols = 1 + len(op_values)
    fig = figure(cols * AUG_CELL[0], len(idx) * AUG_CELL[1] + 0.5)
    fig.suptitle(f"{bundle.name}: each augmentation alone (seed {seed})", fontsize=11)
    columns = [("original", x)]
    for op, v in op_values.items():
        g = torch.Generator().manual_seed(seed)
        columns.append((_describe(op, v), apply_one(x, op, v, g).clamp(0, 1)))
    for r in range(len(idx)):
        for c, (title, imgs) in enumerate(columns):
            ax = fig.add_subplot(len(idx), cols, r * cols + c + 1)
            show_image(ax, imgs[r], title if r == 0 else None, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"class {short(bundle.class_names[int(labels[idx[r]])])}", fontsize=9)
    return save(fig, Path(out_dir if out_dir is not None else PLOTS_DIR) / f"{safe_name(Path(bundle.name).name)}_augment.png")
