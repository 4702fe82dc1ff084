"""Evaluation loops: loss and accuracy over a split, and raw logits for eval/viz."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from cnntool.data.bundle import Split
from cnntool.data.pipeline import BatchPipeline


def autocast(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, pipeline: BatchPipeline, batch_size: int = 256,
                   amp: str = "none", indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, CPU) and labels for a whole split, in split order."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for x, y in split.batches(batch_size, indices=indices):
            with autocast(pipeline.device, amp):
                out = model(pipeline(x))
            logits.append(out.float().cpu())
            labels.append(y)
    finally:
        model.train(was_training)
    if not logits:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)


def evaluate(model: nn.Module, split: Split, pipeline: BatchPipeline, batch_size: int = 256,
             amp: str = "none") -> dict[str, float]:
    logits, labels = predict_logits(model, split, pipeline, batch_size, amp)
    return metrics_from_logits(logits, labels)


def metrics_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    if len(labels) == 0:
        return {"loss": float("nan"), "acc": float("nan"), "n": 0}
    loss = F.cross_entropy(logits, labels).item()
    acc = (logits.argmax(1) == labels).float().mean().item()
    return {"loss": loss, "acc": acc, "n": len(labels)}
