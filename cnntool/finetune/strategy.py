"""Which blocks train when: the fine-tuning strategies, as a plan over the model's blocks.

* ``full``    every block trains.
* ``linear``  only the head trains (a linear probe when the head is linear).
* ``bn``      the head and the affine parameters of every BatchNorm layer; those BatchNorm layers stay
              in train mode (their running statistics adapt to the new data).
* ``last-k``  the head and the last ``k`` backbone blocks.
* ``gradual`` the head first; every ``unfreeze_every`` epochs one more block, from the top down.
* ``freeze_first N`` (with any strategy) keeps the first N backbone blocks frozen throughout.

A parameter is frozen by ``requires_grad = False``: it gets no gradient, so the optimizer (which holds
every parameter from the start, one group per block) never changes it, weight decay included. The
modules of a frozen block are put back in eval mode after every ``model.train()``, so frozen
BatchNorm layers keep their running statistics and frozen dropout / stochastic depth stay off.
The plan is a pure function of the epoch, so a resumed run freezes exactly as the original did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from cnntool.config import STRATEGIES
from cnntool.errors import ConfigError
from cnntool.finetune.blocks import block_params, blocks
BN_TYPES = (nn.modules.batchnorm._BatchNorm,)


@dataclass
class Block:
    name: str
    module: nn.Module
    params: list[nn.Parameter]

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)


class Plan:
    def __init__(self, model: nn.Module, head: str, strategy: str, k: int = 1, unfreeze_every: int = 1,
                 freeze_first: int = 0):
        if strategy not in STRATEGIES:
            raise ConfigError(f"--strategy {strategy!r} must be one of {', '.join(STRATEGIES)}")
        mods = dict(blocks(model, head))
        self.blocks = [Block(name, mods[name], ps) for name, ps in block_params(model, head)]
        self.model = model
        self.strategy = strategy
        self.k = k
        self.unfreeze_every = unfreeze_every
        self.freeze_first = freeze_first
        n = self.n_backbone
        if strategy == "last-k" and not 1 <= k <= n:
            raise ConfigError(f"--k {k} must be between 1 and {n} (the backbone blocks of this model)")
        if strategy == "gradual" and unfreeze_every < 1:
            raise ConfigError(f"--unfreeze-every {unfreeze_every} must be >= 1 epoch")
        if not 0 <= freeze_first <= n:
            raise ConfigError(f"--freeze-first {freeze_first} must be between 0 and {n} "
                              f"(the backbone blocks of this model)")
        self.bn_modules = [m for m in model.modules() if isinstance(m, BN_TYPES)]
        if strategy == "bn" and not any(_bn_params(m) for m in self.bn_modules):
            raise ConfigError("--strategy bn: this model has no BatchNorm layers with affine parameters")
        self.epoch = 0

    @property
    def n_backbone(self) -> int:
        return len(self.blocks) - 1

    # ------------------------------------------------------------------ schedule

    def open_blocks(self, epoch: int) -> set[int]:
        """Indices of the blocks that train in ``epoch`` (0-based); the head (last) always does."""
        n = self.n_backbone
        if self.strategy == "full":
            opened = set(range(n))
        elif self.strategy == "last-k":
            opened = set(range(n - self.k, n))
        elif self.strategy == "gradual":
            m = min(n, epoch // self.unfreeze_every)
            opened = set(range(n - m, n))
        else:
            opened = set()
        return {i for i in opened if i >= self.freeze_first} | {n}

    def unfreeze_epoch(self, index: int) -> int | None:
        """First epoch (1-based) in which block ``index`` trains, or None if it never does (within reason)."""
        if index == self.n_backbone:
            return 1
        if index < self.freeze_first:
            return None
        if self.strategy == "gradual":
            return (self.n_backbone - index) * self.unfreeze_every + 1
        return 1 if index in self.open_blocks(0) else None

    def _bn_trains(self, index: int) -> bool:
        return self.strategy == "bn" and index >= self.freeze_first

    def apply(self, epoch: int, model: nn.Module | None = None) -> None:
        """Set ``requires_grad`` for ``epoch`` (the Trainer's epoch hook)."""
        self.epoch = epoch
        opened = self.open_blocks(epoch)
        for i, block in enumerate(self.blocks):
            for p in block.params:
                p.requires_grad_(i in opened)
            if i not in opened and self._bn_trains(i):
                for m in block.module.modules():
                    if isinstance(m, BN_TYPES):
                        for p in _bn_params(m):
                            p.requires_grad_(True)

    def train_mode(self, model: nn.Module | None = None) -> None:
        """After ``model.train()``: frozen blocks back to eval mode (BatchNorm statistics untouched)."""
        opened = self.open_blocks(self.epoch)
        for i, block in enumerate(self.blocks):
            if i in opened:
                continue
            block.module.eval()
            if self._bn_trains(i):
                for m in block.module.modules():
                    if isinstance(m, BN_TYPES):
                        m.train()

    # ------------------------------------------------------------------ optimizer and report

    def param_groups(self, lr: float, backbone_lr_mult: float = 1.0) -> list[dict[str, Any]]:
        """One group per block, the head first (so the metrics' lr column is the head's)."""
        head = self.blocks[-1]
        groups = [{"params": head.params, "lr": lr, "name": head.name}]
        for b in self.blocks[:-1]:
            if b.params:
                groups.append({"params": b.params, "lr": lr * backbone_lr_mult, "name": b.name})
        return groups

    def counts(self) -> list[dict[str, Any]]:
        """Per block: parameters, trainable and frozen now (after ``apply``), and when it unfreezes."""
        rows = []
        for i, b in enumerate(self.blocks):
            trainable = sum(p.numel() for p in b.params if p.requires_grad)
            rows.append({"block": b.name, "params": b.numel, "trainable": trainable,
                         "frozen": b.numel - trainable, "unfreezes_at_epoch": self.unfreeze_epoch(i),
                         "head": i == self.n_backbone})
        return rows

    def trainable(self) -> int:
        return sum(p.numel() for b in self.blocks for p in b.params if p.requires_grad)


def _bn_params(m: nn.Module) -> list[nn.Parameter]:
    return [p for p in (getattr(m, "weight", None), getattr(m, "bias", None)) if isinstance(p, nn.Parameter)]
