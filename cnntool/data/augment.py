"""Augmentations applied to whole batches (N, C, H, W), as airbench does.

One call per batch instead of one PIL transform per sample is what keeps the data path off the
critical path on a small CPU. Crop and flip run on the uint8 batch (a quarter of the memory
traffic); the other ops on floats in [0, 1]. Every op takes an explicit torch.Generator so runs
are reproducible.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

OPS = ("policy", "crop_pad", "hflip", "rotate", "rrc", "color_jitter", "blur", "noise", "cutout", "random_erasing")


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g).to(device) * (hi - lo) + lo


def random_crop(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``pad`` and take a random crop of the original size (torchvision RandomCrop(padding=pad))."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
    # Two gathers (rows, then columns) with broadcast indices: no per-element index tensors.
    rows = (dy[:, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
    x = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    return x.gather(3, cols)


def hflip(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    mask = (torch.rand(x.shape[0], generator=g) < p).to(x.device)
    x = x.clone()
    x[mask] = x[mask].flip(3)
    return x


def affine(x: torch.Tensor, g: torch.Generator, rotate: float = 0.0, rrc: float = 0.0) -> torch.Tensor:
    """Random rotation (degrees) and random resized crop (smallest area fraction ``rrc``) in one resample."""
    n = x.shape[0]
    dev = x.device
    angle = _uniform(n, -rotate, rotate, g, dev) * (math.pi / 180.0) if rotate else torch.zeros(n, device=dev)
    if rrc:
        area = _uniform(n, rrc, 1.0, g, dev)
        log_ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), g, dev)
        ratio = torch.exp(log_ratio)
        sw = torch.sqrt(area * ratio).clamp(max=1.0)
        sh = torch.sqrt(area / ratio).clamp(max=1.0)
        tx = (_uniform(n, -1.0, 1.0, g, dev)) * (1 - sw)
        ty = (_uniform(n, -1.0, 1.0, g, dev)) * (1 - sh)
    else:
        sw = sh = torch.ones(n, device=dev)
        tx = ty = torch.zeros(n, device=dev)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([sw * cos, -sh * sin, tx], 1),
        torch.stack([sw * sin, sh * cos, ty], 1),
    ], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def color_jitter(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and (RGB) saturation, each a factor in [1 - s, 1 + s]."""
    n = x.shape[0]
    dev = x.device
    lo = max(0.0, 1 - strength)

    def factor():
        return _uniform(n, lo, 1 + strength, g, dev)[:, None, None, None]

    x = x * factor()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    if x.shape[1] == 3:
        gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        x = (x - gray) * factor() + gray
    return x.clamp(0.0, 1.0)


