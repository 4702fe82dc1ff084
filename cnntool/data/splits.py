"""Splitting a data set into train / val / test and resizing in-memory images: numpy, Pillow and
scikit-learn only, so the ONNX evaluator rebuilds a run's exact test split without importing torch.
``cnntool.data.bundle`` turns these parts into batchable splits.
"""

from __future__ import annotations

import numpy as np

from cnntool.config import DataConfig
from cnntool.data.preprocess import resize_for_model
from cnntool.data.sources import ArrayPart, FilePart, Part, RawData
from cnntool.errors import DataError
from cnntool.spec import CROP_PCT_DEFAULT, INTERPOLATION_DEFAULT


def remap_classes(raw: RawData, class_names: list[str]) -> RawData:
    """Relabel a data set with a model's class order (class indices come from the model, not the folders)."""
    missing = [c for c in raw.class_names if c not in class_names]
    if missing:
        raise DataError(f"data set {raw.name} has class {missing[0]!r}, which the model does not know "
                        f"(model classes: {', '.join(class_names[:10])}{'…' if len(class_names) > 10 else ''})")
    lut = np.array([class_names.index(c) for c in raw.class_names], dtype=np.int64)
    for part in (raw.train, raw.val, raw.test):
        if part is not None:
            part.labels = lut[part.labels]
    raw.class_names = list(class_names)
    return raw


def stratified(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    held = int(np.ceil(fraction * len(idx)))
    if held < 1 or held >= len(idx):
        raise DataError(f"a split fraction of {fraction} of {len(idx)} images leaves one side empty "
                        f"(check --val-fraction / --test-fraction)")
    try:
        a, b = train_test_split(idx, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError:  # a class too small to stratify: fall back to a plain seeded split
        a, b = train_test_split(idx, test_size=fraction, random_state=seed)
    return np.sort(a), np.sort(b)


def take(part: Part, idx: np.ndarray) -> Part:
    if isinstance(part, ArrayPart):
        return ArrayPart(part.images[idx], part.labels[idx])
    return FilePart([part.paths[i] for i in idx], part.labels[idx])


def split_parts(raw: RawData, cfg: DataConfig) -> dict[str, Part]:
    train, val, test = raw.train, raw.val, raw.test
    if len(train.labels) < 3:
        raise DataError(f"data set {raw.name} has only {len(train.labels)} training image(s)")
    if test is None:
        keep, held = stratified(train.labels, cfg.test_fraction, cfg.split_seed)
        train, test = take(train, keep), take(train, held)
    if val is None:
        keep, held = stratified(train.labels, cfg.val_fraction, cfg.split_seed + 1)
        train, val = take(train, keep), take(train, held)
    return {"train": train, "val": val, "test": test}


def resize_array(images: np.ndarray, size: list[int], crop_pct: float = CROP_PCT_DEFAULT,
                 interpolation: str = INTERPOLATION_DEFAULT) -> np.ndarray:
    """Resize in-memory images exactly as a file of the same pixels would be (resize_for_model)."""
    if list(images.shape[2:]) == list(size) and crop_pct >= 1.0:
        return images
    from PIL import Image

    out = np.empty((len(images), images.shape[1], size[0], size[1]), dtype=np.uint8)
    mode = "L" if images.shape[1] == 1 else "RGB"
    for i, img in enumerate(images):
        pil = Image.fromarray(img[0] if mode == "L" else img.transpose(1, 2, 0), mode)
        arr = np.asarray(resize_for_model(pil, size, crop_pct, interpolation))
        out[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return out
