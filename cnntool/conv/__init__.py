"""Numba 2-D convolution: kernels, a differentiable ``conv2d``, the drop-in ``Conv2d`` and the conformance
suite behind ``cnntool conv-test``.

>>> import torch, cnntool.conv as cc
>>> y = cc.conv2d(torch.randn(1, 3, 8, 8, requires_grad=True), torch.randn(4, 3, 3, 3), padding="same")
>>> y.sum().backward()
"""

from cnntool.conv.function import (
    Conv2dFunction,
    blur_kernel,
    conv2d,
    filter2d,
    gaussian_kernel,
)
from cnntool.conv.kernels import set_threads
from cnntool.conv.module import Conv2d, swap_convs

__all__ = [
    "Conv2d",
    "Conv2dFunction",
    "blur_kernel",
    "conv2d",
    "filter2d",
    "gaussian_kernel",
    "set_threads",
    "swap_convs",
]
