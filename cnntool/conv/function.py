"""Torch-facing 2-D convolution: argument checking like torch's, an autograd Function whose forward and backward
run the Numba kernels, the depthwise ``filter2d`` and its blur/Gaussian kernels."""

from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch

from cnntool.conv import kernels as K
from cnntool.errors import ConfigError, ModelError

IntPair = Union[int, tuple[int, int]]
Padding = Union[int, tuple[int, int], str]

_DTYPES = (torch.float32, torch.float64)
_NP_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        vals = tuple(value)
    else:
        vals = (value, value)
    if len(vals) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
        raise ConfigError(f"{name} must be an int or a pair of ints, got {value!r}")
    vals = (int(vals[0]), int(vals[1]))
    if min(vals) < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return vals


def resolve_padding(padding: Padding, kernel: tuple[int, int], dilation: tuple[int, int],
                    stride: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from an int, a pair, "valid" or "same" (extra pixel bottom/right, like torch)."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            if stride != (1, 1):
                raise ConfigError(f"padding='same' is not supported for strided convolutions (stride={stride})")
            th = dilation[0] * (kernel[0] - 1)
            tw = dilation[1] * (kernel[1] - 1)
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        raise ConfigError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    ph, pw = _pair(padding, "padding", 0)
    return (ph, ph, pw, pw)


def _check_tensor(t, name: str, ndim: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ModelError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise ModelError(f"{name} must be {want}, got shape {tuple(t.shape)}")
    if t.device.type != "cpu":
        raise ModelError(f"{name} is on {t.device}; the Numba convolution runs on CPU tensors only")
    if t.dtype not in _DTYPES:
        raise ModelError(f"{name} has dtype {t.dtype}; the Numba convolution supports float32 and float64")
    return t


def make_geometry(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: IntPair,
                  padding: Padding, dilation: IntPair, groups: int) -> K.Geometry:
    """Validate the arguments of conv2d (messages like torch's) and derive the output geometry."""
    _check_tensor(x, "input", (4,))
    _check_tensor(weight, "weight", (4,))
    if weight.dtype != x.dtype:
        raise ModelError(f"input dtype {x.dtype} and weight dtype {weight.dtype} differ")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ConfigError(f"groups must be a positive int, got {groups!r}")
    groups = int(groups)
    stride_p = _pair(stride, "stride", 1)
    dil_p = _pair(dilation, "dilation", 1)
    N, C, H, W = x.shape
    Cout, Cg, KH, KW = weight.shape
    if min(Cout, Cg, KH, KW) < 1:
        raise ModelError(f"weight of shape {tuple(weight.shape)} has an empty dimension")
    if Cout % groups:
        raise ModelError(f"out_channels {Cout} (weight.shape[0]) is not divisible by groups={groups}")
    if Cg * groups != C:
        raise ModelError(f"weight of shape {tuple(weight.shape)} with groups={groups} expects input with "
                         f"{Cg * groups} channels, but got input of shape {tuple(x.shape)} ({C} channels)")
    if bias is not None:
        _check_tensor(bias, "bias", (1,))
        if bias.dtype != x.dtype:
            raise ModelError(f"bias dtype {bias.dtype} and input dtype {x.dtype} differ")
        if bias.shape[0] != Cout:
            raise ModelError(f"bias of shape {tuple(bias.shape)} does not match {Cout} output channels")
    pad = resolve_padding(padding, (KH, KW), dil_p, stride_p)
    geo = K.Geometry.make(x.shape, weight.shape, stride_p, pad, dil_p, groups)
    if geo.OH < 1 or geo.OW < 1:
        raise ModelError(f"input of spatial size {H}x{W} (padded {H + pad[0] + pad[1]}x{W + pad[2] + pad[3]}) "
                         f"is smaller than the dilated kernel "
                         f"{dil_p[0] * (KH - 1) + 1}x{dil_p[1] * (KW - 1) + 1}")
    if N == 0:
        raise ModelError(f"input of shape {tuple(x.shape)} has an empty batch")
    return geo


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _is_nhwc(t: torch.Tensor) -> bool:
    """A channels_last tensor that is not also plain contiguous (with one channel or a 1x1 map it is both)."""
    return not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _np_io(t: torch.Tensor, nhwc_ok: bool) -> tuple[np.ndarray, bool]:
    """The array a kernel reads: the NHWC memory of a channels_last tensor where the path takes it as it is,
    else NCHW (copied by torch if the tensor is not contiguous); and whether it is NHWC."""
    if nhwc_ok and _is_nhwc(t):
        return t.detach().permute(0, 2, 3, 1).numpy(), True
    return _np(t), False


def _new(shape: tuple[int, int, int, int], dtype: torch.dtype, nhwc: bool) -> tuple[torch.Tensor, np.ndarray]:
    """A fresh output tensor, channels_last when ``nhwc``, and the array its kernels write (NHWC or NCHW)."""
    if not nhwc:
        t = torch.empty(shape, dtype=dtype)
        return t, t.numpy()
    t = torch.empty(shape, dtype=dtype, memory_format=torch.channels_last)
    return t, t.permute(0, 2, 3, 1).numpy()


def forward_numpy(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, geo: K.Geometry):
    """Run the forward kernels; returns (output tensor, Saved state for backward). Paths that compute in
    channels-last layout (:func:`~cnntool.conv.kernels.channels_last_io`) return a channels_last tensor and read a
    channels_last input in place, so that a run of such layers (and torch's BatchNorm/ReLU between them, which
    keep the format) never transposes its activations."""
    K.set_threads(flops=K.conv_flops(geo))
    nhwc = K.channels_last_io(geo, _NP_DTYPES[x.dtype])
    xa, x_nhwc = _np_io(x, nhwc)
    out, oa = _new((geo.N, geo.Cout, geo.OH, geo.OW), x.dtype, nhwc)
    _, saved = K.forward(xa, _np(weight), None if bias is None else _np(bias), geo, out=oa, x_nhwc=x_nhwc,
                         out_nhwc=nhwc)
    saved.nhwc, saved.x_nhwc = nhwc, x_nhwc
    return out, saved


def backward_numpy(gy: torch.Tensor, weight: torch.Tensor, saved: K.Saved, need=(True, True, True)):
    """(grad_input, grad_weight, grad_bias) as tensors of the input dtype, None where not needed. grad_input has
    the input's layout: a channels_last gradient for an NCHW input would meet the NCHW tensors of the layers
    before it in torch's elementwise backward ops, whose mixed-layout loops are several times slower (simplecnn's
    first ReLU backward: 1.5 -> 9.5 ms)."""
    geo = saved.geo
    K.set_threads(flops=K.conv_flops(geo))
    nhwc = saved.nhwc
    g, g_nhwc = _np_io(gy, nhwc)
    dtype = gy.dtype
    gx = gw = gb = None
    if need[0]:
        gx, gxa = _new((geo.N, geo.C, geo.H, geo.W), dtype, saved.x_nhwc)
        K.grad_input(g, _np(weight), geo, out=gxa, saved=saved if need[1] else None, gy_nhwc=g_nhwc,
                     out_nhwc=saved.x_nhwc)
    if need[1]:
        gw = torch.from_numpy(K.grad_weight(g, saved, gy_nhwc=g_nhwc)).to(dtype)
    if need[2]:
        gb = torch.from_numpy(K.grad_bias(g, nhwc=g_nhwc)).to(dtype)
    return gx, gw, gb


class Conv2dFunction(torch.autograd.Function):
    """y = conv2d(x, w, b) with forward and backward (grad-input, grad-weight, grad-bias) in Numba."""

    @staticmethod
    def forward(ctx, x, weight, bias, geo):  # noqa: D401 - autograd signature
        out, saved = forward_numpy(x, weight, bias, geo)
        if any(ctx.needs_input_grad[:3]):
            ctx.saved = saved
            ctx.has_bias = bias is not None
            # a path that keeps the input itself (not a copy) saves it too, so that autograd reports an in-place
            # change of it like torch's own convolution does
            ctx.save_for_backward(weight, *(() if saved.x is None else (x,)))
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        weight = ctx.saved_tensors[0]
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2])
        gx, gw, gb = backward_numpy(gy, weight, ctx.saved, need)
        return gx, gw, gb, None


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: IntPair = 1,
           padding: Padding = 0, dilation: IntPair = 1, groups: int = 1) -> torch.Tensor:
    """Drop-in for ``torch.nn.functional.conv2d`` (CPU, float32/float64), differentiable, computed by Numba.

    >>> y = conv2d(torch.randn(2, 3, 16, 16), torch.randn(8, 3, 3, 3), padding="same")
    """
    unbatched = isinstance(x, torch.Tensor) and x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    geo = make_geometry(x, weight, bias, stride, padding, dilation, groups)
    out = Conv2dFunction.apply(x, weight, bias, geo)
    return out.squeeze(0) if unbatched else out


