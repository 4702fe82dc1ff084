"""A DataBundle: the train / val / test splits at the model's input size, ready to batch.

Small sets (and folder sets that fit in memory) are held as uint8 tensors and batched by index;
larger folder sets stream through a DataLoader with workers. Either way a batch is a uint8
tensor (N, C, H, W) plus int64 labels; normalisation and augmentation happen per batch in
``cnntool.data.pipeline``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import numpy as np
import torch

from cnntool.config import DataConfig
from cnntool.data.preprocess import load_for_model, open_image
from cnntool.data.sources import ArrayPart, Part, load_raw
from cnntool.data.splits import remap_classes as _remap_classes
from cnntool.data.splits import resize_array as _resize_array
from cnntool.data.splits import split_parts as _split
from cnntool.errors import DataError
from cnntool.spec import CROP_PCT_DEFAULT, INTERPOLATION_DEFAULT

Progress = Callable[[str, int, int], None]  # (what, done, total)
CACHE_LIMIT_BYTES = int(float(os.environ.get("CNNTOOL_CACHE_LIMIT_MB", "2048")) * 2**20)
SPLITS = ("train", "val", "test")


class _Split:
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)


class TensorSplit(_Split):
    """Images held in memory as one uint8 tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, paths: list[str] | None = None):
        self.images = images
        self.labels = labels
        self.paths = paths


    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False, indices: torch.Tensor | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = indices if indices is not None else (
            torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self)))
        stop = len(order) - len(order) % batch_size if drop_last and len(order) >= batch_size else len(order)
        for i in range(0, stop, batch_size):
            idx = order[i:i + batch_size]
            yield self.images[idx], self.labels[idx]

    def get(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, split: FileSplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return self.split.get(i)


class FileSplit(_Split):
    """Images decoded from files on demand (DataLoader with workers)."""

    def __init__(self, paths: list[str], labels: torch.Tensor, in_channels: int, input_size: list[int],
                 crop_pct: float, interpolation: str, workers: int):
        self.paths = paths
        self.labels = labels
        self.in_channels = in_channels
        self.input_size = input_size
        self.crop_pct = crop_pct
        self.interpolation = interpolation
        self.workers = workers


    def get(self, index: int) -> tuple[torch.Tensor, int]:
        arr = load_for_model(self.paths[index], self.in_channels, self.input_size, self.crop_pct, self.interpolation)
        return torch.from_numpy(arr), int(self.labels[index])

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False, indices: torch.Tensor | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from torch.utils.data import DataLoader, RandomSampler

        ds = _FileDataset(self)
        if indices is not None:
            ds = torch.utils.data.Subset(ds, indices.tolist())
        sampler = RandomSampler(ds, generator=generator) if shuffle else None
        loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=self.workers,
                            drop_last=drop_last and len(ds) >= batch_size,
                            persistent_workers=False, pin_memory=torch.cuda.is_available())
        yield from loader


Split = TensorSplit | FileSplit


@dataclass
class DataBundle:
    name: str
    class_names: list[str]
    in_channels: int
    input_size: list[int]
    mean: list[float]
    std: list[float]
    splits: dict[str, Split]
    crop_pct: float = CROP_PCT_DEFAULT
    interpolation: str = INTERPOLATION_DEFAULT
    present_classes: list[str] | None = None  # class names the data itself holds (before a model's remap)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DataError(f"data set {self.name} has no {name!r} split (has {', '.join(self.splits)})")
        return self.splits[name]

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}


def resolve_input_size(img_size: int | None, native: tuple[int, int] | None, min_size: int,
                       default_size: int, preferred: list[int] | None = None) -> list[int]:
    """--img-size wins; else ``preferred`` (a spec's or pretrained weights' own size); else the data's native
    size if the model can take it; else the model's size."""
    if img_size:
        return [img_size, img_size]
    if preferred:
        return [int(preferred[0]), int(preferred[1])]
    if native is None:
        return [default_size, default_size]
    if min(native) >= min_size:
        return [int(native[0]), int(native[1])]
    return [min_size, min_size]


