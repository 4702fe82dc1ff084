"""The model spec inside an ONNX file's ``metadata_props``: stdlib only (read by predict without torch).

Key ``cnntool.spec`` holds the full ModelSpec JSON; a few flat keys (``class_names``, ``input_size``,
``mean``, ``std``, ...) repeat the parts a hand-written client needs, each as JSON.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from cnntool.errors import ModelError
from cnntool.spec import ModelSpec

SPEC_KEY = "cnntool.spec"
DATA_KEY = "cnntool.data"  # the DataConfig of the run (data set, split fractions, split seed), as JSON
FLAT_KEYS = ("arch", "class_names", "in_channels", "input_size", "mean", "std", "crop_pct", "interpolation",
             "cnntool_version")


def spec_to_metadata(spec: ModelSpec, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """String key -> string value pairs for ``metadata_props`` (values are JSON)."""
    d = spec.to_dict()
    props = {SPEC_KEY: json.dumps(d, sort_keys=True)}
    for key in FLAT_KEYS:
        props[key] = json.dumps(d[key])
    props["input_layout"] = json.dumps("NCHW float32, (pixel/255 - mean) / std")
    props["output"] = json.dumps("logits")
    for key, value in (extra or {}).items():
        props[f"cnntool.{key}"] = value if isinstance(value, str) else json.dumps(value)
    return props


def spec_from_metadata(props: Mapping[str, str], where: str = "model") -> ModelSpec:
    """Rebuild the spec from ``metadata_props`` (a dict, e.g. onnxruntime's ``custom_metadata_map``)."""
    text = props.get(SPEC_KEY)
    if text is None:
        raise ModelError(f"{where}: no cnntool metadata ({SPEC_KEY!r} in metadata_props); "
                         f"export the model with `cnntool export`")
    try:
        return ModelSpec.from_json(text)
    except Exception as e:  # CheckpointError from ModelSpec: say where it came from
        raise ModelError(f"{where}: bad {SPEC_KEY!r} metadata ({e})") from None