def filter2d(x: torch.Tensor, kernel: torch.Tensor, stride: IntPair = 1, padding: Padding = 0) -> torch.Tensor:
    """Apply one 2-D ``kernel`` (KH, KW) to every channel of ``x`` (N, C, H, W) separately (depthwise).

    >>> blurred = filter2d(images, blur_kernel(3), padding="same")
    """
    if not isinstance(kernel, torch.Tensor):
        kernel = torch.as_tensor(kernel)
    if kernel.dim() != 2:
        raise ModelError(f"filter2d kernel must be 2-D (KH, KW), got shape {tuple(kernel.shape)}")
    _check_tensor(x, "input", (4,))
    kernel = kernel.to(x.dtype)
    C = x.shape[1]
    weight = kernel.reshape(1, 1, *kernel.shape).expand(C, 1, *kernel.shape)
    return conv2d(x, weight, None, stride=stride, padding=padding, dilation=1, groups=C)


def blur_kernel(size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Box blur: a size x size kernel of 1/size^2 (the coursework's blur filter)."""
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"blur kernel size must be a positive int, got {size!r}")
    return torch.full((int(size), int(size)), 1.0 / (size * size), dtype=dtype)


def gaussian_kernel(size: int, sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised size x size Gaussian kernel with standard deviation ``sigma`` (pixels), centred."""
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"gaussian kernel size must be a positive int, got {size!r}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ConfigError(f"gaussian sigma must be a positive number, got {sigma!r}")
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r * r) / (2 * sigma * sigma))
    k = torch.outer(g, g)
    return (k / k.sum()).to(dtype)
