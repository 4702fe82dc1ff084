"""Optimizers and per-step learning-rate schedules (all LambdaLR, so the state is just a step count)."""

from __future__ import annotations

import math
from typing import Iterable

import torch

from cnntool.config import TrainConfig


def build_optimizer(params: Iterable, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer, with torch's fused kernel where it has one (one pass over all parameters)."""
    params = list(params)
    if cfg.optimizer == "sgd":
        cls, kwargs = torch.optim.SGD, {"momentum": cfg.momentum, "nesterov": cfg.momentum > 0}
    elif cfg.optimizer == "adam":
        cls, kwargs = torch.optim.Adam, {}
    else:
        cls, kwargs = torch.optim.AdamW, {}
    try:
        return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device/dtype
        return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)


def lr_factor(step: int, total: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based) of ``total``."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.scheduler == "onecycle":
        warmup = warmup or max(1, int(0.25 * total))
        if step < warmup:
            return 1 / 25 + (1 - 1 / 25) * step / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    if warmup and step < warmup:
        return (step + 1) / (warmup + 1)
    if cfg.scheduler == "cosine":
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    if cfg.scheduler == "step":
        size = cfg.step_size or max(1, cfg.epochs // 3)
        return cfg.gamma ** ((step // max(1, steps_per_epoch)) // size)
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    total = cfg.epochs * steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, steps_per_epoch, cfg))
