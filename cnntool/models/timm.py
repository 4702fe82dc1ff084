"""timm models as ``timm:NAME`` (every classifier ``timm.list_models()`` knows), built without weights.

``timm`` is imported only when a ``timm:`` name is used or listed. The model's ``pretrained_cfg`` (input size,
mean/std, crop_pct, interpolation) is what ``finetune --weights imagenet`` carries into the ModelSpec, so
eval/export/predict preprocess as timm does (see :func:`pretrained_preprocessing`).
"""

from __future__ import annotations

import functools
from typing import Any

from torch import nn

from cnntool.config import HEAD_DEFAULT, HEAD_DROPOUT_DEFAULT
from cnntool.errors import ConfigError
from cnntool.models.heads import set_head
from cnntool.models.registry import ModelInfo, register_namespace

TIMM_PREFIX = "timm:"


@functools.lru_cache(maxsize=1)
def timm_names() -> list[str]:
    try:
        import timm
    except ImportError:
        return []
    return sorted(timm.list_models())


def pretrained_cfg(name: str) -> dict[str, Any]:
    """timm's default pretrained config of ``name`` (a mapping; empty when timm has none)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def timm_info(name: str) -> ModelInfo:
    try:
        import timm  # noqa: F401
    except ImportError:
        raise ConfigError(f"--model timm:{name} needs timm (pip install timm)") from None
    if name not in timm_names():
        raise ConfigError(f"--model timm:{name} is not a timm model (cnntool train --list-models lists them)")
    cfg = pretrained_cfg(name)
    side = int((cfg.get("input_size") or (3, 224, 224))[-1])

    def build(num_classes: int, in_channels: int, *, head: str = HEAD_DEFAULT,
              head_dropout: float = HEAD_DROPOUT_DEFAULT) -> nn.Module:
        import timm

        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
        if head != HEAD_DEFAULT or head_dropout:
            set_head(model, num_classes, head, head_dropout)
        return model

    build.__doc__ = f"timm {name}"
    return ModelInfo(TIMM_PREFIX + name, build, min_size=32, default_size=side, description=f"timm {name}")


register_namespace(TIMM_PREFIX, timm_info, timm_names, "any timm classifier (pip install timm)")
