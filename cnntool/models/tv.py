"""Every torchvision classification model as ``tv:NAME``, adapted to the data's classes and channels.

``tv:NAME`` builders take ``head``/``head_dropout`` options (see ``cnntool.models.heads``).
"""

from __future__ import annotations

import functools

from torch import nn

from cnntool.errors import ConfigError
from cnntool.config import HEAD_DEFAULT, HEAD_DROPOUT_DEFAULT
from cnntool.models.heads import adapt_first_conv, replace_head, set_head
from cnntool.models.registry import ModelInfo, register_namespace

TV_PREFIX = "tv:"


@functools.lru_cache(maxsize=1)
def torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def torchvision_info(name: str) -> ModelInfo:
    if name not in torchvision_names():
        raise ConfigError(f"--model tv:{name} is not a torchvision model (cnntool train --list-models lists them)")

    def build(num_classes: int, in_channels: int, *, head: str = HEAD_DEFAULT,
              head_dropout: float = HEAD_DROPOUT_DEFAULT) -> nn.Module:
        model = build_torchvision(name, num_classes, in_channels)
        if head != HEAD_DEFAULT or head_dropout:
            set_head(model, num_classes, head, head_dropout)
        return model

    build.__doc__ = f"torchvision {name}"
    return ModelInfo(TV_PREFIX + name, build, min_size=32, default_size=224, description=f"torchvision {name}")


def build_torchvision(name: str, num_classes: int, in_channels: int, weights=None) -> nn.Module:
    """A torchvision model with ``weights`` (a weights enum or None), its head sized for ``num_classes``
    and its first conv taking ``in_channels``."""
    import torchvision.models as tvm

    kwargs = {}
    if name.startswith("inception") or name.startswith("googlenet"):
        kwargs["aux_logits"] = weights is not None and name.startswith("inception")
        if weights is None:
            kwargs["init_weights"] = True
    model = tvm.get_model(name, weights=weights, **kwargs)
    replace_head(model, num_classes)
    if in_channels != 3:
        adapt_first_conv(model, in_channels)
    return model



register_namespace(TV_PREFIX, torchvision_info, torchvision_names, "any torchvision classifier")
