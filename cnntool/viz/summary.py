"""Per-layer summary of a model: output shape, parameters and MACs, counted by ``torch.utils.flop_counter``.

``FlopCounterMode`` (maintained in torch) counts the FLOPs of matrix multiplications and convolutions
(and attention), as 2 × multiply-accumulates. cnntool reports MACs = FLOPs / 2 and FLOPs. Element-wise
work (bias add, BatchNorm, activations, pooling, residual adds) is not counted, as in most papers'
tables. A module called several times in one forward (a reused layer) shows its summed count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class LayerRow:
    name: str
    type: str
    output_shape: list[int] | None
    params: int
    macs: int
    calls: int = 1


@dataclass
class Summary:
    arch: str
    input_shape: list[int]
    layers: list[LayerRow]
    total_params: int
    trainable_params: int
    macs: int
    flops: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch, "input_shape": self.input_shape,
            "layers": [vars(r) for r in self.layers],
            "total_params": self.total_params, "trainable_params": self.trainable_params,
            "macs": self.macs, "flops": self.flops,
            "counting": "MACs = multiply-accumulates of convolutions and matrix multiplications for one image; "
                        "FLOPs = 2 x MACs (torch.utils.flop_counter); element-wise ops are not counted",
            **self.extra,
        }


def _leaf(m: nn.Module) -> bool:
    return not any(True for _ in m.children())


def model_summary(model: nn.Module, input_size: list[int] | tuple[int, int], in_channels: int = 3,
                  arch: str | None = None) -> Summary:
    """Summary of ``model`` for one image of ``in_channels``×H×W (eval mode, no gradients)."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = int(input_size[0]), int(input_size[1])
    x = torch.zeros(1, in_channels, h, w)
    was_training = model.training
    model.eval()
    shapes: dict[str, list[int] | None] = {}
    calls: dict[str, int] = {}
    order: list[str] = []
    handles = []
    for name, mod in model.named_modules():
        if name and _leaf(mod):
            def hook(m, i, o, name=name):
                if name not in calls:
                    order.append(name)
                calls[name] = calls.get(name, 0) + 1
                shapes[name] = list(o.shape) if isinstance(o, torch.Tensor) else None
            handles.append(mod.register_forward_hook(hook))
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        for hd in handles:
            hd.remove()
        model.train(was_training)
    counts = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    root = type(model).__name__
    modules = dict(model.named_modules())
    rows = []
    for name in order:
        mod = modules[name]
        flops = counts.get(f"{root}.{name}", 0)
        rows.append(LayerRow(name, type(mod).__name__, shapes.get(name),
                             sum(p.numel() for p in mod.parameters(recurse=False)), flops // 2, calls[name]))
    # parameters of modules never called (or held by non-leaf modules) still count in the totals
    total_flops = counts.get("Global", counter.get_total_flops())
    other = total_flops // 2 - sum(r.macs for r in rows)
    if other > 0:
        rows.append(LayerRow("(functional ops in forward code)", "-", None, 0, other, 1))
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    listed = sum(r.params for r in rows)
    extra = {}
    if listed != n_params:
        extra["params_not_in_called_leaf_layers"] = n_params - listed
    return Summary(arch or type(model).__name__, [1, in_channels, h, w], rows, n_params, n_train,
                   total_flops // 2, total_flops, extra)


def summarise(target: str, img_size: int | None = None, in_channels: int | None = None,
              num_classes: int | None = None, model_options: dict[str, Any] | None = None) -> Summary:
    """A run directory / checkpoint (its spec gives everything) or a registered model name
    (``in_channels`` default 3, ``num_classes`` default 10, input side: ``img_size`` or the model's default)."""
    from pathlib import Path

    from cnntool.config import MAX_IMG_SIZE, ModelConfig
    from cnntool.errors import ConfigError
    from cnntool.models import check_input_size, create_model, get_model_info, resolve_kwargs
    from cnntool.spec import MAX_CHANNELS, MAX_CLASSES

    for flag, value, top in (("--img-size", img_size, MAX_IMG_SIZE), ("--in-channels", in_channels, MAX_CHANNELS),
                             ("--num-classes", num_classes, MAX_CLASSES)):
        if value is not None and not 1 <= value <= top:
            raise ConfigError(f"{flag} {value} must be in 1..{top}")
    given = {k: v for k, v in (model_options or {}).items() if v is not None}
    p = Path(target)
    if p.exists():
        if given:
            raise ConfigError(f"--{next(iter(given)).replace('_', '-')} applies to a model name; a run's spec "
                              f"already fixes its architecture")
        from cnntool.runs import load_run

        run = load_run(p)
        spec = run.spec
        size = [img_size, img_size] if img_size else list(spec.input_size)
        model = run.model
        if img_size and list(spec.input_size) != size:
            check_input_size(model, spec.arch, spec.in_channels, size)
        s = model_summary(model, size, spec.in_channels, spec.arch)
        s.extra["source"] = str(run.checkpoint)
        s.extra["num_classes"] = spec.num_classes
        return s
    info = get_model_info(target)  # unknown name -> ModelError listing the models
    size = [img_size if img_size is not None else info.default_size] * 2
    c = in_channels if in_channels is not None else 3
    k = num_classes if num_classes is not None else 10
    ModelConfig(model=target, **given).validate()
    model = create_model(target, k, c, input_size=size, **resolve_kwargs(target, given))
    check_input_size(model, target, c, size)
    s = model_summary(model, size, c, target)
    s.extra["num_classes"] = k
    return s
