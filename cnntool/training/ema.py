"""Exponential moving average of the weights (timm ``ModelEmaV3`` semantics, on torch's ``AveragedModel``).

decay_t = min(decay, 1 - (1 + t) ** -2/3) for the t-th update (t = 0, 1, ...; timm's warm-up with
gamma 1, power 2/3), ema = decay_t * ema + (1 - decay_t) * weights, parameters and buffers alike
(BatchNorm statistics included). The first update copies the weights (``AveragedModel``'s rule).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

WARMUP_POWER = 2.0 / 3.0


def ema_decay(decay: float, updates_done: int) -> float:
    """The decay of the update after ``updates_done`` averaged updates (the first averaged one has t = 1)."""
    return min(decay, 1.0 - (1.0 + updates_done) ** -WARMUP_POWER)


class WeightEMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay

        @torch.no_grad()
        def multi_avg(ema_params: list[torch.Tensor], params: list[torch.Tensor], num_averaged: Any) -> None:
            d = ema_decay(decay, int(num_averaged))
            if ema_params[0].is_floating_point():  # AveragedModel groups the tensors by dtype
                torch._foreach_lerp_(ema_params, params, 1.0 - d)
            else:  # integer buffers (BatchNorm's num_batches_tracked) follow the model
                torch._foreach_copy_(ema_params, params)

        self.averaged = AveragedModel(model, multi_avg_fn=multi_avg, use_buffers=True)
        self.averaged.eval()

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.module.state_dict(), "n_averaged": int(self.averaged.n_averaged)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.averaged.n_averaged.fill_(int(state["n_averaged"]))