def gaussian_blur(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """With probability p per image, a Gaussian blur (sigma in [0.1, 2], one sigma per batch)."""
    mask = (torch.rand(x.shape[0], generator=g) < p).to(x.device)
    if not bool(mask.any()):
        return x
    sigma = float(_uniform(1, 0.1, 2.0, g, "cpu"))
    radius = max(1, min(int(3 * sigma + 0.5), (min(x.shape[-2:]) - 1) // 2 or 1))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    blurred = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                       groups=c)
    blurred = F.conv2d(F.pad(blurred, (0, 0, radius, radius), mode="replicate"),
                       k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return torch.where(mask[:, None, None, None], blurred, x)


def salt_and_pepper(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Each pixel becomes black or white with probability p (the same for all its channels)."""
    n, _, h, w = x.shape
    u = torch.rand(n, 1, h, w, generator=g).to(x.device)
    x = torch.where(u < p / 2, torch.zeros_like(x), x)
    return torch.where((u >= p / 2) & (u < p), torch.ones_like(x), x)


def cutout(x: torch.Tensor, size: int, g: torch.Generator, fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Blank one size×size square per image (centre uniform over the image, clipped at borders)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=g).to(x.device)[:, None, None]
    cx = torch.randint(0, w, (n,), generator=g).to(x.device)[:, None, None]
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    half = size // 2
    box = (ys >= cy - half) & (ys < cy - half + size) & (xs >= cx - half) & (xs < cx - half + size)
    return torch.where(box[:, None], torch.as_tensor(fill, dtype=x.dtype, device=x.device), x)


def random_erasing(x: torch.Tensor, p: float, g: torch.Generator, fill: float = 0.5) -> torch.Tensor:
    """With probability p per image, erase one rectangle (area 2..33 %, aspect 0.3..3.3, as torchvision's
    RandomErasing) — all images in one masked op; a rectangle that would not fit is clipped at the border."""
    n, _, h, w = x.shape
    dev = x.device
    hit = (torch.rand(n, generator=g) < p).to(dev)
    area = _uniform(n, 0.02, 0.33, g, dev) * (h * w)
    ratio = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), g, dev))
    eh = torch.sqrt(area * ratio).round().clamp(1, h)
    ew = torch.sqrt(area / ratio).round().clamp(1, w)
    top = (torch.rand(n, generator=g).to(dev) * (h - eh + 1)).floor()
    left = (torch.rand(n, generator=g).to(dev) * (w - ew + 1)).floor()
    ys = torch.arange(h, device=dev)[None, :, None]
    xs = torch.arange(w, device=dev)[None, None, :]
    box = ((ys >= top[:, None, None]) & (ys < (top + eh)[:, None, None])
           & (xs >= left[:, None, None]) & (xs < (left + ew)[:, None, None]) & hit[:, None, None])
    return torch.where(box[:, None], torch.as_tensor(fill, dtype=x.dtype, device=dev), x)


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """Test-time views of a batch (cnntool.config.TTA_MODES): ``flip`` = the batch and its mirror image;
    ``flip-crop`` = those two, each also shifted to the four corners of a zero-padded copy (pad = side/16)."""
    if mode == "none":
        return [x]
    views = [x, x.flip(3)]
    if mode == "flip-crop":
        h, w = x.shape[-2:]
        d = max(1, min(h, w) // 16)
        for base in (x, x.flip(3)):
            padded = F.pad(base, (d, d, d, d))
            views += [padded[..., dy:dy + h, dx:dx + w] for dy in (0, 2 * d) for dx in (0, 2 * d)]
    return views


def policy_transform(name: str):
    """The torchvision transforms.v2 policy of ``name`` (cnntool.config.AUGMENT_POLICIES)."""
    from torchvision.transforms import v2

    return {"trivialaugment": v2.TrivialAugmentWide, "randaugment": v2.RandAugment,
            "autoaugment": v2.AutoAugment, "augmix": v2.AugMix}[name]()


_POLICIES: dict[str, Any] = {}


def apply_policy(x: torch.Tensor, name: str, g: torch.Generator) -> torch.Tensor:
    """One independent draw of the policy per image (v2 samples one op per call, so a whole-batch call would
    give every image the same op): TrivialAugmentWide in batched kernels (cnntool.data.trivialaugment), the
    others image by image. Those draw from torchvision's global RNG: it is forked and seeded from ``g``, so the
    result depends only on the seed, and the caller's global RNG is untouched."""
    if x.dtype != torch.uint8:
        raise ValueError("augmentation policies run on uint8 images")
    if name == "trivialaugment":  # one op per image either way: this one runs whole batches
        from cnntool.data.trivialaugment import trivial_augment

        return trivial_augment(x, g)
    tf = _POLICIES.get(name) or _POLICIES.setdefault(name, policy_transform(name))
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    gray = x.shape[1] == 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            img = x[i].expand(3, -1, -1) if gray else x[i]  # the policies' colour ops expect RGB
            res = tf(img)
            out[i] = res[:1] if gray else res
    return out


FLOAT_OPS = ("rotate", "rrc", "color_jitter", "blur", "noise", "cutout", "random_erasing")


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def apply(x: torch.Tensor, ops: dict[str, Any], g: torch.Generator) -> torch.Tensor:
    """Apply the configured ops in a fixed order: policy, crop, flip, affine, colour, blur, noise, cutout,
    random erasing.

    ``x`` is uint8 (0..255) or float (0..1); the result is uint8 only if no float op ran.
    """
    if ops.get("policy"):
        x = apply_policy(x, str(ops["policy"]), g)
    if ops.get("crop_pad"):
        x = random_crop(x, int(ops["crop_pad"]), g)
    if ops.get("hflip"):
        x = hflip(x, g)
    if any(ops.get(k) for k in FLOAT_OPS):
        x = to_unit_float(x)
    if ops.get("rotate") or ops.get("rrc"):
        x = affine(x, g, rotate=float(ops.get("rotate", 0.0)), rrc=float(ops.get("rrc", 0.0)))
    if ops.get("color_jitter"):
        x = color_jitter(x, float(ops["color_jitter"]), g)
    if ops.get("blur"):
        x = gaussian_blur(x, float(ops["blur"]), g)
    if ops.get("noise"):
        x = salt_and_pepper(x, float(ops["noise"]), g)
    if ops.get("cutout"):
        x = cutout(x, int(ops["cutout"]), g, fill=0.5)
    if ops.get("random_erasing"):
        x = random_erasing(x, float(ops["random_erasing"]), g)
    return x
