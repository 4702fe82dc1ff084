"""ResNet-18 for small images (CIFAR-style 3x3 stem, no initial max-pool)."""

from __future__ import annotations

from torch import nn

from cnntool.models.layers import activation as make_act
from cnntool.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, bn: bool, bias: bool, act: str):
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if bn else (lambda c: nn.Identity())
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=bias and not bn)
        self.bn1 = norm(cout)
        self.act1 = make_act(act)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=bias and not bn)
        self.bn2 = norm(cout)
        self.act2 = make_act(act)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=bias and not bn), norm(cout))

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, bn: bool, dropout: float, bias: bool, act: str):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=bias and not bn),
                                  nn.BatchNorm2d(64) if bn else nn.Identity(), make_act(act))
        stages = []
        cin = 64
        for i, cout in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride, bn, bias, act),
                                        BasicBlock(cout, cout, 1, bn, bias, act)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(512, num_classes, bias=bias)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.dropout(self.flatten(self.pool(x))))


@register_model(min_size=8, default_size=32)
def resnet18(num_classes: int, in_channels: int, *, bn: bool = True, dropout: float = 0.0, bias: bool = True,
             activation: str = "relu") -> nn.Module:
    """ResNet-18 with a CIFAR-style 3x3 stem and BasicBlocks 64-128-256-512 (BatchNorm on by default)."""
    return ResNet18(num_classes, in_channels, bn, dropout, bias, activation)
