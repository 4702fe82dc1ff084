"""The torch backend of predict: a run directory or checkpoint, preprocessed exactly as eval does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnntool.data.pipeline import normalize_uint8
from cnntool.training.checkpoint import load_model


class TorchClassifier:
    """Same interface as ``OnnxClassifier``: ``spec``, ``name``, ``logits(uint8 NCHW) -> float32``."""

    name = "torch"

    def __init__(self, target: str | Path, threads: int | None = None):
        if threads:
            torch.set_num_threads(int(threads))
        self.path = str(target)
        self.model, self.spec, _ = load_model(target)

    @torch.no_grad()
    def logits(self, batch_uint8: np.ndarray) -> np.ndarray:
        x = normalize_uint8(torch.from_numpy(np.ascontiguousarray(batch_uint8)), self.spec.mean, self.spec.std)
        return self.model(x).float().numpy()
