"""Small CNNs for coursework-sized data: simplecnn and the configurable five-block cnn5."""

from __future__ import annotations

from torch import nn

from cnntool.errors import ModelError
from cnntool.models.layers import activation, conv_block, parse_filters, parse_kernels
from cnntool.models.registry import register_model


@register_model(min_size=16, default_size=64)
def simplecnn(num_classes: int, in_channels: int, *, bn: bool = False, dropout: float = 0.0, bias: bool = True,
              activation: str = "relu") -> nn.Module:
    """Three stride-2 3x3 convs (64/128/256), global average pooling, dense 256, output."""
    act = activation
    layers: list[nn.Module] = []
    cin = in_channels
    for cout in (64, 128, 256):
        layers += conv_block(cin, cout, 3, stride=2, padding=1, bn=bn, bias=bias, act=act)
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 256, bias=bias), _act(act)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(256, num_classes, bias=bias))
    return nn.Sequential(*layers)


def _act(name: str) -> nn.Module:
    return activation(name)


class CNN5(nn.Module):
    """Five conv blocks (conv [+BN] + activation + 2x2 max-pool), flatten, one dense layer, output."""

    def __init__(self, num_classes: int, in_channels: int, input_size: list[int], filters: list[int],
                 kernels: list[int], dense: int, bn: bool, dropout: float, bias: bool, act: str):
        super().__init__()
        blocks: list[nn.Module] = []
        cin = in_channels
        for cout, k in zip(filters, kernels):
            blocks += conv_block(cin, cout, k, bn=bn, bias=bias, act=act)
            blocks.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*blocks)
        head: list[nn.Module] = [nn.Flatten()]
        if dropout:
            head.append(nn.Dropout(dropout))
        h, w = input_size[0] // 32, input_size[1] // 32
        if h < 1 or w < 1:
            raise ModelError(f"model cnn5 cannot take {input_size[0]}×{input_size[1]} input (five 2×2 max-pools "
                             f"need at least 32×32); try --img-size 32")
        head += [nn.Linear(cin * h * w, dense, bias=bias), activation(act)]
        if dropout:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(dense, num_classes, bias=bias))
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model(min_size=32, default_size=64)
def cnn5(num_classes: int, in_channels: int, input_size: list[int], *, filters: str | None = None, kernels: str | None = None,
         dense: int | None = None, bn: bool = False, dropout: float = 0.0, bias: bool = True,
         activation: str = "relu") -> nn.Module:
    """Five conv blocks, each activation + 2x2 max-pool, then one dense layer (options: filters, kernels, dense)."""
    return CNN5(num_classes, in_channels, input_size, parse_filters(filters, 5, "doubling16"), parse_kernels(kernels, 5, "constant3"),
                dense or 128, bn, dropout, bias, activation)
