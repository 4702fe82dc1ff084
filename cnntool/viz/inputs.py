"""Which images a per-image figure (features, CAM, saliency, predictions) is drawn for.

Either image files, preprocessed exactly as predict does (``load_for_model`` with the spec's size,
crop and interpolation, then the spec's mean/std), or examples picked from a split of the run's
data (``--from-split test --n 8 [--wrong|--right]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from cnntool.errors import ConfigError, DataError


@dataclass
class Examples:
    images: torch.Tensor  # uint8 (N, C, H, W) at the model's input size
    labels: list[int | None]  # true class index where known
    names: list[str]  # a short name per image (file stem or split:index) for titles and file names


def from_files(paths: Sequence[str | Path], spec) -> Examples:
    """Image files at the model's input size. The true class is the parent folder's name when that is one
    of the model's classes (a class-per-folder tree), else unknown."""
    import numpy as np

    from cnntool.data.preprocess import load_for_model

    if not paths:
        raise ConfigError("give image files or --from-split SPLIT")
    arrays, labels, names = [], [], []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            raise DataError(f"{p}: is a directory, not an image file")
        arrays.append(load_for_model(p, spec.in_channels, spec.input_size, spec.crop_pct, spec.interpolation))
        parent = p.parent.name
        labels.append(spec.class_names.index(parent) if parent in spec.class_names else None)
        names.append(p.stem)
    return Examples(torch.from_numpy(np.stack(arrays)), labels, names)


def from_split(run, split: str = "test", n: int = 8, wrong: bool | None = None, data: str | None = None,
               data_dir: str | None = None, batch_size: int = 256) -> Examples:
    """The first ``n`` examples of a split of the run's data; ``wrong=True`` keeps only misclassified ones,
    ``wrong=False`` only correct ones (the model's predictions decide)."""
    from cnntool.data.pipeline import BatchPipeline
    from cnntool.runs import check_split, load_run_data
    from cnntool.training.evaluate import predict_logits

    check_split(split)
    if n < 1:
        raise ConfigError(f"--n {n} must be >= 1")
    bundle = load_run_data(run, data, data_dir)
    part = bundle.split(split)
    if wrong is None:
        idx = list(range(min(n, len(part))))
    else:
        logits, labels = predict_logits(run.model, part, BatchPipeline(run.spec.mean, run.spec.std), batch_size)
        keep = (logits.argmax(1) != labels) if wrong else (logits.argmax(1) == labels)
        idx = keep.nonzero().flatten()[:n].tolist()
    if not idx:
        what = "misclassified" if wrong else "correctly classified" if wrong is False else ""
        raise DataError(f"the {split} split of {bundle.name} has no {what} images".replace("  ", " "))
    items = [part.get(i) for i in idx]
    return Examples(torch.stack([im for im, _ in items]), [int(y) for _, y in items],
                    [f"{split}{i}" for i in idx])


def pick(run, images: Sequence[str] | None, from_split_name: str | None, n: int = 8, wrong: bool | None = None,
         data: str | None = None) -> Examples:
    if images and from_split_name:
        raise ConfigError("give image files or --from-split, not both")
    if from_split_name:
        return from_split(run, from_split_name, n, wrong, data)
    if wrong is not None:
        raise ConfigError("--wrong/--right need --from-split")
    return from_files(list(images or []), run.spec)


def normalise(images: torch.Tensor, spec) -> torch.Tensor:
    from cnntool.data.pipeline import BatchPipeline

    return BatchPipeline(spec.mean, spec.std)(images)
