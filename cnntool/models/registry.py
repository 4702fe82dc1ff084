"""Model registry: a model is a short builder function registered under a name (as in timm).

``tv:NAME`` resolves to any torchvision classification model.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from cnntool.errors import ConfigError, ModelError

TV_PREFIX = "tv:"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]
    min_size: int  # smaller inputs are upsampled to this by default (--img-size overrides)
    default_size: int  # input side used when the data has no native size (folders)
    description: str

    @property
    def options(self) -> dict[str, Any]:
        """Keyword options the builder accepts, with their defaults."""
        sig = inspect.signature(self.builder)
        return {k: p.default for k, p in sig.parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str | None = None, *, min_size: int = 8, default_size: int = 64):
    """Decorator: ``builder(num_classes, in_channels, *, option=default, ...) -> nn.Module``."""
    def deco(fn: Callable[..., nn.Module]):
        key = name or fn.__name__
        doc = (inspect.getdoc(fn) or "").split("\n")[0]
        _REGISTRY[key] = ModelInfo(key, fn, min_size, default_size, doc)
        return fn
    return deco


def list_models(include_torchvision: bool = False) -> list[str]:
    names = sorted(_REGISTRY)
    if include_torchvision:
        from cnntool.models.tv import torchvision_names

        names += [TV_PREFIX + n for n in torchvision_names()]
    return names


def get_model_info(name: str) -> ModelInfo:
    if name.startswith(TV_PREFIX):
        from cnntool.models.tv import torchvision_info

        return torchvision_info(name[len(TV_PREFIX):])
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(sorted(_REGISTRY))} "
                         f"or tv:NAME (cnntool train --list-models)")
    return _REGISTRY[name]


def resolve_kwargs(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Keep the options the model accepts; an option it does not accept, set to a non-default value, is an error.

    ``options`` holds every model option the user could set (``ModelConfig.builder_kwargs()``).
    """
    from cnntool.config import ModelConfig

    info = get_model_info(name)
    accepted = info.options
    defaults = ModelConfig().builder_kwargs()
    out = {}
    for key, value in options.items():
        if value is None:
            continue
        if key in accepted:
            out[key] = value
        elif value != defaults.get(key, value):
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                flag = flag if value else "--no-" + key.replace("_", "-")
            raise ConfigError(f"{flag} does not apply to model {name} (its options: "
                              f"{', '.join(accepted) or 'none'})")
    return out


def create_model(name: str, num_classes: int, in_channels: int = 3, input_size: list[int] | None = None,
                 **kwargs: Any) -> nn.Module:
    """Build a model. Builders whose layer sizes depend on the input take ``input_size`` [H, W]."""
    info = get_model_info(name)
    unknown = set(kwargs) - set(info.options)
    if unknown:
        raise ConfigError(f"model {name} has no option(s) {', '.join(sorted(unknown))}")
    if "input_size" in inspect.signature(info.builder).parameters:
        size = list(input_size) if input_size else [info.default_size, info.default_size]
        kwargs = {"input_size": size, **kwargs}
    try:
        return info.builder(num_classes, in_channels, **kwargs)
    except (ValueError, KeyError) as e:
        raise ConfigError(f"model {name}: {e}") from None


# Error text that means the input was too large (memory) or too small (a map shrank to nothing).
OUT_OF_MEMORY = ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory",
                 "defaultcpuallocator", "failed to allocate")
TOO_SMALL = ("too small", "can't be greater than", "cannot be greater than", "expected", "output size is")
SMALL_SIDE = 64  # below this, an input that a model cannot take is taken to be too small


def check_input_size(model: nn.Module, name: str, in_channels: int, input_size: list[int]) -> None:
    """Fail before training, with one line, if the network cannot take this input size."""
    info = get_model_info(name)
    h, w = input_size
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, h, w))
    except RuntimeError as e:  # torch.OutOfMemoryError is one too
        first = str(e).strip().splitlines()[0][:160]
        text = str(e).lower()
        if isinstance(e, getattr(torch, "OutOfMemoryError", ())) or any(m in text for m in OUT_OF_MEMORY):
            raise ModelError(f"model {name} cannot take {h}×{w} input: too large, out of memory ({first}); "
                             f"try a smaller --img-size") from None
        if any(m in text for m in TOO_SMALL) or min(h, w) < max(SMALL_SIDE, info.min_size):
            raise ModelError(f"model {name} cannot take {h}×{w} input ({first}); the input is too small, "
                             f"try --img-size {max(info.min_size, h * 2)}") from None
        raise ModelError(f"model {name} cannot take {h}×{w} input ({first})") from None
    finally:
        model.train(was_training)
