"""ModelSpec read from a file (checkpoint, spec.json, ONNX metadata) is validated field by field."""

from __future__ import annotations

import json

import pytest

from cnntool.errors import CheckpointError
from cnntool.spec import ModelSpec

GOOD = dict(arch="simplecnn", num_classes=2, class_names=["cat", "dog"], in_channels=3, input_size=[32, 32],
            mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2], crop_pct=0.875, interpolation="bicubic")


def test_round_trip():
    spec = ModelSpec.from_dict(GOOD)
    assert ModelSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("change,field", [
    ({"input_size": [100000, 100000]}, "input_size"),
    ({"input_size": [16]}, "input_size"),
    ({"input_size": [16.5, 16]}, "input_size"),
    ({"input_size": [-1, 16]}, "input_size"),
    ({"std": [0.0, 0.2, 0.2]}, "std"),
    ({"std": [float("nan"), 0.2, 0.2]}, "std"),
    ({"mean": ["a", 0.5, 0.5]}, "mean"),
    ({"mean": [0.5]}, "mean"),
    ({"crop_pct": 0}, "crop_pct"),
    ({"crop_pct": -1}, "crop_pct"),
    ({"interpolation": "evil"}, "interpolation"),
    ({"num_classes": "2"}, "num_classes"),
    ({"num_classes": 3}, "class_names"),
    ({"class_names": ["cat", "\x1b[31mdog"]}, "class_names"),
    ({"class_names": ["cat", "line\nbreak"]}, "class_names"),
    ({"in_channels": 0}, "in_channels"),
    ({"model_kwargs": [1]}, "model_kwargs"),
    ({"arch": ""}, "arch"),
])
def test_hostile_values_are_refused(change, field):
    with pytest.raises(CheckpointError, match=f"field {field}"):
        ModelSpec.from_dict({**GOOD, **change})


def test_missing_fields_and_bad_json():
    with pytest.raises(CheckpointError, match="lacks arch"):
        ModelSpec.from_dict({k: v for k, v in GOOD.items() if k != "arch"})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        ModelSpec.from_json("{not json")
    assert json.loads(ModelSpec.from_dict(GOOD).to_json())["crop_pct"] == 0.875
