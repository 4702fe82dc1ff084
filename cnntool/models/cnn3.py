"""cnn3: the coursework's three-conv CIFAR network (16/32/64 3x3 convs, 2x2 max-pool after each, dense 500)."""

from __future__ import annotations

from torch import nn

from cnntool.errors import ModelError
from cnntool.models.layers import activation as make_activation
from cnntool.models.layers import conv_block
from cnntool.models.registry import register_model


@register_model(min_size=8, default_size=32)
def cnn3(num_classes: int, in_channels: int, input_size: list[int], *, dense: int | None = None, bn: bool = False,
         dropout: float = 0.0, bias: bool = True, activation: str = "relu") -> nn.Module:
    """Three 3x3 convs (16/32/64) each [+BN] + activation + 2x2 max-pool, dense 500, output; dropout after the
    last conv block and after the first dense layer."""
    h, w = input_size[0] // 8, input_size[1] // 8
    if h < 1 or w < 1:
        raise ModelError(f"model cnn3 cannot take {input_size[0]}×{input_size[1]} input (three 2×2 max-pools need "
                         f"at least 8×8); try --img-size 8")
    layers: list[nn.Module] = []
    cin = in_channels
    for cout in (16, 32, 64):
        layers += conv_block(cin, cout, 3, bn=bn, bias=bias, act=activation)
        layers.append(nn.MaxPool2d(2))
        cin = cout
    if dropout:
        layers.append(nn.Dropout(dropout))
    units = dense or 500
    layers += [nn.Flatten(), nn.Linear(cin * h * w, units, bias=bias), make_activation(activation)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(units, num_classes, bias=bias))
    return nn.Sequential(*layers)
