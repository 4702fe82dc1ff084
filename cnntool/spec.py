"""ModelSpec: everything needed to rebuild a model and preprocess its input, in JSON types only.

Written to ``spec.json`` in every run directory, stored in every checkpoint and in every exported
ONNX file, so eval, viz, export and predict never need the training flags again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnntool import __version__
from cnntool.errors import CheckpointError


@dataclass(frozen=True)
class ModelSpec:
    arch: str
    num_classes: int
    class_names: list[str]
    in_channels: int
    input_size: list[int]  # [height, width] the network sees
    mean: list[float]
    std: list[float]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # Preprocessing of an image file: resize so that the crop of ``input_size`` is ``crop_pct`` of
    # the resized image (1.0: resize straight to input_size), then centre-crop.
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    cnntool_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {"arch", "num_classes", "class_names", "in_channels", "input_size", "mean", "std"} - set(d)
        if missing:
            raise CheckpointError(f"model spec lacks {', '.join(sorted(missing))}")
        values = {k: v for k, v in d.items() if k in known}
        values["input_size"] = [int(v) for v in values["input_size"]]
        values["class_names"] = [str(c) for c in values["class_names"]]
        spec = cls(**values)
        if len(spec.class_names) != spec.num_classes:
            raise CheckpointError(
                f"model spec has {spec.num_classes} classes but {len(spec.class_names)} class names")
        if len(spec.mean) != spec.in_channels or len(spec.std) != spec.in_channels:
            raise CheckpointError(f"model spec mean/std do not have {spec.in_channels} channel(s)")
        return spec

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise CheckpointError(f"model spec is not valid JSON: {e}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"no model spec at {p}")
        return cls.from_json(p.read_text())

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)
