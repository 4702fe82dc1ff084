"""Grad-CAM++ and Score-CAM against their formulas computed by hand on a tiny model; SmoothGrad and
integrated gradients (Captum) against their defining properties."""

from __future__ import annotations

import torch
from torch import nn

from cnntool.viz.cam import GradCAMPlusPlus, ScoreCAM


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 6 * 6, 3)).eval()


def test_gradcampp_matches_hand_formula():
    net, x = _net(), torch.randn(2, 1, 6, 6)
    res = GradCAMPlusPlus(net, "3")(x)
    acts = net[:4](x).detach().requires_grad_(True)
    logits = net[4:](acts)
    tgt = logits.argmax(1)
    g = torch.autograd.grad(logits.gather(1, tgt[:, None]).sum(), acts)[0]
    a = acts.detach()
    alpha = g ** 2 / (2 * g ** 2 + a.sum((2, 3), keepdim=True) * g ** 3)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    w = (alpha * g.clamp(min=0)).sum((2, 3))
    expected = torch.einsum("nk,nkhw->nhw", w, a).clamp(min=0)
    torch.testing.assert_close(res.raw, expected)


def test_scorecam_weights_are_masked_softmax_scores():
    net, x = _net(), torch.randn(1, 1, 6, 6)
    res = ScoreCAM(net, "1")(x)
    a = net[:2](x).detach()
    tgt = int(res.targets[0])
    w = []
    for k in range(a.shape[1]):
        m = a[0, k]
        m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else torch.zeros_like(m)
        w.append(net(x * m).softmax(1)[0, tgt])
    expected = torch.einsum("k,khw->hw", torch.stack(w), a[0]).clamp(min=0)
    torch.testing.assert_close(res.raw[0], expected.detach())


def test_smoothgrad_without_noise_is_the_gradient_and_ig_is_complete():
    import captum  # noqa: F401 - [dev] installs it: missing fails, never skips
    from cnntool.viz.saliency import IntegratedGradients, SmoothGrad, vanilla_gradient

    net, x = _net(), torch.randn(2, 1, 6, 6)
    grad, _, tgt = vanilla_gradient(net, x)
    sg, _, tgt2 = SmoothGrad(samples=3, noise=0.0)(net, x)
    assert torch.equal(tgt, tgt2)
    torch.testing.assert_close(sg, grad)
    ig, logits, tgt = IntegratedGradients(steps=256)(net, x)
    with torch.no_grad():
        base = net(torch.zeros_like(x)).gather(1, tgt[:, None])[:, 0]
    gain = logits.gather(1, tgt[:, None])[:, 0] - base
    torch.testing.assert_close(ig.sum((1, 2, 3)), gain, rtol=2e-2, atol=2e-2)  # completeness
