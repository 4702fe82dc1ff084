"""End-to-end benchmark of the Numba convolution inside real networks: one SGD training step with torch's
convolutions vs the same model after :func:`~cnntool.conv.swap_convs`, and a per-layer breakdown over every
distinct convolution shape of the model. Library functions returning plain data (``cnntool conv-test --model``
and ``scripts/bench_conv_models.py`` render them).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnntool.conv.function import conv2d
from cnntool.conv.module import swap_convs
from cnntool.conv.suite import paired_times, set_all_threads

#: The models of the end-to-end table and the numba/torch ratio each should reach (one training step).
MODEL_GOALS = {"tv:mobilenet_v2": 0.9, "tv:efficientnet_b0": 0.9, "tv:resnet18": 1.2, "simplecnn": 1.2}
#: Defaults of the end-to-end benchmark: batch, image side, paired repetitions.
BATCH = 32
IMG_SIZE = 64
REPS = 5


@dataclass
class LayerTiming:
    """One distinct convolution of a model (shape and hyper-parameters), timed forward + backward."""

    shape: str  # "NxCxHxW * OxIxKHxKW s.. p.. d.. g.."
    count: int  # layers of the model with this shape
    numba_ms: float
    torch_ms: float
    ratio: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ModelTiming:
    model: str
    img_size: int
    batch: int
    threads: int
    torch_ms: float
    numba_ms: float
    ratio: float
    goal: float | None
    loss_torch: float
    loss_numba: float
    layers: list[LayerTiming] = field(default_factory=list)
    #: torch with the model and input in channels_last (its other CPU layout; the Numba model's small-map layers
    #: run channels-last), and the paired numba / that ratio
    torch_cl_ms: float = 0.0
    ratio_cl: float = 0.0

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.ratio <= self.goal

    def to_dict(self) -> dict:
        d = asdict(self)
        d["met"] = self.met
        return d


def _conv_key(conv: nn.Conv2d, xshape: tuple[int, ...]) -> tuple:
    return (tuple(xshape), tuple(conv.weight.shape), tuple(conv.stride), conv.padding, tuple(conv.dilation),
            conv.groups, conv.bias is not None, conv.padding_mode)


def _shape_text(key: tuple) -> str:
    xs, ws, stride, padding, dilation, groups, bias, _ = key
    extra = []
    if stride != (1, 1):
        extra.append(f"s{stride[0] if stride[0] == stride[1] else stride}")
    if padding not in (0, (0, 0), "valid"):
        p = padding if isinstance(padding, str) else (padding[0] if padding[0] == padding[1] else padding)
        extra.append(f"p{p}")
    if dilation != (1, 1):
        extra.append(f"d{dilation[0]}")
    if groups != 1:
        extra.append("dw" if groups == xs[1] == ws[0] else f"g{groups}")
    text = "x".join(map(str, xs)) + " * " + "x".join(map(str, ws))
    return text + (" " + ",".join(str(e).replace(" ", "") for e in extra) if extra else "")


def conv_shapes(model: nn.Module, x: torch.Tensor) -> dict[tuple, int]:
    """Every distinct (input shape, weight shape, hyper-parameters) of the model's nn.Conv2d layers on input x,
    with how many layers have it, in order of first use."""
    seen: dict[tuple, int] = {}
    hooks = []

    def hook(mod, inputs):
        key = _conv_key(mod, inputs[0].shape)
        seen[key] = seen.get(key, 0) + 1

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model.eval()
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train()
    return seen


def time_layer(key: tuple, reps: int) -> tuple[float, float, float]:
    """(numba ms, torch ms, paired ratio) of forward + backward (input, weight and bias gradients) of one conv."""
    xs, ws, stride, padding, dilation, groups, bias, _ = key
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(xs, generator=gen).requires_grad_(True)
    w = (torch.randn(ws, generator=gen) / max(1.0, float(np.prod(ws[1:])) ** 0.5)).requires_grad_(True)
    b = torch.randn(ws[0], generator=gen).requires_grad_(True) if bias else None
    with torch.no_grad():
        gy = torch.randn(F.conv2d(x, w, b, stride, padding, dilation, groups).shape, generator=gen)

    def step(fn: Callable) -> Callable[[], None]:
        def run():
            y = fn(x, w, b, stride, padding, dilation, groups)
            y.backward(gy)
            x.grad = w.grad = None
            if b is not None:
                b.grad = None
        return run

    return paired_times(step(conv2d), step(F.conv2d), reps)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())


def bench_model(name: str, *, img_size: int = IMG_SIZE, batch: int = BATCH, threads: int | None = 2,
                reps: int = REPS, layers: bool = True, num_classes: int = 10, in_channels: int = 3,
                progress: Callable[[str], None] | None = None) -> ModelTiming:
    """One SGD step (forward + backward + step, train mode) of model ``name`` with torch's convolutions vs the
    Numba ones, interleaved, medians over ``reps`` rounds (torch also with model and input channels_last); plus,
    with ``layers``, each distinct conv timed alone."""
    from cnntool.models.registry import create_model

    n_threads = set_all_threads(threads)
    torch.manual_seed(0)
    ref = create_model(name, num_classes, in_channels, [img_size, img_size])
    mine = swap_convs(copy.deepcopy(ref))
    ref_cl = copy.deepcopy(ref).to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch, in_channels, img_size, img_size), generator=gen)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch,), generator=gen)
    runs = [(m, torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9), inp)
            for m, inp in ((ref, x), (mine, x), (ref_cl, x_cl))]
    for m, _, _ in runs:
        m.train()
    if progress:
        progress(f"{name}: first steps (compiles the kernels once)")
    losses = []
    for m, o, inp in runs:  # the same random stream for each first step: dropout and stochastic depth agree
        torch.manual_seed(0)
        losses.append(_train_step(m, o, inp, y))
    loss_t, loss_n, _ = losses
    times: list[list[float]] = [[], [], []]
    for i in range(reps):
        if progress:
            progress(f"{name}: step {i + 1}/{reps}")
        order = [(i + k) % 3 for k in range(3)]  # each model first, second and last in turn
        for j in order:
            m, o, inp = runs[j]
            t0 = time.perf_counter()
            _train_step(m, o, inp, y)
            times[j].append(time.perf_counter() - t0)
    tt, tn, tc = (np.array(t) for t in times)
    result = ModelTiming(name, img_size, batch, n_threads, float(np.median(tt)) * 1e3, float(np.median(tn)) * 1e3,
                         float(np.median(tn / np.maximum(tt, 1e-12))), MODEL_GOALS.get(name), loss_t, loss_n,
                         torch_cl_ms=float(np.median(tc)) * 1e3, ratio_cl=float(np.median(tn / np.maximum(tc, 1e-12))))
    if layers:
        shapes = conv_shapes(ref, x)
        for k, (key, count) in enumerate(shapes.items()):
            if progress:
                progress(f"{name}: layer {k + 1}/{len(shapes)}")
            nm, tm, ratio = time_layer(key, reps)
            result.layers.append(LayerTiming(_shape_text(key), count, nm, tm, ratio))
    return result
