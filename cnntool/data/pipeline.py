"""uint8 batch -> normalised float batch on the training device, with batch augmentation."""

from __future__ import annotations

from typing import Any

import torch

from cnntool.data import augment


class BatchPipeline:
    def __init__(self, mean: list[float], std: list[float], augmentations: dict[str, Any] | None = None,
                 device: torch.device | str = "cpu", channels_last: bool = False):
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.augmentations = dict(augmentations or {})
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor, train: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True)
        if train and self.augmentations:
            x = augment.apply(x, self.augmentations, generator if generator is not None else torch.Generator())
        # In place, and the same operation order as the numpy version: (x / 255 - mean) / std.
        x = augment.to_unit_float(x).sub_(self.mean).div_(self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def normalize_uint8(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """Same numbers as ``cnntool.data.preprocess.normalize`` (the numpy version used by predict)."""
    return BatchPipeline(mean, std)(images)
