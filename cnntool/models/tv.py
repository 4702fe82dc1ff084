"""Every torchvision classification model as ``tv:NAME``, adapted to the data's classes and channels."""

from __future__ import annotations

import functools

import torch
from torch import nn

from cnntool.errors import ModelError
from cnntool.models.registry import TV_PREFIX, ModelInfo


@functools.lru_cache(maxsize=1)
def torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def torchvision_info(name: str) -> ModelInfo:
    if name not in torchvision_names():
        raise ModelError(f"unknown torchvision model {name!r} (cnntool train --list-models lists them)")

    def build(num_classes: int, in_channels: int) -> nn.Module:
        return build_torchvision(name, num_classes, in_channels)

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


def _set_module(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def classifier_name(model: nn.Module) -> str:
    """Dotted name of the final classification layer (the last Linear, or a final 1x1 Conv as in SqueezeNet)."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and "aux" not in name.lower():
            last = name
    if last is None:
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
                last = name
    if last is None:
        raise ModelError(f"cannot find the classifier layer of {type(model).__name__}")
    return last


def replace_head(model: nn.Module, num_classes: int, head: nn.Module | None = None) -> str:
    """Replace the classifier by a fresh layer for ``num_classes`` (or by ``head``); returns its name."""
    name = classifier_name(model)
    old = model.get_submodule(name)
    if head is None:
        if isinstance(old, nn.Linear):
            head = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        else:
            head = nn.Conv2d(old.in_channels, num_classes, 1)
    _set_module(model, name, head)
    if hasattr(model, "AuxLogits") and getattr(model, "AuxLogits") is not None:
        model.AuxLogits = None
        model.aux_logits = False
    return name


def adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Make the first conv take ``in_channels``; pretrained filters are summed (1 channel) or cycled."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            new = nn.Conv2d(in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                            module.dilation, module.groups, module.bias is not None, module.padding_mode)
            with torch.no_grad():
                w = module.weight
                if in_channels == 1:
                    new.weight.copy_(w.sum(dim=1, keepdim=True))
                else:
                    idx = torch.arange(in_channels) % w.shape[1]
                    new.weight.copy_(w[:, idx] * (w.shape[1] / in_channels))
                if module.bias is not None:
                    new.bias.copy_(module.bias)
            _set_module(model, name, new)
            return
    raise ModelError(f"{type(model).__name__} has no Conv2d to adapt to {in_channels} input channel(s)")
