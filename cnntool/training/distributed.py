"""Multi-process training (``torchrun --nproc_per_node N -m cnntool train ...``): DistributedDataParallel.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``); without them
everything here is a no-op and a run is exactly the single-process run.

Conventions (the Trainer relies on them):

- ``--batch-size`` is the **global** batch. Every epoch all ranks draw the same seeded permutation
  (the in-memory equivalent of ``DistributedSampler.set_epoch``) and each rank takes its
  ``batch_size / world_size`` slice of every global batch, so steps per epoch, the learning-rate
  schedule and the averaged gradient are those of a single-process run with the same ``--batch-size``.
- Running train loss/accuracy and validation/test metrics are summed over ranks; evaluation shards a
  split by ``index % world_size`` so every example is counted exactly once.
- Only rank 0 creates the run directory, writes files and reports; the other ranks are silent.
- Checkpoints hold the unwrapped module's ``state_dict`` (no ``module.`` prefix).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from cnntool.errors import ConfigError


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def env_rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or any plain process (reads the environment only)."""
    return env_rank() == 0


def local_threads() -> int | None:
    """Default CPU threads per process when several processes share one machine (None: not launched so)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if env_world_size() > 1 and local > 1:
        return max(1, (os.cpu_count() or 1) // local)
    return None


@dataclass
class Dist:
    """The process group as the Trainer sees it; ``world_size == 1`` means plain single-process training."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ set-up

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process: ``cuda`` becomes ``cuda:LOCAL_RANK``."""
        if self.enabled and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return device

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        return DDP(model, device_ids=ids, output_device=device.index if ids else None)

    def check_batch(self, batch_size: int) -> int:
        """The per-rank batch for a global ``--batch-size``."""
        if batch_size % self.world_size:
            raise ConfigError(f"--batch-size {batch_size} is the global batch and must be divisible by the "
                              f"{self.world_size} processes")
        return batch_size // self.world_size

    # ------------------------------------------------------------------ data

    def shard_order(self, order: torch.Tensor, batch_size: int) -> torch.Tensor:
        """This rank's part of every full global batch of ``order``, in step order."""
        per_rank = batch_size // self.world_size
        steps = len(order) // batch_size
        return order[:steps * batch_size].view(steps, self.world_size, per_rank)[:, self.rank].reshape(-1)

    def rank_seed(self, seed: int) -> int:
        """Per-rank seed for dropout and augmentation (rank 0 and single-process runs keep ``seed``)."""
        return seed if self.rank == 0 else (seed + 104_729 * self.rank) % (2**63)

    # ------------------------------------------------------------------ collectives

    def sum(self, *values: float) -> list[float]:
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return t.tolist()

    def all_true(self, flag: bool) -> bool:
        if not self.enabled:
            return flag
        t = torch.tensor([0 if flag else 1], dtype=torch.int32, device=self._comm_device())
        dist.all_reduce(t)
        return int(t.item()) == 0

    def broadcast_object(self, obj: Any) -> Any:
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def broadcast_state(self, model: nn.Module, buffers_only: bool = False) -> None:
        """Make every rank hold rank 0's tensors (buffers: BatchNorm statistics drift apart per rank)."""
        if not self.enabled:
            return
        tensors = list(model.buffers()) if buffers_only else list(model.state_dict().values())
        with torch.no_grad():
            for t in tensors:
                if t.is_floating_point() or t.dtype in (torch.int64, torch.int32):
                    dist.broadcast(t.data if isinstance(t, nn.Parameter) else t, src=0)

    def in_sync(self, model: nn.Module) -> bool:
        """Whether every rank holds bit-identical parameters (per-tensor sums compared exactly)."""
        if not self.enabled:
            return True
        with torch.no_grad():
            sums = torch.stack([p.detach().double().sum() for p in model.parameters()] +
                               [p.detach().double().abs().sum() for p in model.parameters()]).to(self._comm_device())
        gathered = [torch.empty_like(sums) for _ in range(self.world_size)]
        dist.all_gather(gathered, sums)
        return all(torch.equal(g, gathered[0]) for g in gathered)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def _comm_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, model: nn.Module, split, pipeline, amp: str = "none", batch_size: int = 256
                 ) -> dict[str, float]:
        """Loss and accuracy over a split, each example counted once across ranks."""
        from cnntool.training.evaluate import evaluate, predict_logits

        if not self.enabled:
            return evaluate(model, split, pipeline, batch_size, amp)
        indices = torch.arange(self.rank, len(split), self.world_size)
        logits, labels = predict_logits(model, split, pipeline, batch_size, amp, indices=indices)
        if len(labels):
            loss_sum = F.cross_entropy(logits, labels, reduction="sum").item()
            correct = float((logits.argmax(1) == labels).sum())
        else:
            loss_sum, correct = 0.0, 0.0
        loss_sum, correct, n = self.sum(loss_sum, correct, float(len(labels)))
        if n == 0:
            return {"loss": float("nan"), "acc": float("nan"), "n": 0}
        return {"loss": loss_sum / n, "acc": correct / n, "n": int(n)}


_CURRENT = Dist()


def init_distributed(device_name: str = "auto") -> Dist:
    """Join the torchrun process group (once per process); a plain run gets a single-process ``Dist``."""
    global _CURRENT
    world = env_world_size()
    if world <= 1:
        return Dist()
    if dist.is_initialized():
        return _CURRENT
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    wants_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    backend = "nccl" if wants_cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    atexit.register(_destroy)
    _CURRENT = Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, backend=backend)
    return _CURRENT


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
