"""ModelSpec: everything needed to rebuild a model and preprocess its input, in JSON types only.

Written to ``spec.json`` in every run directory, stored in every checkpoint and in every exported
ONNX file, so eval, viz, export and predict never need the training flags again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnntool import __version__
from cnntool.errors import CheckpointError

MAX_SIDE = 4096  # largest input side accepted from a flag or a spec (a hostile file must not allocate terabytes)
MAX_CHANNELS = 64  # input channels of a model built by name (cnntool summary)
IMAGE_CHANNELS = (1, 3)  # what decoding an image gives (L or RGB), so what a trained model's spec may hold
MAX_CLASS_NAME = 200
MAX_CLASSES = 1_000_000
# How an image becomes a model input (resize, then centre crop), defined once for training, eval, export, predict:
# resize the shorter side to input/crop_pct, centre-crop the input size; 1.0 resizes straight to the input size.
CROP_PCT_DEFAULT = 1.0
INTERPOLATION_DEFAULT = "bilinear"
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box")
WEIGHTS_KINDS = ("raw", "ema")  # what a checkpoint's "model" holds: the trained weights, or their EMA (--ema)


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
    crop_pct: float = CROP_PCT_DEFAULT
    interpolation: str = INTERPOLATION_DEFAULT
    weights: str = "raw"  # one of WEIGHTS_KINDS
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
        _validate(values)
        return cls(**values)

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




def class_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a class name (it is printed, and written into files and ONNX metadata), or None."""
    if not name.strip():
        return "is empty"
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        return "holds control characters"
    if len(name) > MAX_CLASS_NAME:
        return f"is over {MAX_CLASS_NAME} characters"
    return None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _validate(v: dict[str, Any]) -> None:
    """Check every field of a spec read from a file: types, ranges, consistency."""
    def bad(field: str, why: str) -> CheckpointError:
        return CheckpointError(f"model spec field {field} {why}")

    if not isinstance(v["arch"], str) or not v["arch"]:
        raise bad("arch", "must be a non-empty string")
    if not _is_int(v["num_classes"]) or not 1 <= v["num_classes"] <= MAX_CLASSES:
        raise bad("num_classes", f"{v['num_classes']!r} must be an integer in 1..{MAX_CLASSES}")
    names = v["class_names"]
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
        raise bad("class_names", "must be a list of strings")
    if len(names) != v["num_classes"]:
        raise bad("class_names", f"has {len(names)} names for {v['num_classes']} classes")
    for c in names:
        why = class_name_problem(c)
        if why:
            raise bad("class_names", f"has a name that {why}: {c[:40]!r}")
    if not _is_int(v["in_channels"]) or v["in_channels"] not in IMAGE_CHANNELS:
        raise bad("in_channels", f"{v['in_channels']!r} must be 1 (grey) or 3 (RGB): what image decoding gives")
    size = v["input_size"]
    if not isinstance(size, list) or len(size) != 2 or not all(_is_int(x) and 1 <= x <= MAX_SIDE for x in size):
        raise bad("input_size", f"{size!r} must be [height, width], integers in 1..{MAX_SIDE}")
    for key in ("mean", "std"):
        vals = v[key]
        if not isinstance(vals, list) or len(vals) != v["in_channels"] or not all(_is_number(x) for x in vals):
            raise bad(key, f"{vals!r} must be {v['in_channels']} finite number(s)")
    if not all(x > 0 for x in v["std"]):
        raise bad("std", f"{v['std']!r} must be positive")
    crop = v.get("crop_pct", 1.0)
    if not _is_number(crop) or not 0.05 <= crop <= 1.0:
        raise bad("crop_pct", f"{crop!r} must be in [0.05, 1]")
    if v.get("interpolation", INTERPOLATION_DEFAULT) not in INTERPOLATIONS:
        raise bad("interpolation", f"{v.get('interpolation')!r} must be one of {', '.join(INTERPOLATIONS)}")
    if v.get("weights", "raw") not in WEIGHTS_KINDS:
        raise bad("weights", f"{v.get('weights')!r} must be one of {', '.join(WEIGHTS_KINDS)}")
    if not isinstance(v.get("model_kwargs", {}), dict):
        raise bad("model_kwargs", "must be a mapping")
