"""The batched TrivialAugmentWide against torchvision's own, op by op, and as a policy."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode

from cnntool.data.augment import apply_policy
from cnntool.data.trivialaugment import OPS, SPACE, apply_op, draw, trivial_augment


def _magnitudes(name: str, n: int, g: torch.Generator) -> torch.Tensor:
    values, signed = SPACE[name]
    if values is None:
        return torch.zeros(n, dtype=torch.float64)
    m = values[torch.randint(len(values), (n,), generator=g)].double()
    return torch.where(torch.rand(n, generator=g) < 0.5, -m, m) if signed else m


def test_the_op_space_is_torchvisions():
    theirs = v2.TrivialAugmentWide._AUGMENTATION_SPACE
    assert tuple(theirs) == OPS
    for name, (fn, signed) in theirs.items():
        values = fn(31, 32, 32)
        assert SPACE[name][1] == signed
        assert (values is None) == (SPACE[name][0] is None)
        if values is not None:
            assert torch.equal(values, SPACE[name][0]), name


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("name", OPS)
def test_each_op_equals_torchvision_per_image(name, channels):
    g = torch.Generator().manual_seed(OPS.index(name) + 7 * channels)
    x = torch.randint(0, 256, (16, channels, 21, 19), dtype=torch.uint8, generator=g)
    x[0] = 37  # a flat image: autocontrast/equalize's degenerate case
    mag = _magnitudes(name, len(x), g)
    ref = v2.TrivialAugmentWide()
    want = torch.stack([ref._apply_image_or_video_transform(x[i], name, float(mag[i]), InterpolationMode.NEAREST,
                                                            ref._fill) for i in range(len(x))])
    got = x if name == "Identity" else apply_op(x, name, mag)
    assert got.dtype == torch.uint8 and got.shape == x.shape
    assert torch.equal(got, want), f"{name}: {(got != want).sum()} pixels differ"


def test_policy_draws_per_image_and_follows_the_seed():
    x = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a = trivial_augment(x, torch.Generator().manual_seed(5))
    b = trivial_augment(x, torch.Generator().manual_seed(5))
    c = trivial_augment(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    op, mag = draw(64, torch.Generator().manual_seed(5))
    assert len(set(op.tolist())) > 8  # the images of one batch get different ops ...
    changed = (a != x).flatten(1).any(1)
    identity = op == OPS.index("Identity")
    assert not changed[identity].any() and changed[~identity].float().mean() > 0.7  # ... and they change pixels
    # the same draws applied image by image through torchvision give the same batch
    ref = v2.TrivialAugmentWide()
    want = torch.stack([ref._apply_image_or_video_transform(x[i], OPS[int(op[i])], float(mag[i]),
                                                            InterpolationMode.NEAREST, ref._fill) for i in range(64)])
    assert torch.equal(a, want)


def test_apply_policy_uses_the_batched_kernels_for_gray_images_too():
    x = torch.randint(0, 256, (32, 1, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = apply_policy(x, "trivialaugment", torch.Generator().manual_seed(3))
    assert out.shape == x.shape and out.dtype == torch.uint8 and not torch.equal(out, x)
    assert torch.equal(out, trivial_augment(x, torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="uint8"):
        trivial_augment(x.float(), torch.Generator())
