"""Shared pieces of the eval / viz / summary tests: runs trained once per session, PNG checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

_RUNS: dict[str, Path] = {}


def train_run(root: Path, name: str, **options) -> Path:
    """A tiny digits run (simplecnn by default, 2 epochs, one thread), trained once per session."""
    if name in _RUNS:
        return _RUNS[name]
    from cnntool.config import RunConfig
    from cnntool.runner import fit

    opts = {"epochs": 2, "threads": 1, "batch_size": 128, **options}
    cfg = RunConfig.from_flat(opts, runs_root=str(root), name=name)
    result = fit(cfg)
    _RUNS[name] = Path(result["run_dir"])
    return _RUNS[name]


def make_folder_dataset(root: Path, classes: dict[str, int], n: int = 12, size: int = 8, seed: int = 0) -> Path:
    """A class-per-folder tree of grey PNGs: class -> base intensity (plus noise)."""
    rng = np.random.default_rng(seed)
    for name, level in classes.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = np.clip(level + rng.normal(0, 12, (size, size)), 0, 255).astype(np.uint8)
            Image.fromarray(arr, "L").save(d / f"{i}.png")
    return root


def check_png(path, size: tuple[float, float] | None = None, dpi: int = 100) -> np.ndarray:
    """The PNG exists, has width×height = size (inches) × dpi when given, and is not blank."""
    p = Path(path)
    assert p.is_file(), f"{p} missing"
    with Image.open(p) as im:
        arr = np.asarray(im.convert("RGB"))
    if size is not None:
        assert (arr.shape[1], arr.shape[0]) == (round(size[0] * dpi), round(size[1] * dpi)), (p, arr.shape)
    assert arr.std() > 5, f"{p} looks blank"
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 20, f"{p} has almost no colours"
    return arr
