"""cnntool.conv.conv2d / filter2d against torch: values, gradients (autograd and gradcheck), argument errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnntool.conv as cc
from cnntool.errors import ConfigError, ModelError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin_g = draw(st.integers(1, 4))
    cout_g = draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if draw(st.booleans()) and sh == sw == 1:
        padding = draw(st.sampled_from(["same", "valid"]))
        same = padding == "same"
        pad_h = dh * (kh - 1) if same else 0
        pad_w = dw * (kw - 1) if same else 0
    else:
        ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        padding = (ph, pw) if draw(st.booleans()) else ph
        pad_h, pad_w = (2 * ph, 2 * pw) if isinstance(padding, tuple) else (2 * ph, 2 * ph)
    # the input must hold at least one dilated kernel
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - pad_h), 14))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - pad_w), 14))
    n = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    return dict(x=(n, cin_g * groups, h, w), w=(cout_g * groups, cin_g, kh, kw), stride=(sh, sw),
                padding=padding, dilation=(dh, dw), groups=groups, bias=bias)


def _inputs(cfg, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(cfg["x"], generator=g, dtype=torch.float64).to(dtype)
    w = torch.randn(cfg["w"], generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(cfg["w"][0], generator=g, dtype=torch.float64).to(dtype) if cfg["bias"] else None
    return x, w, b


def _args(cfg):
    return cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@SETTINGS
@given(cfg=conv_configs(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_forward_and_gradients_match_torch(cfg, dtype):
    x, w, b = _inputs(cfg, dtype)
    leaves = [t.clone().requires_grad_(True) for t in (x, w) + ((b,) if b is not None else ())]
    refs = [t.double().detach().requires_grad_(True) for t in leaves]
    y = cc.conv2d(leaves[0], leaves[1], leaves[2] if b is not None else None, *_args(cfg))
    r = F.conv2d(refs[0], refs[1], refs[2] if b is not None else None, *_args(cfg))
    assert y.shape == r.shape and y.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-11
    scale = 1 + r.abs().max().item()
    torch.testing.assert_close(y.double(), r, rtol=0, atol=tol * scale)
    gy = torch.randn(r.shape, dtype=torch.float64)
    got = torch.autograd.grad(y, leaves, gy.to(dtype))
    want = torch.autograd.grad(r, refs, gy)
    for name, a, e in zip(("input", "weight", "bias"), got, want):
        assert a.shape == e.shape and a.dtype == dtype, name
        torch.testing.assert_close(a.double(), e, rtol=0, atol=tol * (1 + e.abs().max().item()), msg=name)


def test_gradcheck_float64_full_jacobian_small():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: cc.conv2d(x, w, b, stride=(2, 1), padding=1, groups=2), (x, w, b))


@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(1, 2), padding=(2, 0), dilation=(2, 1)),
    dict(padding="same", dilation=2),
    dict(groups=2, stride=3, padding=1),
])
def test_gradcheck_float64(kw):
    torch.manual_seed(0)
    groups = kw.get("groups", 1)
    x = torch.randn(2, 2 * groups, 7, 6, dtype=torch.float64, requires_grad=True)
    # fast_mode: gradcheck along random directions (few evaluations) instead of the full numerical Jacobian
    w = torch.randn(3 * groups, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3 * groups, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: cc.conv2d(x, w, b, **kw), (x, w, b), fast_mode=True)


def test_coursework_size_channels_128_to_243():
    x = torch.randn(1, 128, 12, 12)
    w = torch.randn(243, 128, 3, 3) / 30
    torch.testing.assert_close(cc.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1), rtol=1e-4, atol=1e-4)


def test_unbatched_input_like_torch():
    x, w = torch.randn(3, 8, 8), torch.randn(4, 3, 3, 3)
    torch.testing.assert_close(cc.conv2d(x, w), F.conv2d(x, w), rtol=1e-5, atol=1e-5)


def test_nan_propagates():
    x = torch.randn(1, 2, 6, 6)
    x[0, 0, 2, 2] = float("nan")
    y = cc.conv2d(x, torch.randn(3, 2, 3, 3))
    assert torch.isnan(y[0, :, 0:3, 0:3]).all() and torch.isfinite(y[0, :, 3:, 3:]).all()


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("size", range(1, 7))
def test_filter2d_blur_matches_depthwise_conv(size):
    x = torch.randn(2, 5, 11, 9, dtype=torch.float64)
    k = cc.blur_kernel(size, dtype=torch.float64)
    want = F.conv2d(x, k.expand(5, 1, size, size), padding="same", groups=5)
    torch.testing.assert_close(cc.filter2d(x, k, padding="same"), want)


def test_filter2d_gradients_and_stride():
    x = torch.randn(1, 3, 10, 10, dtype=torch.float64, requires_grad=True)
    k = cc.gaussian_kernel(5, 1.2, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, k: cc.filter2d(x, k, stride=2, padding=2), (x, k), fast_mode=True)


def test_kernel_helpers():
    assert torch.allclose(cc.blur_kernel(3).sum(), torch.tensor(1.0))
    g = cc.gaussian_kernel(5, 1.0)
    assert g.shape == (5, 5) and torch.allclose(g.sum(), torch.tensor(1.0))
    assert torch.equal(g, g.T) and torch.equal(g, g.flip(0)) and g[2, 2] == g.max()
    with pytest.raises(ConfigError, match="0"):
        cc.blur_kernel(0)
    with pytest.raises(ConfigError, match="-1"):
        cc.gaussian_kernel(3, -1.0)


@pytest.mark.parametrize("call, err, text", [
    (lambda: cc.conv2d(torch.randn(1, 4, 8), torch.randn(2, 4, 3, 3)), ModelError, "3-D|4-D|shape"),
    (lambda: cc.conv2d(torch.randn(1, 4, 8, 8), torch.randn(2, 3, 3, 3)), ModelError, "4 channels"),
    (lambda: cc.conv2d(torch.randn(1, 4, 8, 8), torch.randn(3, 2, 3, 3), groups=2), ModelError, "groups=2"),
    (lambda: cc.conv2d(torch.randn(1, 4, 8, 8), torch.randn(2, 4, 3, 3), padding="full"), ConfigError, "'full'"),
    (lambda: cc.conv2d(torch.randn(1, 4, 8, 8), torch.randn(2, 4, 3, 3), padding="same", stride=2), ConfigError,
     "strided"),
    (lambda: cc.conv2d(torch.randn(1, 4, 8, 8), torch.randn(2, 4, 3, 3), stride=0), ConfigError, "stride"),
    (lambda: cc.conv2d(torch.randn(1, 4, 8, 8), torch.randn(2, 4, 3, 3), padding=-1), ConfigError, "-1"),
    (lambda: cc.conv2d(torch.randn(1, 4, 2, 2), torch.randn(2, 4, 3, 3)), ModelError, "2x2"),
    (lambda: cc.conv2d(torch.randn(1, 4, 8, 8), torch.randn(2, 4, 3, 3, dtype=torch.float64)), ModelError,
     "float64"),
    (lambda: cc.conv2d(torch.randn(1, 4, 8, 8).half(), torch.randn(2, 4, 3, 3).half()), ModelError, "float16"),
    (lambda: cc.conv2d(torch.randn(1, 4, 8, 8), torch.randn(2, 4, 3, 3), torch.randn(3)), ModelError, "bias"),
    (lambda: cc.conv2d(torch.randn(1, 4, 8, 8), torch.randn(2, 4, 3, 3), groups=0), ConfigError, "groups"),
    (lambda: cc.filter2d(torch.randn(1, 4, 8, 8), torch.randn(3)), ModelError, "2-D"),
])
def test_bad_arguments_raise_named_errors(call, err, text):
    with pytest.raises(err, match=text):
        call()