def load_data(cfg: DataConfig, min_size: int = 1, default_size: int = 64, progress: Progress | None = None,
              input_size: list[int] | None = None, crop_pct: float = CROP_PCT_DEFAULT, interpolation: str = INTERPOLATION_DEFAULT,
              mean: list[float] | None = None, std: list[float] | None = None,
              class_names: list[str] | None = None, whole: bool = False,
              in_channels: int | None = None) -> DataBundle:
    """Load, split, resize and describe a data set.

    ``input_size``/``crop_pct``/``mean``/``std``/``class_names`` override what the data would choose:
    eval and finetune pass the values stored in a model spec or pretrained weights (``cfg.img_size`` still
    wins over ``input_size``: eval's data config never carries one).

    ``whole``: no train/val/test split; one split ``"all"`` with every image (train, val and test parts
    of the data together): `cnntool eval RUN --data FOLDER` scores the whole folder. A folder with only
    some of ``class_names`` (even one class) is accepted then.

    ``in_channels`` (a model's): image files are decoded to that many channels, as predict does (grayscale
    PNGs for a 1-channel model); a data set held as arrays must already have them.
    """
    raw = load_raw(cfg.data, cfg.data_dir, cfg.download, min_classes=1 if whole else 2)
    if in_channels is not None and in_channels != raw.in_channels:
        held = [p for p in (raw.train, raw.val, raw.test) if isinstance(p, ArrayPart)]
        if held:
            raise DataError(f"data set {raw.name} has {raw.in_channels}-channel images; the model takes "
                            f"{in_channels} channel(s)")
        raw = replace(raw, in_channels=in_channels)
    present = sorted(set(raw.class_names))
    if class_names is not None:
        raw = _remap_classes(raw, class_names)
    size = resolve_input_size(cfg.img_size, raw.native_size, min_size, default_size, preferred=input_size)
    parts = {ALL_SPLIT: _concat([p for p in (raw.train, raw.val, raw.test) if p is not None])} if whole \
        else _split(raw, cfg)
    splits: dict[str, Split] = {}
    for name in parts if whole else SPLITS:
        part = parts[name]
        splits[name] = _materialise(part, raw.in_channels, size, crop_pct, interpolation, cfg.workers,
                                    progress, f"{name} images")
    if mean is None or std is None:
        if raw.mean is not None and raw.std is not None:
            mean, std = raw.mean, raw.std
        else:
            mean, std = _channel_stats(splits["train" if "train" in splits else ALL_SPLIT], raw.in_channels)
    bundle = DataBundle(raw.name, list(raw.class_names), raw.in_channels, size, [float(m) for m in mean],
                        [float(s) for s in std], splits, crop_pct, interpolation)
    bundle.present_classes = present
    return bundle


ALL_SPLIT = "all"  # every image of a data set, unsplit (eval over a folder)


def _concat(parts: list[Part]) -> Part:
    from cnntool.data.sources import FilePart

    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], ArrayPart):
        return ArrayPart(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))
    return FilePart([q for p in parts for q in p.paths], np.concatenate([np.asarray(p.labels) for p in parts]))


def _materialise(part: Part, in_channels: int, size: list[int], crop_pct: float, interpolation: str,
                 workers: int, progress: Progress | None, what: str) -> Split:
    labels = torch.from_numpy(np.asarray(part.labels, dtype=np.int64))
    if isinstance(part, ArrayPart):
        return TensorSplit(torch.from_numpy(_resize_array(part.images, size, crop_pct, interpolation)), labels)
    n = len(part.paths)
    fits = n * in_channels * size[0] * size[1] <= CACHE_LIMIT_BYTES
    threads = max(2, min(8, os.cpu_count() or 2))
    if fits:
        # Decoding everything once both validates every file and makes epochs decode-free.
        out = np.empty((n, in_channels, size[0], size[1]), dtype=np.uint8)

        def load(i: int) -> None:
            out[i] = load_for_model(part.paths[i], in_channels, size, crop_pct, interpolation)

        _run_all(load, n, threads, progress, f"loading {what}")
        return TensorSplit(torch.from_numpy(out), labels, paths=list(part.paths))
    # Too large to hold: still check every file decodes (fast, reduced-size JPEG decode) before training.
    _run_all(lambda i: open_image(part.paths[i], in_channels, draft_size=max(size)), n, threads, progress,
             f"checking {what}")
    return FileSplit(list(part.paths), labels, in_channels, size, crop_pct, interpolation, workers)


def _run_all(fn: Callable[[int], None], n: int, threads: int, progress: Progress | None, what: str) -> None:
    done = 0
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(fn, range(n), chunksize=64):
            done += 1
            if progress and (done % 256 == 0 or done == n):
                progress(what, done, n)


def _channel_stats(split: Split, in_channels: int, max_images: int = 5000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] over (up to ``max_images`` of) the training split."""
    if isinstance(split, TensorSplit):
        x = split.images[:max_images]
    else:
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(len(split), generator=g)[:min(len(split), 1000)]
        x = torch.stack([split.get(int(i))[0] for i in idx])
    x = x.double() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp(min=1e-3)
    return mean.tolist(), std.tolist()
