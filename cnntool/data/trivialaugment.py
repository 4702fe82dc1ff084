"""TrivialAugmentWide a whole batch at a time, each image with its own op and magnitude.

torchvision's ``transforms.v2.TrivialAugmentWide`` draws one op per call, so a batch goes through it one image
at a time (about 1 ms of Python per 32×32 image, more than the training step it feeds). Here the draws are made
for the whole batch at once (from the caller's generator), the images are grouped by op, and each group goes
through one batched kernel with a per-image magnitude: affine ops through one ``grid_sample`` with a matrix per
image, colour ops as broadcast blends. Each kernel repeats v2's arithmetic (same matrices, same float32 blends,
same rounding), so an image comes out as v2 would make it with the same op and magnitude; a test checks every op
against v2 itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms.v2.functional._color import _rgb_to_grayscale_image
from torchvision.transforms.v2.functional._geometry import _get_inverse_affine_matrix

BINS = 31  # v2's num_magnitude_bins
# op -> (magnitudes over the bins, signed): v2's TrivialAugmentWide._AUGMENTATION_SPACE, in its order
SPACE: dict[str, tuple[torch.Tensor | None, bool]] = {
    "Identity": (None, False),
    "ShearX": (torch.linspace(0.0, 0.99, BINS), True),
    "ShearY": (torch.linspace(0.0, 0.99, BINS), True),
    "TranslateX": (torch.linspace(0.0, 32.0, BINS), True),
    "TranslateY": (torch.linspace(0.0, 32.0, BINS), True),
    "Rotate": (torch.linspace(0.0, 135.0, BINS), True),
    "Brightness": (torch.linspace(0.0, 0.99, BINS), True),
    "Color": (torch.linspace(0.0, 0.99, BINS), True),
    "Contrast": (torch.linspace(0.0, 0.99, BINS), True),
    "Sharpness": (torch.linspace(0.0, 0.99, BINS), True),
    "Posterize": ((8 - (torch.arange(BINS) / ((BINS - 1) / 6))).round().int(), False),
    "Solarize": (torch.linspace(1.0, 0.0, BINS), False),
    "AutoContrast": (None, False),
    "Equalize": (None, False),
}
OPS = tuple(SPACE)


def draw(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: an op index into OPS and its magnitude (float64, signed where the op is)."""
    op = torch.randint(len(OPS), (n,), generator=g)
    bins = torch.randint(BINS, (n,), generator=g)
    flip = torch.rand(n, generator=g) <= 0.5
    mag = torch.zeros(n, dtype=torch.float64)
    for k, (values, signed) in enumerate(SPACE.values()):
        hit = op == k
        if values is not None and hit.any():
            m = values[bins[hit]].double()
            mag[hit] = torch.where(flip[hit], -m, m) if signed else m
    return op, mag


def trivial_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """TrivialAugmentWide on a uint8 (N, C, H, W) batch, C = 1 or 3, one draw per image from ``g``."""
    if x.dtype != torch.uint8:
        raise ValueError("augmentation policies run on uint8 images")
    op, mag = draw(len(x), g)
    out = x.clone()
    for k, name in enumerate(OPS):
        idx = (op == k).nonzero().flatten()
        if len(idx) and name != "Identity":
            out[idx] = apply_op(x[idx], name, mag[idx])
    return out


