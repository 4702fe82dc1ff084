"""Classifier heads and first-layer adaptation, shared by every model family and by finetune.

``--head linear|mlp:512,128`` and ``--head-dropout`` build a fresh head; the registered ``finetuned`` model
wraps a cnntool model with such a head, so a fine-tuned run's spec rebuilds the exact model.
"""

from __future__ import annotations

import torch
from torch import nn

from cnntool.config import HEAD_DEFAULT, HEAD_DROPOUT_DEFAULT, parse_head
from cnntool.errors import ConfigError, ModelError
from cnntool.models.registry import create_model, register_model

HEAD_ATTR = "cnntool_head"  # attribute of a model built with a custom head: dotted name of the head module


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
                new.weight.copy_(adapt_conv_weight(module.weight, in_channels))
                if module.bias is not None:
                    new.bias.copy_(module.bias)
            _set_module(model, name, new)
            return
    raise ModelError(f"{type(model).__name__} has no Conv2d to adapt to {in_channels} input channel(s)")


def adapt_conv_weight(w: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Conv filters (out, in, kh, kw) for ``in_channels`` inputs: summed for 1 channel (a grey image
    gives the same response as its RGB copy), else input channels cycled and rescaled."""
    if in_channels == 1:
        return w.sum(dim=1, keepdim=True)
    idx = torch.arange(in_channels) % w.shape[1]
    return w[:, idx] * (w.shape[1] / in_channels)


def make_head(spec: str, in_features: int, num_classes: int, dropout: float = HEAD_DROPOUT_DEFAULT, bias: bool = True) -> nn.Module:
    """A classifier head: ``linear`` is one Linear (Dropout first when ``dropout``); ``mlp:512,128`` is
    Linear-ReLU-Dropout per hidden width, then the output Linear."""
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"--head-dropout {dropout!r} must be in [0, 1)")
    hidden = parse_head(spec)
    if not hidden and not dropout:
        return nn.Linear(in_features, num_classes, bias=bias)
    layers: list[nn.Module] = []
    if not hidden:
        layers.append(nn.Dropout(dropout))
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h, bias=bias), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes, bias=bias))
    return nn.Sequential(*layers)


def set_head(model: nn.Module, num_classes: int, head: str = HEAD_DEFAULT, head_dropout: float = HEAD_DROPOUT_DEFAULT) -> str:
    """Replace the classifier by a fresh ``head``; returns (and records on the model) its dotted name."""
    name = head_name(model)
    old = model.get_submodule(name)
    if isinstance(old, nn.Sequential):  # a head made before: its first Linear gives the feature width
        old = next(m for m in old.modules() if isinstance(m, nn.Linear))
    if parse_head(head) or head_dropout:
        if not isinstance(old, nn.Linear):
            raise ConfigError(f"--head {head} needs a model whose classifier is a Linear layer "
                              f"({type(model).__name__} ends in a {type(old).__name__})")
        new = make_head(head, old.in_features, num_classes, head_dropout, bias=old.bias is not None)
        replace_head(model, num_classes, new)
    else:
        replace_head(model, num_classes)
    setattr(model, HEAD_ATTR, name)
    return name


def head_name(model: nn.Module) -> str:
    """Dotted name of the classifier head: the one recorded by ``set_head``, else the final layer."""
    return getattr(model, HEAD_ATTR, None) or classifier_name(model)


@register_model(min_size=8, default_size=64)
def finetuned(num_classes: int, in_channels: int, input_size: list[int] | None = None, *, base: str = "simplecnn",
              base_kwargs: dict | None = None, head: str = HEAD_DEFAULT, head_dropout: float = HEAD_DROPOUT_DEFAULT) -> nn.Module:
    """A cnntool model (base, base_kwargs) with a replaced classifier head (written by cnntool finetune)."""
    if base == "finetuned":
        raise ConfigError("model finetuned cannot wrap itself")
    model = create_model(base, num_classes, in_channels, input_size=input_size, **(base_kwargs or {}))
    set_head(model, num_classes, head, head_dropout)
    return model
