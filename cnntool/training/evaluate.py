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


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16/AMX, or AVX512 which oneDNN emulates fast)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_amp(device: torch.device, amp: str) -> None:
    """--amp bf16 runs through CPU autocast; refuse it (one line) on a CPU that lacks bf16."""
    from cnntool.errors import ConfigError

    if amp == "bf16" and device.type == "cpu" and not cpu_supports_bf16():
        raise ConfigError("--amp bf16: this CPU has no bf16 support (oneDNN reports none); use --amp none")
    if amp == "fp16" and device.type == "cpu":
        raise ConfigError("--amp fp16 needs a CUDA device; on the CPU use --amp bf16")


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, pipeline: BatchPipeline, batch_size: int = 256,
                   amp: str = "none", indices: torch.Tensor | None = None, tta: str = "none"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, CPU) and labels for a whole split, in split order.

    ``tta`` (flip, flip-crop): the log of the mean softmax over the test-time views, a valid logit vector
    whose softmax is that mean."""
    from cnntool.data.augment import tta_views

    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for x, y in split.batches(batch_size, indices=indices):
            with autocast(pipeline.device, amp):
                if tta == "none":
                    out = model(pipeline(x))
                else:
                    probs = torch.stack([model(pipeline(v)).float().softmax(1) for v in tta_views(x, tta)])
                    out = probs.mean(0).log()
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
