"""``Conv2d``: a drop-in for ``torch.nn.Conv2d`` computed by the Numba kernels, and ``swap_convs``."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cnntool.conv.function import conv2d
from cnntool.errors import ModelError


class Conv2d(nn.Conv2d):
    """``torch.nn.Conv2d`` with the same constructor, parameters and ``state_dict`` keys, whose forward and
    backward run the Numba kernels (CPU, float32/float64). Weights move between the two with
    ``load_state_dict``; every ``padding_mode`` of nn.Conv2d is supported (non-zero modes pad with ``F.pad``).

    >>> conv = Conv2d(3, 16, 3, padding=1)
    >>> conv.load_state_dict(torch.nn.Conv2d(3, 16, 3, padding=1).state_dict())
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv2d(padded, weight, bias, self.stride, 0, self.dilation, self.groups)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", impl=numba"

    @classmethod
    def from_torch(cls, conv: nn.Conv2d) -> Conv2d:
        """A Conv2d sharing ``conv``'s parameter objects (so optimisers and tied weights keep working)."""
        if not isinstance(conv, nn.Conv2d):
            raise ModelError(f"expected an nn.Conv2d, got {type(conv).__name__}")
        if conv.weight.device.type != "cpu":
            raise ModelError(f"{conv!r} is on {conv.weight.device}; the Numba convolution runs on CPU only")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                  padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                  padding_mode=conv.padding_mode, device="meta", dtype=conv.weight.dtype)
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        return new


def swap_convs(model: nn.Module) -> nn.Module:
    """Replace, in place, every ``nn.Conv2d`` inside ``model`` by a :class:`Conv2d` sharing its parameters.

    Returns ``model`` (or the replacement when ``model`` is itself an ``nn.Conv2d``). Subclasses of nn.Conv2d
    other than this one (lazy, quantised, custom) are rejected with a ModelError rather than silently changed.
    """
    if isinstance(model, nn.Conv2d):
        return _convert(model, "model")
    for name, child in list(model.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, nn.Conv2d) and not isinstance(sub, Conv2d):
                setattr(child, attr, _convert(sub, f"{name + '.' if name else ''}{attr}"))
    return model


def _convert(conv: nn.Conv2d, where: str) -> nn.Module:
    if isinstance(conv, Conv2d):
        return conv
    if type(conv) is not nn.Conv2d:
        raise ModelError(f"cannot swap {where} ({type(conv).__name__}): only plain nn.Conv2d layers are supported")
    return Conv2d.from_torch(conv)
