"""Builders of small on-disk data sets in the formats cnntool reads."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def shape_image(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB image whose class is visible: a bright square in a class-specific quadrant and colour."""
    img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    half = size // 2
    y0, x0 = (label // 2 % 2) * half, (label % 2) * half
    colour = np.array([[255, 40, 40], [40, 255, 40], [40, 40, 255], [255, 255, 40]][label % 4], dtype=np.uint8)
    img[y0:y0 + half, x0:x0 + half] = colour
    return img


def make_image_folder(root: Path, classes=("cat", "dog", "fox"), per_class: int = 12, size: int = 24,
                      splits: tuple[str, ...] = (), ext: str = "png", seed: int = 0) -> Path:
    """A class-per-folder tree (optionally with split sub-folders) of generated images."""
    rng = np.random.default_rng(seed)
    for split in splits or ("",):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(shape_image(label, size, rng)).save(folder / f"{name}_{i}.{ext}")
    return root


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    from cnntool.data.formats import write_idx

    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    return root


def write_cifar10(root: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """CIFAR-10's python layout: five data batches, a test batch and batches.meta (pickled dicts)."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in np.arange(per_batch) % 10], b"batch_label": name.encode()}
        with open(base / name, "wb") as f:
            pickle.dump(batch, f)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch}, f)
    return root
