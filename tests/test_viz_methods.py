"""CAM, Grad-CAM, guided backprop and vanilla gradients on hand-built models whose answer is known."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cnntool.errors import ConfigError, ModelError
from cnntool.viz.cam import CAM, GradCAM, find_target_layer
from cnntool.viz.saliency import GuidedReLU, guided_backprop, vanilla_gradient


class LeftHalf(nn.Module):
    """Zeroes the right half of a feature map: the model cannot see it."""

    def forward(self, x):
        mask = torch.zeros_like(x)
        mask[..., : x.shape[-1] // 2] = 1
        return x * mask


def left_model(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), LeftHalf(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes))


def gap_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(5, 4))


# --------------------------------------------------------------------------- CAM

def test_cam_is_class_weighted_sum_of_last_feature_maps():
    model = gap_model()
    x = torch.randn(2, 3, 8, 8)
    feats = model[:4](x).detach()  # the maps entering the global average pooling
    targets = [1, 3]
    res = CAM(model)(x, targets)
    W = model[-1].weight.detach()
    expected = torch.stack([(W[t][:, None, None] * feats[i]).sum(0) for i, t in enumerate(targets)])
    torch.testing.assert_close(res.raw, expected)
    assert res.heatmaps.shape == (2, 8, 8)
    assert float(res.heatmaps.min()) == 0.0 and float(res.heatmaps.max()) == pytest.approx(1.0)
    assert model.training  # the user's model is untouched (the method works on a copy)


def test_cam_defaults_to_predicted_class_and_handles_nin_style_heads():
    torch.manual_seed(2)
    nin = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.randn(2, 1, 6, 6)
    res = CAM(nin)(x)
    feats = nin[:2](x).detach()
    assert res.targets.tolist() == nin(x).argmax(1).tolist()
    torch.testing.assert_close(res.raw, feats[torch.arange(2), res.targets])


def test_cam_refuses_models_without_gap_linear_head():
    torch.manual_seed(0)
    two_dense = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
    with pytest.raises(ModelError, match="Grad-CAM"):
        CAM(two_dense)(torch.randn(1, 1, 6, 6))
    no_gap = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(32, 3))
    with pytest.raises(ModelError, match="global average pooling"):
        CAM(no_gap)
    with pytest.raises(ConfigError):
        CAM(gap_model(), layer="0")


# --------------------------------------------------------------------------- Grad-CAM

def test_gradcam_target_layer_found_automatically():
    model = left_model()
    assert find_target_layer(model, torch.zeros(1, 1, 8, 8)) == "2"  # LeftHalf: last map larger than 1×1
    torch.manual_seed(0)
    small = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, stride=4),
                          nn.Flatten(), nn.Linear(2, 2))
    assert find_target_layer(small, torch.zeros(1, 1, 8, 8)) == "1"  # the 1×1 conv output is skipped


def test_gradcam_puts_everything_in_the_left_half():
    model = left_model()
    x = torch.rand(4, 1, 8, 8) + 0.1
    res = GradCAM(model)(x)
    assert res.layer == "2"
    assert float(res.raw[..., 4:].abs().max()) == 0.0
    assert float(res.heatmaps[..., 5:].max()) < 1e-6  # bilinear upsampling blurs one column at the border
    assert float(res.heatmaps[..., :3].max()) > 0.0


def test_gradcam_equals_cam_for_gap_linear_models():
    """For GAP + linear the Grad-CAM weights are the classifier weights / (h·w): same map up to scaling."""
    model = gap_model()
    x = torch.randn(3, 3, 8, 8)
    cam = CAM(model)(x)
    grad = GradCAM(model, layer="3")(x, cam.targets)
    torch.testing.assert_close(grad.raw, cam.raw.clamp(min=0) / 64, atol=1e-6, rtol=1e-4)


def test_gradcam_bad_layer_names_the_layer():
    with pytest.raises(ConfigError, match="nolayer"):  # a bad option value: exit 2
        GradCAM(left_model(), layer="nolayer")(torch.rand(1, 1, 8, 8))


# --------------------------------------------------------------------------- guided backprop

def test_guided_backprop_only_left_half():
    model = left_model()
    x = torch.rand(3, 1, 8, 8) + 0.1
    g, logits, tgt = guided_backprop(model, x)
    assert g.shape == x.shape
    assert float(g[..., 5:].abs().max()) == 0.0  # the 3×3 conv reaches one column past the mask
    assert float(g[..., :4].abs().max()) > 0.0
    v, _, _ = vanilla_gradient(model, x, tgt)
    assert float(v[..., 5:].abs().max()) == 0.0


class Reused(nn.Module):
    """One in-place ReLU module used twice, plus functional and method relus."""

    def __init__(self, style: str):
        super().__init__()
        self.style = style
        self.relu = nn.ReLU(inplace=True)
        self.w = nn.Parameter(torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 2.0], [0.5, 0.5, -1.0]]))
        self.v = nn.Parameter(torch.tensor([[1.0, -1.0, 2.0]]))

    def act(self, x):
        if self.style == "module":
            return self.relu(x)
        if self.style == "functional":
            return F.relu(x, inplace=True)
        return x.relu()

    def forward(self, x):
        h = self.act(x.flatten(1) * 1.0)  # not a view of the leaf input (in-place relu)
        h = self.act(h @ self.w.T)
        return h @ self.v.T


def guided_by_hand(x, w, v):
    z1 = x.flatten(1)
    z2 = z1.clamp(min=0) @ w.T
    d_a2 = v.expand_as(z2)
    d_z2 = d_a2.clamp(min=0) * (z2 > 0)
    d_a1 = d_z2 @ w
    return (d_a1.clamp(min=0) * (z1 > 0)).view_as(x)


@pytest.mark.parametrize("style", ["module", "functional", "method"])
def test_guided_backprop_inplace_reused_and_functional_relus(style):
    model = Reused(style)
    x = torch.tensor([[[[0.5, -0.3, 1.0]]], [[[1.0, 1.0, 1.0]]]])
    g, _, _ = guided_backprop(model, x, targets=[0, 0])
    torch.testing.assert_close(g, guided_by_hand(x, model.w.detach(), model.v.detach()))
    assert (g >= 0).all()
    v, _, _ = vanilla_gradient(model, x, targets=[0, 0])
    xr = x.clone().requires_grad_(True)
    Reused(style)(xr).sum().backward()
    torch.testing.assert_close(v, xr.grad)
    assert not torch.equal(g, v)  # some negative signal was really blocked
    assert model.relu.inplace  # the user's model is untouched


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=6, max_size=6), st.lists(st.floats(-5, 5), min_size=6, max_size=6))
def test_guided_relu_passes_no_negative_gradient(xs, gs):
    x = torch.tensor(xs, requires_grad=True)
    y = GuidedReLU.apply(x)
    assert torch.equal(y, x.detach().clamp(min=0))
    (gx,) = torch.autograd.grad(y, x, torch.tensor(gs))
    assert (gx >= 0).all()
    g32 = torch.tensor(gs)
    expected = torch.where((g32 > 0) & (x.detach() > 0), g32, torch.zeros_like(g32))
    torch.testing.assert_close(gx, expected)
