"""Model registry: a model is a short builder function registered under a name (as in timm).

Families of models that live in another library (torchvision's ``tv:NAME``) plug in as a namespace: a prefix,
a function that lists their names and one that describes a name. The registry imports none of them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from cnntool.errors import ConfigError, ModelError, first_line

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


@dataclass(frozen=True)
class Namespace:
    prefix: str  # e.g. "tv:"
    info: Callable[[str], ModelInfo]  # name without the prefix -> its ModelInfo (ModelError when unknown)
    names: Callable[[], list[str]]  # every name without the prefix
    description: str  # what the prefix means, for error messages and --list-models


_NAMESPACES: dict[str, Namespace] = {}


def register_namespace(prefix: str, info: Callable[[str], ModelInfo], names: Callable[[], list[str]],
                       description: str) -> None:
    """Make ``PREFIXNAME`` resolve through ``info(NAME)``; ``names()`` lists them for ``--list-models``."""
    if not prefix.endswith(":"):
        raise ValueError(f"a model namespace prefix ends with ':' ({prefix!r})")
    _NAMESPACES[prefix] = Namespace(prefix, info, names, description)


def namespaces() -> list[Namespace]:
    return list(_NAMESPACES.values())


def register_model(name: str | None = None, *, min_size: int = 8, default_size: int = 64):
    """Decorator: ``builder(num_classes, in_channels, *, option=default, ...) -> nn.Module``."""
    def deco(fn: Callable[..., nn.Module]):
        key = name or fn.__name__
        # the first paragraph, joined: a docstring wrapped over several lines is not cut mid-sentence
        doc = " ".join((inspect.getdoc(fn) or "").split("\n\n")[0].split())
        _REGISTRY[key] = ModelInfo(key, fn, min_size, default_size, doc)
        return fn
    return deco


def list_models(include_namespaces: bool = False) -> list[str]:
    """The registered names; with ``include_namespaces`` also every ``PREFIX:NAME`` of each namespace."""
    names = sorted(_REGISTRY)
    if include_namespaces:
        for ns in _NAMESPACES.values():
            names += [ns.prefix + n for n in ns.names()]
    return names


def get_model_info(name: str) -> ModelInfo:
    prefix, sep, rest = name.partition(":")
    if sep and prefix + sep in _NAMESPACES:
        return _NAMESPACES[prefix + sep].info(rest)
    if name not in _REGISTRY:
        spaces = "".join(f" or {ns.prefix}NAME ({ns.description})" for ns in _NAMESPACES.values())
        raise ConfigError(f"--model {name!r} is not a model; choose one of {', '.join(sorted(_REGISTRY))}{spaces} "
                         f"(cnntool train --list-models)")
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
        first = first_line(e, 160)
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


# ---------------------------------------------------------------------------- memory, before allocating

MEMORY_LIMIT_ENV = "CNNTOOL_MAX_MEMORY_GB"
GIB = 1024**3


def memory_limit() -> float:
    """Bytes a model may need: ``$CNNTOOL_MAX_MEMORY_GB`` GiB, else 80% of this machine's memory."""
    import os

    value = os.environ.get(MEMORY_LIMIT_ENV)
    if value:
        try:
            return float(value) * GIB
        except ValueError:
            raise ConfigError(f"${MEMORY_LIMIT_ENV}={value!r} must be a number of GiB") from None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * GIB
    return 0.8 * total


def estimate_memory(name: str, num_classes: int, in_channels: int, input_size: list[int],
                    **kwargs: Any) -> tuple[int, int] | None:
    """(parameters, activation elements for one image) of a model, found on the meta device: nothing is
    allocated, so a hostile spec (a million filters, a 10^12-wide head) is measured before it is built.
    None when the model cannot be built on the meta device (then it is not estimated)."""
    acts = [0]

    def count(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            acts[0] += output.numel()

    try:
        with torch.device("meta"):
            model = create_model(name, num_classes, in_channels, input_size=input_size, **kwargs)
            params = sum(p.numel() for p in model.parameters())
            hooks = [m.register_forward_hook(count) for m in model.modules() if not any(m.children())]
            model.eval()
            with torch.no_grad():
                model(torch.zeros(1, in_channels, *input_size))
            for h in hooks:
                h.remove()
    except (ConfigError, ModelError):
        raise
    except Exception:  # noqa: BLE001 - a model the meta device cannot run is simply not estimated
        return None
    return params, acts[0]


def check_memory(name: str, num_classes: int, in_channels: int, input_size: list[int], batch_size: int = 1,
                 training: bool = False, **kwargs: Any) -> None:
    """Refuse, with one line, a model (and batch) that would need more memory than ``memory_limit()``.

    float32: parameters once (training: ×4 for gradients and two optimizer moments); activations per image
    × batch (training: ×2, kept for the backward pass)."""
    est = estimate_memory(name, num_classes, in_channels, input_size, **kwargs)
    if est is None:
        return
    params, acts = est
    need = 4 * (params * (4 if training else 1) + acts * batch_size * (2 if training else 1))
    limit = memory_limit()
    if need > limit:
        h, w = input_size
        raise ModelError(f"model {name} at {h}×{w} needs about {need / GIB:,.1f} GiB ({params:,} parameters, "
                         f"{acts:,} activations per image, batch {batch_size}); the limit is {limit / GIB:,.1f} GiB "
                         f"(set ${MEMORY_LIMIT_ENV} to change it)")
