"""Classic architectures at coursework scale: LeNet, AlexNet-style, VGG-11-style, Network in Network."""

from __future__ import annotations

from torch import nn

from cnntool.models.layers import activation, conv_block, dense_block
from cnntool.models.registry import register_model


@register_model(min_size=12, default_size=32)
def lenet(num_classes: int, in_channels: int, *, bn: bool = False, dropout: float = 0.0, bias: bool = True,
          activation: str = "relu") -> nn.Module:
    """LeNet-5 style: two 5x5 conv + max-pool stages, dense 120 and 84 with dropout."""
    act = activation
    return nn.Sequential(
        *conv_block(in_channels, 6, 5, padding=2, bn=bn, bias=bias, act=act), nn.MaxPool2d(2),
        *conv_block(6, 16, 5, padding=0, bn=bn, bias=bias, act=act), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d((5, 5)), nn.Flatten(),
        *dense_block(400, 120, bias=bias, act=act, dropout=dropout),
        *dense_block(120, 84, bias=bias, act=act, dropout=dropout),
        nn.Linear(84, num_classes, bias=bias),
    )


@register_model(min_size=16, default_size=64)
def alexnet(num_classes: int, in_channels: int, *, bn: bool = False, dropout: float = 0.5, bias: bool = True,
            activation: str = "relu") -> nn.Module:
    """AlexNet style for small images: five convs, three max-pools, two dense layers with dropout."""
    act = activation
    return nn.Sequential(
        *conv_block(in_channels, 64, 5, bn=bn, bias=bias, act=act), nn.MaxPool2d(2),
        *conv_block(64, 192, 5, bn=bn, bias=bias, act=act), nn.MaxPool2d(2),
        *conv_block(192, 384, 3, bn=bn, bias=bias, act=act),
        *conv_block(384, 256, 3, bn=bn, bias=bias, act=act),
        *conv_block(256, 256, 3, bn=bn, bias=bias, act=act), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(),
        *([nn.Dropout(dropout)] if dropout else []),
        *dense_block(1024, 1024, bias=bias, act=act, dropout=dropout),
        *dense_block(1024, 512, bias=bias, act=act),
        nn.Linear(512, num_classes, bias=bias),
    )


@register_model(min_size=32, default_size=64)
def vgg11(num_classes: int, in_channels: int, *, bn: bool = False, dropout: float = 0.5, bias: bool = True,
          activation: str = "relu") -> nn.Module:
    """VGG-11 style (configuration A) for 32 px and up: eight 3x3 convs, five max-pools, dense 512-512."""
    act = activation
    layers: list[nn.Module] = []
    cin = in_channels
    for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += conv_block(cin, v, 3, bn=bn, bias=bias, act=act)
            cin = v
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               *dense_block(512, 512, bias=bias, act=act, dropout=dropout),
               *dense_block(512, 512, bias=bias, act=act, dropout=dropout),
               nn.Linear(512, num_classes, bias=bias)]
    return nn.Sequential(*layers)


def _nin_block(cin: int, cout: int, k: int, bn: bool, bias: bool, act: str, final: int | None = None) -> list[nn.Module]:
    out = final if final is not None else cout
    layers = conv_block(cin, cout, k, bn=bn, bias=bias, act=act)
    layers += conv_block(cout, cout, 1, bn=bn, bias=bias, act=act)
    layers += [nn.Conv2d(cout, out, 1, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm2d(out))
    layers.append(activation(act))
    return layers


@register_model(min_size=8, default_size=32)
def nin(num_classes: int, in_channels: int, *, bn: bool = False, dropout: float = 0.5, bias: bool = True,
        activation: str = "relu") -> nn.Module:
    """Network in Network: conv + two 1x1 convs per block, global average pooling, no dense layer."""
    act = activation
    drop = [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(
        *_nin_block(in_channels, 96, 5, bn, bias, act), nn.MaxPool2d(3, 2, 1), *drop,
        *_nin_block(96, 192, 5, bn, bias, act), nn.MaxPool2d(3, 2, 1), *([nn.Dropout(dropout)] if dropout else []),
        *_nin_block(192, 192, 3, bn, bias, act, final=num_classes),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
