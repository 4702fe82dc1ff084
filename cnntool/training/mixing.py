"""Mixup and CutMix on whole normalised batches, and the class weights / balanced sampler for imbalanced data.

torchvision.transforms.v2.MixUp / CutMix are the implementation (one lambda per batch, the batch mixed with
itself rolled by one, labels as soft targets); they draw from the global RNG, which is forked and seeded from
the epoch's generator so a run is reproducible and resumable. Training accuracy under mixing counts a sample
as correct when the prediction is the dominant label (the larger share of the soft target).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cnntool.errors import DataError


class BatchMixer:
    def __init__(self, num_classes: int, mixup: float, cutmix: float, prob: float = 1.0):
        from torchvision.transforms import v2

        self.num_classes = num_classes
        self.prob = prob
        ops = []
        if mixup > 0:
            ops.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
        if cutmix > 0:
            ops.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
        self.transform = (ops[0] if len(ops) == 1 else v2.RandomChoice(ops)) if ops else None

    @property
    def enabled(self) -> bool:
        return self.transform is not None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, soft targets (N, K)); unmixed batches get one-hot targets."""
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
        apply = bool(torch.rand(1, generator=g) < self.prob)
        if not apply or self.transform is None:
            return x, torch.nn.functional.one_hot(y, self.num_classes).to(x.dtype if x.is_floating_point()
                                                                          else torch.float32)
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            return self.transform(x, y)


def class_weights(spec: str, labels: torch.Tensor, class_names: list[str]) -> torch.Tensor:
    """``auto``: inverse frequency n / (k * n_c) (sklearn's "balanced"); else a JSON file holding a list of k
    weights or a {class name: weight} mapping (classes not named get 1)."""
    k = len(class_names)
    if spec == "auto":
        counts = torch.bincount(labels, minlength=k).double()
        if bool((counts == 0).any()):
            missing = [class_names[i] for i in range(k) if counts[i] == 0]
            raise DataError(f"--class-weights auto: class {missing[0]!r} has no training images")
        return (len(labels) / (k * counts)).float()
    path = Path(spec)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"--class-weights {spec}: no such file (give auto or a JSON file)") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"--class-weights {spec}: not a JSON file ({str(e).splitlines()[0][:120]})") from None
    if isinstance(raw, dict):
        unknown = [c for c in raw if c not in class_names]
        if unknown:
            raise DataError(f"--class-weights {spec}: unknown class {unknown[0]!r}")
        values = [raw.get(c, 1.0) for c in class_names]
    elif isinstance(raw, list):
        if len(raw) != k:
            raise DataError(f"--class-weights {spec}: {len(raw)} weights for {k} classes")
        values = raw
    else:
        raise DataError(f"--class-weights {spec}: must hold a list of weights or a {{class: weight}} mapping")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf") for v in values) \
            or not any(values):
        raise DataError(f"--class-weights {spec}: weights must be finite numbers >= 0, not all 0")
    return torch.tensor([float(v) for v in values])


def balanced_order(labels: torch.Tensor, num_classes: int, g: torch.Generator) -> torch.Tensor:
    """An epoch of len(labels) indices drawn with replacement, every class equally likely (torch's
    WeightedRandomSampler with weights 1 / n_c)."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    weights = 1.0 / counts.clamp(min=1)[labels]
    return torch.multinomial(weights, len(labels), replacement=True, generator=g)