def apply_op(x: torch.Tensor, name: str, mag: torch.Tensor) -> torch.Tensor:
    """One op of OPS on a uint8 batch, magnitude ``mag[i]`` (float64) for image i."""
    if name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
        return _affine(x, [_inverse_matrix(name, float(m), x.shape[-1], x.shape[-2]) for m in mag])
    factor = (1.0 + mag).view(-1, 1, 1, 1)  # v2: 1.0 + magnitude, in double, cast by each float32 op
    if name == "Brightness":
        return x.mul(factor.float()).clamp_(0, 255).to(torch.uint8)
    if name == "Color":
        if x.shape[1] == 1:
            return x
        gray = _rgb_to_grayscale_image(x, num_output_channels=1, preserve_dtype=False).floor_()
        return _blend(x, gray, factor)
    if name == "Contrast":
        gray = _rgb_to_grayscale_image(x, num_output_channels=1, preserve_dtype=False) if x.shape[1] == 3 \
            else x.to(torch.float32)
        return _blend(x, gray.floor_().mean(dim=(-3, -2, -1), keepdim=True), factor)
    if name == "Sharpness":
        return _sharpness(x, factor)
    if name == "Posterize":
        bits = mag.to(torch.int64)
        mask = (((1 << bits) - 1) << (8 - bits)).to(torch.uint8).view(-1, 1, 1, 1)
        return x & mask
    if name == "Solarize":
        # v2 compares uint8 with a Python float threshold: in float32
        return torch.where(x >= (255.0 * mag).float().view(-1, 1, 1, 1), 255 - x, x)
    if name == "AutoContrast":
        return TF.autocontrast(x)  # already per image and channel
    if name == "Equalize":
        return TF.equalize(x)  # per image and channel
    raise ValueError(f"unknown op {name!r}")


def _inverse_matrix(name: str, m: float, w: int, h: int) -> list[float]:
    """The inverse affine matrix v2 builds for this op (its own helper, with the same arguments)."""
    if name == "Rotate":
        return _get_inverse_affine_matrix([0.0, 0.0], -m, [0.0, 0.0], 1.0, [0.0, 0.0])
    corner = [-w * 0.5, -h * 0.5]  # v2 shears about center=[0, 0], the top-left pixel corner
    if name == "ShearX":
        return _get_inverse_affine_matrix(corner, 0.0, [0.0, 0.0], 1.0, [math.degrees(math.atan(m)), 0.0])
    if name == "ShearY":
        return _get_inverse_affine_matrix(corner, 0.0, [0.0, 0.0], 1.0, [0.0, math.degrees(math.atan(m))])
    shift = [float(int(m)), 0.0] if name == "TranslateX" else [0.0, float(int(m))]
    return _get_inverse_affine_matrix([0.0, 0.0], 0.0, shift, 1.0, [0.0, 0.0])


def _affine(x: torch.Tensor, matrices: list[list[float]]) -> torch.Tensor:
    """v2's affine_image (nearest, zero fill) with one matrix per image: its grid, batched."""
    n, _, h, w = x.shape
    theta = torch.tensor(matrices, dtype=torch.float32).view(n, 2, 3)
    base = torch.empty(1, h, w, 3)
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w))
    base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h).unsqueeze_(-1))
    base[..., 2].fill_(1)
    scaled = theta.transpose(1, 2).div_(torch.tensor([0.5 * w, 0.5 * h]))
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(scaled).view(n, h, w, 2)
    out = F.grid_sample(x.to(torch.float32), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.round_().to(torch.uint8)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """v2's _blend with a per-image ratio: x * r + other * (1 - r), clamped, truncated to uint8."""
    return x.mul(factor.float()).addcmul_(other, (1.0 - factor).float()).clamp_(0, 255).to(torch.uint8)


def _sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """v2's adjust_sharpness_image with a per-image factor: blend with a smoothed copy, borders kept."""
    c, h, w = x.shape[-3:]
    if h <= 2 or w <= 2:
        return x
    a, b = 1.0 / 13.0, 5.0 / 13.0
    kernel = torch.tensor([[a, a, a], [a, b, a], [a, a, a]]).expand(c, 1, 3, 3)
    out = x.to(torch.float32)
    blurred = F.conv2d(out, kernel, groups=c).round_()
    view = out[..., 1:-1, 1:-1]
    view.addcmul_(blurred.sub_(view), (1.0 - factor).float())
    return out.clamp_(0, 255).to(torch.uint8)
