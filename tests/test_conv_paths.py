"""The special paths of cnntool.conv against torch (float64 reference): 1x1 (pointwise) convolutions, depthwise
convolutions (the fused-padding 3x3 and 5x5 forward, the one-pass kernels on small maps), and the batch folded into
one tall image for small maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import cnntool.conv as cc
from cnntool.conv import _kernels, _nhwc
from cnntool.conv import channels_last as CL
from cnntool.conv import kernels as K
from cnntool.conv.function import make_geometry


def _check(xshape, wshape, dtype=torch.float32, bias=True, **kw):
    g = torch.Generator().manual_seed(sum(xshape) + sum(wshape))
    x = torch.randn(xshape, generator=g, dtype=torch.float64)
    w = torch.randn(wshape, generator=g, dtype=torch.float64) / (wshape[1] * wshape[2] * wshape[3]) ** 0.5
    b = torch.randn(wshape[0], generator=g, dtype=torch.float64) if bias else None
    leaves = [t.to(dtype).requires_grad_(True) for t in (x, w) + ((b,) if bias else ())]
    refs = [t.clone().requires_grad_(True) for t in (x, w) + ((b,) if bias else ())]
    y = cc.conv2d(leaves[0], leaves[1], leaves[2] if bias else None, **kw)
    r = F.conv2d(refs[0], refs[1], refs[2] if bias else None, **kw)
    tol = 2e-5 if dtype == torch.float32 else 1e-12
    assert y.shape == r.shape and y.dtype == dtype
    torch.testing.assert_close(y.double(), r, rtol=0, atol=tol * (1 + r.abs().max().item()))
    gy = torch.randn(r.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad(y, leaves, gy.to(dtype))
    want = torch.autograd.grad(r, refs, gy)
    for name, a, e in zip(("input", "weight", "bias"), got, want):
        torch.testing.assert_close(a.double(), e, rtol=0, atol=tol * 10 * (1 + e.abs().max().item()), msg=name)


POINTWISE = [
    dict(),
    dict(stride=2),
    dict(stride=(2, 3)),
    dict(padding=1),
    dict(padding=(0, 2), stride=2),
    dict(dilation=2, padding=1),
    dict(groups=2),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kw", POINTWISE)
@pytest.mark.parametrize("n, size", [(3, (7, 5)), (1, (13, 11)), (2, (33, 35))])
def test_pointwise_1x1(kw, n, size, dtype):
    groups = kw.get("groups", 1)
    _check((n, 6 * groups, *size), (10 * groups, 6, 1, 1), dtype, **kw)


DEPTHWISE = [
    dict(k=3, padding=1),
    dict(k=3, padding=1, stride=2),
    dict(k=3, padding=2, dilation=2),
    dict(k=5, padding=2),
    dict(k=5, padding=2, stride=2),
    dict(k=5, padding=(1, 3), stride=(1, 2), dilation=(1, 2)),
    dict(k=3, padding=0),
    dict(k=7, padding=3),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kw", DEPTHWISE)
@pytest.mark.parametrize("n, size, mult", [(4, (9, 7), 1), (1, (15, 17), 1), (2, (34, 33), 2)])
def test_depthwise(kw, n, size, mult, dtype):
    kw = dict(kw)
    k = kw.pop("k")
    c = 5
    _check((n, c, *size), (c * mult, 1, k, k), dtype, bias=n != 1, groups=c, **kw)


FUSED_DEPTHWISE = [
    dict(k=3, padding=1, stride=2),
    dict(k=5, padding=2, dilation=2),
    dict(k=3, padding=(0, 2), stride=(2, 1), dilation=(1, 3)),
    dict(k=5, padding=3, stride=3),  # padding wider than the kernel's half: whole border rows of zeros
]


@pytest.mark.parametrize("kw", FUSED_DEPTHWISE)
@pytest.mark.parametrize("n, size, mult", [(1, (17, 19), 1), (2, (20, 16), 3)])
def test_fused_depthwise_forward_is_taken_and_gradchecks(kw, n, size, mult):
    kw = dict(kw)
    k = kw.pop("k")
    x = torch.randn(n, 3, *size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3 * mult, 1, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3 * mult, dtype=torch.float64, requires_grad=True)
    geo = make_geometry(x, w, b, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1), 3)
    assert K.use_depthwise(geo)
    want = F.conv2d(x, w, b, groups=3, **kw)
    torch.testing.assert_close(cc.conv2d(x, w, b, groups=3, **kw), want, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, w, b: cc.conv2d(x, w, b, groups=3, **kw), (x, w, b), fast_mode=True)


ROW_DEPTHWISE = [
    dict(k=3, padding=1),
    dict(k=5, padding=2),
    dict(k=3, padding=0),
    dict(k=5, padding=(0, 1)),
    dict(k=3, padding=3),  # wider than k - 1: grad-input crops the output gradient (negative padding)
    dict(k=5, padding="same"),
    dict(k=3, padding=1, stride=2),  # stride 2: interleaved column reads; grad-input takes the general path
    dict(k=5, padding=2, stride=2),
    dict(k=3, padding=0, stride=2),
]


@pytest.mark.parametrize("host", ["avx512", "avx2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kw", ROW_DEPTHWISE)
@pytest.mark.parametrize("n, size, mult", [(2, (15, 13), 1), (1, (16, 21), 1), (3, (17, 40), 2)])
def test_depthwise_row_kernels(kw, n, size, mult, dtype, host, monkeypatch):
    """The two-rows-per-pass forward at stride 1 and 2, and at stride 1 its grad-input (flipped kernel,
    complementary padding) for one output channel per input channel; odd row counts exercise the single-row tail.
    On AVX2 float32 at stride 1 the register-tiled kernel instead: 4-row blocks and their 3/2/1-row tails, rows of
    fewer than 16 and of 16*k + a few positions (the masked last vector); either host's kernels on any host."""
    monkeypatch.setattr(K, "AVX512", host == "avx512")
    monkeypatch.setattr(K, "AVX2", host == "avx2")
    tiled = host == "avx2" and dtype == torch.float32
    assert (K._dw_rows_kernel(kw["k"], kw.get("stride", 1), np.float32 if dtype == torch.float32 else np.float64)
            is K._DW_VROWS[kw["k"]]) == (tiled and kw.get("stride", 1) == 1)
    kw = dict(kw)
    k = kw.pop("k")
    x = torch.zeros(n, 4, *size)
    geo = make_geometry(x, torch.zeros(4 * mult, 1, k, k), None, kw.get("stride", 1), kw["padding"], 1, 4)
    assert K.use_depthwise_rows(geo)
    _check((n, 4, *size), (4 * mult, 1, k, k), dtype, bias=mult == 1, groups=4, **kw)


def test_depthwise_rows_only_at_equal_strides_1_2_and_dilation_1():
    def geo(**kw):
        return K.Geometry.make((2, 8, 14, 14), (8, 1, 3, 3), kw.get("s", (1, 1)), (1,) * 4, kw.get("d", (1, 1)), 8)
    assert K.use_depthwise_rows(geo())
    assert K.use_depthwise_rows(geo(s=(2, 2)))
    assert not K.use_depthwise_rows(geo(s=(2, 1)))
    assert not K.use_depthwise_rows(geo(s=(3, 3)))
    assert not K.use_depthwise_rows(geo(d=(1, 2)))
    assert not K.use_depthwise_rows(K.Geometry.make((2, 8, 12, 12), (8, 1, 3, 5), (1, 1), (1,) * 4, (1, 1), 8))


NHWC_DEPTHWISE = [
    dict(k=(3, 3), padding=1),
    dict(k=(3, 3), padding=1, stride=2),
    dict(k=(5, 5), padding=2),
    dict(k=(5, 5), padding=2, stride=2),
    dict(k=(3, 5), padding=(2, 3), stride=(1, 2), dilation=(2, 1)),
    dict(k=(4, 4), padding="same"),  # even kernel: one more padding row/column at the bottom/right
    dict(k=(1, 1)),
    dict(k=(3, 3), padding=(2, 3), dilation=2),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's reference says it copies
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kw", NHWC_DEPTHWISE)
@pytest.mark.parametrize("n, size, c", [(3, (4, 4), 20), (1, (2, 3), 5), (2, (7, 6), 37)])
def test_depthwise_small_maps_channels_last(kw, n, size, c, dtype):
    """Small maps run forward, grad-input (scatter form) and grad-weight in channels-last layout; channel counts
    that are not a multiple of the vector width, and borders wider than the map."""
    kw = dict(kw)
    kh, kwid = kw.pop("k")
    geo = make_geometry(torch.zeros(n, c, *size), torch.zeros(c, 1, kh, kwid), None, kw.get("stride", 1),
                        kw.get("padding", 0), kw.get("dilation", 1), c)
    assert K.use_nhwc_depthwise(geo)
    _check((n, c, *size), (c, 1, kh, kwid), dtype, bias=n != 1, groups=c, **kw)


def test_channels_last_depthwise_gradients_one_at_a_time():
    # grad-input leaves its NHWC output gradient for grad-weight only when a weight gradient is wanted
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 20, 4, 4, generator=g, dtype=torch.float64)
    w = torch.randn(20, 1, 3, 3, generator=g, dtype=torch.float64) / 3
    gy = torch.randn(3, 20, 4, 4, generator=g, dtype=torch.float64)
    for wrt in ("x", "w", "both"):
        xr, wr = x.clone().requires_grad_(wrt != "w"), w.clone().requires_grad_(wrt != "x")
        xf, wf = x.float().requires_grad_(wrt != "w"), w.float().requires_grad_(wrt != "x")
        want = torch.autograd.grad(F.conv2d(xr, wr, padding=1, groups=20), [t for t in (xr, wr) if t.requires_grad], gy)
        y = cc.conv2d(xf, wf, padding=1, groups=20)
        got = torch.autograd.grad(y, [t for t in (xf, wf) if t.requires_grad], gy.float())
        for a, e in zip(got, want):
            torch.testing.assert_close(a.double(), e, rtol=0, atol=1e-5 * (1 + e.abs().max().item()))
        assert y.grad_fn.saved.gyn is None


def test_channels_last_depthwise_only_on_small_maps_with_one_output_per_channel():
    def geo(size, mult=1):
        return K.Geometry.make((2, 8, size, size), (8 * mult, 1, 3, 3), (1, 1), (1,) * 4, (1, 1), 8)
    assert K.use_nhwc_depthwise(geo(8))  # 64 = NHWC_MAX_POSITIONS outputs
    assert not K.use_nhwc_depthwise(geo(9))
    assert not K.use_nhwc_depthwise(geo(4, mult=2))


def test_depthwise_path_choice():
    g = K.Geometry.make((2, 8, 6, 6), (8, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 8)
    assert K.use_depthwise(g)  # 6x6 = DW_MIN_POSITIONS outputs
    assert not K.use_depthwise(K.Geometry.make((2, 8, 5, 5), (8, 1, 3, 3), (1, 1), (1,) * 4, (1, 1), 8))
    assert not K.use_depthwise(K.Geometry.make((2, 8, 9, 9), (8, 1, 4, 4), (1, 1), (0,) * 4, (1, 1), 8))
    assert not K.use_depthwise(K.Geometry.make((2, 8, 9, 9), (8, 2, 3, 3), (1, 1), (0,) * 4, (1, 1), 4))


def test_fused_depthwise_reports_an_in_place_change_of_its_input_like_torch():
    # the fused path keeps the input itself for grad-weight, not a copy
    for conv in (F.conv2d, cc.conv2d):
        x = torch.randn(1, 4, 10, 10, requires_grad=True)
        h = x * 1.0
        y = conv(h, torch.randn(4, 1, 3, 3, requires_grad=True), None, 1, 1, 1, 4)
        h.add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()


@pytest.mark.parametrize("channels_last", [False, True])
def test_tiny_maps_folded_like_resnet_stage4(channels_last, monkeypatch):
    # 2x2 and 1x1 feature maps with many channels: the batch is folded into one tall image (or, float32 on
    # AVX-512, the channels-last GEMM)
    monkeypatch.setattr(CL, "AVX512", channels_last)
    monkeypatch.setattr(CL, "AVX2", channels_last)
    _check((8, 64, 2, 2), (32, 64, 3, 3), padding=1)
    _check((8, 64, 4, 4), (32, 64, 3, 3), padding=1, stride=2)
    _check((5, 16, 1, 1), (8, 16, 1, 1))


def test_fold_decision_and_kernel_choice():
    assert K.fold_batch(32, 8, 10) and not K.fold_batch(1, 8, 10) and not K.fold_batch(4, 62, 64)
    assert K._fwd_kernel(1, 9) is _kernels.fwd_c1k9 and K._fwd_kernel(1, 18) is _kernels.fwd_c1k9
    assert K._fwd_kernel(1, 25) is _kernels.fwd_c1k25 and K._fwd_kernel(1, 7) is _kernels.fwd_c1k8
    assert K._fwd_kernel(8, 9) is _kernels.fwd_c8k4


def test_folded_and_unfolded_forward_agree(monkeypatch):
    x = torch.randn(3, 8, 10, 9)
    w = torch.randn(12, 8, 3, 3)
    folded = cc.conv2d(x, w, padding=1)
    monkeypatch.setattr(K, "fold_batch", lambda *a: False)
    torch.testing.assert_close(cc.conv2d(x, w, padding=1), folded, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n, size, groups", [(3, (16, 16), 1), (2, (17, 19), 2), (4, (20, 13), 1)])
def test_pointwise_reads_in_place_on_mid_size_maps(monkeypatch, n, size, groups):
    # maps too small for a work item of their own (the batch would be folded) but big enough to read in place:
    # no pass may copy the input or the output gradient, and all three gradients still match torch
    g = make_geometry(torch.empty(n, 6 * groups, *size), torch.empty(10 * groups, 6, 1, 1), None, 1, 0, 1, groups)
    assert K.fold_batch(g.N, g.OH, g.OW) and K.pointwise_inplace(g, np.float32)
    assert not K.pointwise_inplace(g, np.float64) and not CL.use_channels_last(g, np.float32)

    def no_copy(*args, **kwargs):
        raise AssertionError("a pointwise pass copied its input or output gradient")

    monkeypatch.setattr(K, "_gather_into", no_copy)
    _check((n, 6 * groups, *size), (10 * groups, 6, 1, 1), torch.float32, groups=groups)


def test_pointwise_in_place_rule():
    def geo(size, k=1, stride=1, pad=0):
        return make_geometry(torch.empty(2, 8, *size), torch.empty(8, 8, k, k), None, stride, pad, 1, 1)

    assert K.pointwise_inplace(geo((16, 16)), np.float32)
    assert not K.pointwise_inplace(geo((15, 16)), np.float32)  # 240 positions: the fold wins there
    assert not K.pointwise_inplace(geo((32, 32), stride=2), np.float32)
    assert not K.pointwise_inplace(geo((16, 16), pad=1), np.float32)
    assert not K.pointwise_inplace(geo((16, 16), k=3, pad=1), np.float32)


IM2COL = [
    dict(padding=1),
    dict(padding=1, stride=2),
    dict(padding=2, dilation=2),
    dict(padding=(1, 2), stride=(2, 1), dilation=(1, 2)),
    dict(padding=1, groups=2),
    dict(padding=3, stride=3),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kw", IM2COL)
@pytest.mark.parametrize("size", [(2, 2), (5, 3), (7, 8)])
def test_im2col_path_for_small_maps(kw, size, dtype):
    # >= 8 channels per group both ways: forward and grad-input gather every tap into rows (im2col)
    groups = kw.get("groups", 1)
    assert K.use_im2col(K.fold_batch(3, size[0], size[1] + 2), 8)
    _check((3, 8 * groups, *size), (8 * groups, 8, 3, 3), dtype, **kw)


def test_im2col_is_skipped_above_the_memory_cap(monkeypatch):
    assert not K.use_im2col(True, 64, K.IM2COL_MAX_BYTES + 1) and K.use_im2col(True, 64, K.IM2COL_MAX_BYTES)
    x = torch.randn(3, 8, 5, 4, dtype=torch.float64)
    w = torch.randn(16, 8, 3, 3, dtype=torch.float64)
    want = cc.conv2d(x, w, padding=1)
    monkeypatch.setattr(K, "IM2COL_MAX_BYTES", 0)  # the folded phase planes instead: same numbers
    torch.testing.assert_close(cc.conv2d(x, w, padding=1), want)
    torch.testing.assert_close(want, F.conv2d(x, w, padding=1))


def _tile_reference(xs, toff, wmat, bias, P):
    """out[co, p] = bias[co] + sum_k wmat[co, k] * xs[toff[k] + p] in float64."""
    cols = np.stack([xs[o:o + P] for o in toff]).astype(np.float64)  # (Kp, P)
    return bias[:, None] + wmat.astype(np.float64) @ cols


TILES = sorted(K._TILED)


@pytest.mark.parametrize("tile", TILES, ids=[f"{c}x{v}" for c, v in TILES])
@pytest.mark.parametrize("P", [5, 16, 40, 48, 97, 130])
@pytest.mark.parametrize("Kp, KB", [(3, 144), (150, 144), (300, 64)])
@pytest.mark.parametrize("cout, cbg", [(8, 1), (15, 1), (40, 2), (40, 8)])
def test_register_tile_kernel_tails_tap_blocks_and_padded_channels(tile, P, Kp, KB, cout, cbg):
    # one row of P positions: whole tiles (16 x vectors wide), then single vectors, the last one masked; taps in
    # blocks of KB; the input ends exactly where the last tap's row ends (a masked load must not read past it); cbg
    # blocks of channels per work item (40 channels in 2 blocks per item: the last item has fewer)
    rng = np.random.default_rng(P * 1000 + Kp + cout)
    toff = np.sort(rng.choice(4 * Kp + 50, size=Kp, replace=False)).astype(np.int64)
    xs = rng.standard_normal((1, int(toff.max()) + P)).astype(np.float32)
    wmat = rng.standard_normal((1, cout, Kp)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    cob = tile[0]
    ncob = -(-cout // cob)
    wp = _kernels.pack_tiles(wmat, np.empty((1, ncob, Kp, cob), np.float32))
    assert np.array_equal(wp.transpose(0, 1, 3, 2).reshape(1, -1, Kp)[:, :cout], wmat)
    assert not wp.transpose(0, 1, 3, 2).reshape(1, -1, Kp)[:, cout:].any()
    out = np.full(cout * P, np.nan, np.float32)
    K._TILED[tile](xs, toff, wp, bias, out, 0, P, 1, P, 1, P, cout, 0, P, P, 1, 0, 1, 1, KB, cbg)
    want = _tile_reference(xs[0], toff, wmat[0], bias.astype(np.float64), P)
    np.testing.assert_allclose(out.reshape(cout, P), want, rtol=0, atol=1e-4 * (1 + np.abs(want).max()))


@pytest.mark.parametrize("n", [1, 16, 17, 128, 512, 4096, 4100])
def test_folded_planes_an_odd_number_of_cache_lines_apart(n):
    stride = K.plane_stride(n)
    assert n <= stride <= n + 32 and stride % 16 == 0 and (stride // 16) % 2 == 1


def test_register_tile_by_host_dtype_and_channels(monkeypatch):
    monkeypatch.setattr(K, "AVX512", True)
    assert K.register_tile(np.float32, 8) == K.register_tile(np.float32, 128) == (8, 3)
    assert K.register_tile(np.float64, 8) is None and K.register_tile(np.float32, 4) is None
    monkeypatch.setattr(K, "AVX512", False)
    monkeypatch.setattr(K, "AVX2", True)
    # 6x1 unless it pads more channels than 4x1's cost: 64 -> 66 (6x1), 16 -> 16 (4x1 rather than 18)
    assert [K.register_tile(np.float32, c) for c in (4, 16, 24, 32, 64, 128)] == \
        [(4, 1), (4, 1), (6, 1), (4, 1), (6, 1), (6, 1)]
    assert K.register_tile(np.float32, 3) is None and K.register_tile(np.float64, 64) is None
    # 6x1 blocks for all but the last 4 or 8 channels where that computes fewer: 128 = 120 + 8, 64 = 60 + 4
    assert [K.channel_split(np.float32, c, 1) for c in (10, 16, 24, 40, 64, 128, 130)] == [6, 0, 0, 36, 60, 120, 126]
    assert K.channel_split(np.float32, 64, 2) == 0 and K.channel_split(np.float64, 64, 1) == 0
    monkeypatch.setattr(K, "AVX2", False)
    assert K.register_tile(np.float32, 64) is None
    assert K.channel_split(np.float32, 64, 1) == 0


@pytest.mark.parametrize("kw, xshape, wshape", [
    (dict(padding=1), (2, 20, 9, 13), (16, 20, 3, 3)),           # K = 180 taps: two tap blocks; wide rows
    (dict(padding=1, stride=2), (3, 17, 11, 7), (24, 17, 3, 3)),  # grad-input per phase through the tile too
    (dict(), (2, 40, 5, 3), (15, 40, 1, 1)),                      # 15 channels: one padded block
    (dict(padding=2, dilation=2, groups=2), (2, 16, 12, 12), (32, 8, 3, 3)),
    (dict(padding=1), (2, 40, 9, 8), (64, 40, 3, 3)),             # AVX2: 60 channels on 6x1, 4 on 4x1 (and 36 + 4)
    (dict(stride=2), (2, 10, 13, 12), (130, 10, 2, 2)),           # 126 + 4; grad-input's 10 = 6 + 4
])
@pytest.mark.parametrize("host", ["avx512", "avx2"])
def test_register_tiled_forward_and_gradients_match_torch(kw, xshape, wshape, host, monkeypatch):
    # either host's tiles on any host (LLVM splits the vectors where needed); AVX2 tiles the grad-weight too;
    # the wide rows, not the channels-last GEMM these small maps would take
    monkeypatch.setattr(K, "AVX512", host == "avx512")
    monkeypatch.setattr(K, "AVX2", host == "avx2")
    cl_host(monkeypatch, "none")
    cout_per_group = wshape[0] // kw.get("groups", 1)
    assert K.register_tile(np.float32, cout_per_group) is not None
    assert (K.grad_weight_tile(np.float32, cout_per_group) is not None) == (host == "avx2")
    if host == "avx2" and wshape[0] in (64, 130):
        assert K.channel_split(np.float32, cout_per_group, 1) > 0  # two launches: 6x1 blocks, then 4x1
    _check(xshape, wshape, torch.float32, **kw)


GW_TILES = sorted(K._GW_TILED)


@pytest.mark.parametrize("tile", GW_TILES, ids=[f"{c}x{k}" for c, k in GW_TILES])
@pytest.mark.parametrize("N, Pn, chunk", [(1, 5, 2048), (2, 37, 16), (1, 100, 48), (3, 33, 2048)])
@pytest.mark.parametrize("Kp, KG", [(1, 1), (7, 1), (7, 3), (20, 20)])
@pytest.mark.parametrize("cout", [2, 3, 7])
def test_grad_weight_tile_kernel_tails_chunks_and_padded_channels(tile, N, Pn, chunk, Kp, KG, cout):
    # P positions in chunks (the last one short, its last vector masked), taps in tiles plus single tail taps, KG
    # tap tiles per task, padded channel rows (dropped), the input's last row ending where the last tap reads
    rng = np.random.default_rng(Pn * 100 + Kp * 10 + cout)
    toff = np.sort(rng.choice(3 * Kp + 20, size=Kp, replace=False)).astype(np.int64)
    xs = rng.standard_normal((N, int(toff.max()) + Pn)).astype(np.float32)
    gyw = rng.standard_normal((N, cout, Pn)).astype(np.float32)
    cob, kb = tile
    dw = np.zeros((1, -(-cout // cob) * cob, Kp))
    K._GW_TILED[tile](gyw, xs, toff, 0, Pn, cout, chunk, KG, np.float32(0), dw)
    cols = np.stack([np.stack([xs[n, o:o + Pn] for o in toff]) for n in range(N)]).astype(np.float64)
    want = np.einsum("ncp,nkp->ck", gyw.astype(np.float64), cols)
    np.testing.assert_allclose(dw[0, :cout], want, rtol=0, atol=1e-4 * (1 + np.abs(want).max()))


def test_grad_weight_tile_by_host_dtype_and_channels(monkeypatch):
    monkeypatch.setattr(K, "AVX512", False)
    monkeypatch.setattr(K, "AVX2", True)
    # 3x2 unless it pads more channels than 2x3's cost: 128 -> 129 (3x2), 16 -> 16 (2x3 rather than 18)
    assert [K.grad_weight_tile(np.float32, c) for c in (2, 3, 16, 64, 128)] == \
        [(2, 3), (3, 2), (2, 3), (2, 3), (3, 2)]
    assert K.grad_weight_tile(np.float32, 1) is None and K.grad_weight_tile(np.float64, 64) is None
    monkeypatch.setattr(K, "AVX512", True)
    assert K.grad_weight_tile(np.float32, 64) is None


def _array_before_guard_page(n: int) -> np.ndarray:
    """A float32 array of n elements that ends exactly where an unreadable page begins (reading past it faults)."""
    import ctypes
    import mmap

    page = mmap.PAGESIZE
    size = -(-n * 4 // page) * page
    mem = mmap.mmap(-1, size + page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    assert libc.mprotect(base + size, page, 0) == 0
    return np.frombuffer(mem, np.float32, count=n, offset=size - n * 4)  # holds the mapping


def test_register_tile_reads_nothing_past_the_input():
    # the input's last row ends at a guard page: the masked tail loads must stop at its end (a fault kills the run)
    P, Kp = 37, 20
    buf = _array_before_guard_page(Kp * P + 5)
    rng = np.random.default_rng(0)
    buf[:] = rng.standard_normal(buf.size)
    xs = buf.reshape(1, -1)
    toff = (np.arange(Kp) * P + 5).astype(np.int64)  # the last tap's row is the last P elements
    wmat = rng.standard_normal((1, 8, Kp)).astype(np.float32)
    bias = np.zeros(8, np.float32)
    want = _tile_reference(buf, toff, wmat[0], bias.astype(np.float64), P)
    for tile, kernel in K._TILED.items():
        wp = _kernels.pack_tiles(wmat, np.empty((1, -(-8 // tile[0]), Kp, tile[0]), np.float32))
        out = np.empty(8 * P, np.float32)
        kernel(xs, toff, wp, bias, out, 0, P, 1, P, 1, P, 8, 0, P, P, 1, 0, 1, 1, 144, 1)
        np.testing.assert_allclose(out.reshape(8, P), want, rtol=0, atol=1e-4 * (1 + np.abs(want).max()),
                                   err_msg=str(tile))


CHANNELS_LAST = [
    (dict(padding=1), (4, 32, 8, 8), (64, 32, 3, 3)),                 # tile 64 x 6
    (dict(padding=1, stride=2), (3, 40, 5, 7), (24, 40, 3, 3)),       # tile 32 x 12, odd map, C/Cout tails
    (dict(stride=2), (2, 16, 6, 6), (48, 16, 1, 1)),                  # tile 48 x 8; 1x1 s2: phases without taps
    (dict(padding=2, dilation=2), (2, 24, 9, 9), (40, 24, 3, 3)),
    (dict(padding=(1, 0), stride=(2, 3), dilation=(1, 2)), (2, 17, 7, 5), (19, 17, 3, 2)),
    (dict(padding=1, stride=3), (1, 20, 10, 8), (100, 20, 2, 4)),    # stride > kernel: inputs no tap reaches
    (dict(padding=2), (1, 20, 3, 3), (100, 20, 5, 5)),                # batch 1, kernel larger than the map
    (dict(padding=1), (6, 130, 2, 2), (70, 130, 3, 3)),               # C over one KC block, 2x2 map
    (dict(stride=2, dilation=2), (2, 24, 13, 12), (32, 24, 3, 3)),    # taps on the even lattice: a quarter copied
    (dict(padding=(3, 1), stride=(2, 3), dilation=(4, 3)), (2, 16, 11, 13), (24, 16, 2, 3)),  # lattice 2 x 3
    (dict(padding=1, stride=3), (2, 20, 8, 7), (36, 20, 1, 1)),      # padded 1x1 s3: every third bordered pixel
]


def cl_host(monkeypatch, host: str) -> None:
    """Take the channels-last path with the tiles of ``host`` ("avx512", "avx2") on any host (LLVM splits the
    vectors where needed), or never ("none")."""
    monkeypatch.setattr(CL, "AVX512", host == "avx512")
    monkeypatch.setattr(CL, "AVX2", host == "avx2")


HOSTS = ["avx512", "avx2"]


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("pack_inside", [False, True])  # weights packed first, or inside the GEMM
@pytest.mark.parametrize("kw, xshape, wshape", CHANNELS_LAST)
def test_channels_last_gemm_matches_torch(kw, xshape, wshape, pack_inside, host, monkeypatch):
    cl_host(monkeypatch, host)
    monkeypatch.setattr(CL, "PACK_INSIDE_POSITIONS", 10**9 if pack_inside else 0)
    monkeypatch.setattr(CL, "PACK_INSIDE_BLOCKS_PER_THREAD", 0)
    x = torch.empty(xshape)
    assert CL.use_channels_last(make_geometry(x, torch.empty(wshape), None, kw.get("stride", 1),
                                              kw.get("padding", 0), kw.get("dilation", 1), 1), np.float32)
    _check(xshape, wshape, torch.float32, **kw)


@pytest.mark.parametrize("host", HOSTS)
def test_channels_last_gradients_one_at_a_time(host, monkeypatch):
    # grad-weight alone converts the output gradient itself; grad-input alone leaves nothing behind
    cl_host(monkeypatch, host)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 24, 5, 6, generator=g, dtype=torch.float64)
    w = torch.randn(32, 24, 3, 3, generator=g, dtype=torch.float64) / 15
    gy = torch.randn(3, 32, 3, 3, generator=g, dtype=torch.float64)
    for wrt in ("x", "w"):
        xr, wr = x.clone().requires_grad_(wrt == "x"), w.clone().requires_grad_(wrt == "w")
        xf, wf = x.float().requires_grad_(wrt == "x"), w.float().requires_grad_(wrt == "w")
        want = torch.autograd.grad(F.conv2d(xr, wr, stride=2, padding=1), xr if wrt == "x" else wr, gy)[0]
        y = cc.conv2d(xf, wf, stride=2, padding=1)
        got = torch.autograd.grad(y, xf if wrt == "x" else wf, gy.float())[0]
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5 * (1 + want.abs().max().item()))
        assert y.grad_fn.saved.cl.grad_out is None  # nothing left behind for a grad-weight that never comes


@pytest.mark.parametrize("host", HOSTS)
def test_channels_last_grad_weight_adds_position_ranges(host, monkeypatch):
    # many partial sums (one per range of positions) give the same gradient as one
    cl_host(monkeypatch, host)
    monkeypatch.setattr(CL, "GW_MIN_RANGE", 7)
    _check((5, 20, 6, 7), (36, 20, 3, 3), torch.float32, padding=1)


def test_channels_last_choice(monkeypatch):
    monkeypatch.setattr(CL, "AVX512", True)

    def geo(xshape, wshape, groups=1, padding=1, stride=1, dilation=1):
        return make_geometry(torch.empty(xshape), torch.empty(wshape), None, stride, padding, dilation, groups)

    assert CL.use_channels_last(geo((2, 64, 16, 16), (64, 64, 3, 3)), np.float32)
    assert not CL.use_channels_last(geo((2, 64, 16, 16), (64, 64, 3, 3)), np.float64)
    pointwise = dict(padding=0)  # unpadded stride-1 1x1: the wide rows read it in place, so only small maps here
    assert not CL.use_channels_last(geo((2, 64, 16, 16), (64, 64, 1, 1), **pointwise), np.float32)
    assert CL.use_channels_last(geo((2, 64, 8, 8), (64, 64, 1, 1), **pointwise), np.float32)
    assert CL.use_channels_last(geo((2, 64, 32, 32), (64, 64, 1, 1), padding=0, stride=2), np.float32)  # 16x16
    assert not CL.use_channels_last(geo((2, 64, 17, 16), (64, 64, 3, 3)), np.float32)  # 272 positions
    assert not CL.use_channels_last(geo((2, 64, 8, 8), (64, 32, 3, 3), groups=2), np.float32)
    assert not CL.use_channels_last(geo((2, 8, 8, 8), (64, 8, 3, 3)), np.float32)
    assert not CL.use_channels_last(geo((2, 64, 8, 8), (8, 64, 3, 3)), np.float32)
    # taps on the even lattice (stride 2, dilation 2): large maps too, 30x30 and 62x62 but not 78x78
    lattice = dict(padding=0, stride=2, dilation=2)
    assert CL.lattice_steps(geo((4, 128, 64, 64), (128, 128, 3, 3), **lattice)) == (2, 2)
    assert CL.use_channels_last(geo((4, 128, 64, 64), (128, 128, 3, 3), **lattice), np.float32)
    assert CL.use_channels_last(geo((4, 128, 128, 128), (128, 128, 3, 3), **lattice), np.float32)
    assert not CL.use_channels_last(geo((4, 128, 160, 160), (128, 128, 3, 3), **lattice), np.float32)
    assert not CL.use_channels_last(geo((4, 128, 64, 64), (128, 128, 3, 3), padding=0, stride=2), np.float32)
    assert CL.lattice_steps(geo((4, 128, 64, 64), (128, 128, 3, 3), padding=0, stride=2)) == (1, 1)
    assert CL.lattice_steps(geo((4, 128, 64, 64), (128, 128, 1, 3), padding=0, stride=(3, 2), dilation=2)) == (3, 2)
    # a lattice in one direction only (3x3, stride (1, 2), dilation 2) keeps the small-map limit
    assert CL.lattice_steps(geo((4, 128, 64, 64), (128, 128, 3, 3), padding=0, stride=(1, 2), dilation=2)) == (1, 2)
    assert not CL.use_channels_last(geo((4, 128, 64, 64), (128, 128, 3, 3), padding=0, stride=(1, 2), dilation=2),
                                    np.float32)
    cl_host(monkeypatch, "avx2")
    assert CL.use_channels_last(geo((2, 64, 16, 16), (64, 64, 3, 3)), np.float32)
    # a strided unpadded 1x1 counts its input map there (the NHWC copy): 16x16 -> 8x8 not, 8x8 -> 4x4 yes
    assert not CL.use_channels_last(geo((2, 64, 16, 16), (64, 64, 1, 1), padding=0, stride=2), np.float32)
    assert CL.use_channels_last(geo((2, 64, 8, 8), (64, 64, 1, 1), padding=0, stride=2), np.float32)
    assert CL.use_channels_last(geo((2, 64, 8, 8), (64, 64, 1, 1), **pointwise), np.float32)
    cl_host(monkeypatch, "none")
    assert not CL.use_channels_last(geo((2, 64, 16, 16), (64, 64, 3, 3)), np.float32)


def test_channels_last_packs_weights_inside_for_small_maps_with_many_blocks(monkeypatch):
    monkeypatch.setattr(CL, "_threads", lambda: 2)
    assert CL.packs_inside(CL.PACK_INSIDE_POSITIONS, 2 * CL.PACK_INSIDE_BLOCKS_PER_THREAD)
    assert not CL.packs_inside(CL.PACK_INSIDE_POSITIONS + 1, 64)  # larger maps: pack first, tasks share inputs
    assert not CL.packs_inside(128, 2 * CL.PACK_INSIDE_BLOCKS_PER_THREAD - 1)  # too few tasks for the threads


@pytest.mark.parametrize("channels, width", [(128, 64), (512, 64), (96, 48), (40, 48), (24, 32), (20, 32),
                                             (16, 32), (160, 32), (100, 64)])
def test_channels_last_tile_pads_least(channels, width, monkeypatch):
    cl_host(monkeypatch, "avx512")
    assert CL.tile_width(channels) == width
    pad = -(-channels // width) * width
    assert all(pad <= -(-channels // w) * w for w in CL.AVX512_WIDTHS)
    cl_host(monkeypatch, "avx2")  # AVX2's registers hold one width
    assert CL.tile_width(channels) == 16 and set(CL.AVX2_WIDTHS) == {16}


@pytest.mark.parametrize("by_input", [False, True])
def test_pack_cl_layouts(by_input):
    rng = np.random.default_rng(1)
    w3 = rng.standard_normal((19, 13, 6)).astype(np.float32)  # Cout, Cin, taps
    taps = np.array([4, 0, 5], np.int64)
    lanes, K_ = (13, 19) if by_input else (19, 13)
    out = np.full((-(-lanes // 16), len(taps), K_, 16), np.nan, np.float32)
    _nhwc.pack_cl(w3, taps, out, by_input)
    src = w3.transpose(1, 0, 2) if by_input else w3  # (lanes, K, taps)
    padded = np.zeros((out.shape[0] * 16, K_, len(taps)), np.float32)
    padded[:lanes] = src[:, :, taps]
    np.testing.assert_array_equal(out, padded.reshape(out.shape[0], 16, K_, len(taps)).transpose(0, 3, 2, 1))


def test_sum_cl_parts_adds_and_reorders():
    rng = np.random.default_rng(2)
    part = rng.standard_normal((3, 4, 21, 40)).astype(np.float32)  # ranges, taps, Cp, Cop (padded)
    out = np.empty((35, 17, 4), np.float32)
    want = part.astype(np.float64).sum(0)[:, :17, :35].transpose(2, 1, 0)
    _nhwc.sum_cl_parts(part, out)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    one = rng.standard_normal((1, 4, 21, 40)).astype(np.float32)
    np.testing.assert_array_equal(_nhwc.sum_cl_parts(one, out), one[0, :, :17, :35].transpose(2, 1, 0))


@pytest.mark.parametrize("width", [5, 11])  # pixel by pixel, and row by row
def test_to_nhwc_zeroes_border_and_spare_channels(width):
    x = np.random.default_rng(4).standard_normal((2, 3, 4, width)).astype(np.float32)
    xp = np.full((2, 7, width + 1, 8), np.nan, np.float32)
    _nhwc.to_nhwc(x, xp, 2, 1, 1, 1)
    want = np.zeros_like(xp)
    want[:, 2:6, 1:, :3] = x.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(xp, want)
    back = np.empty_like(x)
    np.testing.assert_array_equal(_nhwc.from_nhwc(xp, back, 2, 1), x)


def test_small_calls_run_on_one_thread():
    import numba

    before = numba.get_num_threads()
    try:
        assert K.set_threads(2, flops=K.SERIAL_FLOPS - 1) == 1 == numba.get_num_threads()
        assert K.set_threads(2, flops=K.SERIAL_FLOPS) == min(2, numba.config.NUMBA_NUM_THREADS)
        assert K.set_threads(10**6) == numba.config.NUMBA_NUM_THREADS  # capped at the pool
    finally:
        numba.set_num_threads(before)


CHANNELS_LAST_IO = [
    (dict(padding=1), (3, 32, 5, 6), (48, 32, 3, 3), 1),        # dense 3x3: channels fill the 48-lane tile
    (dict(padding=1, stride=2), (2, 40, 4, 4), (24, 40, 3, 3), 1),  # padded lanes: output copied, not direct
    (dict(), (2, 64, 4, 4), (96, 64, 1, 1), 1),                 # 1x1 on a small map
    (dict(padding=1, stride=2), (3, 20, 4, 4), (20, 1, 3, 3), 20),  # small-map depthwise
    (dict(stride=2, dilation=2, padding=1), (2, 32, 9, 8), (48, 32, 3, 3), 1),  # an NHWC input's lattice copy
]


@pytest.mark.parametrize("x_cl, gy_cl", [(False, False), (True, False), (True, True), (False, True)])
@pytest.mark.parametrize("kw, xshape, wshape, groups", CHANNELS_LAST_IO)
def test_channels_last_paths_take_and_give_channels_last_tensors(kw, xshape, wshape, groups, x_cl, gy_cl,
                                                                  monkeypatch):
    """The channels-last paths read channels_last inputs and output gradients in place and return channels_last
    outputs (input gradients in the input's layout), equal to torch's in float64 whatever the layouts."""
    monkeypatch.setattr(CL, "AVX512", True)
    cl = torch.channels_last
    g = torch.Generator().manual_seed(sum(xshape))
    x = torch.randn(xshape, generator=g, dtype=torch.float64)
    w = torch.randn(wshape, generator=g, dtype=torch.float64) / (wshape[1] * wshape[2] * wshape[3]) ** 0.5
    b = torch.randn(wshape[0], generator=g, dtype=torch.float64)
    xr, wr, br = (t.clone().requires_grad_(True) for t in (x, w, b))
    r = F.conv2d(xr, wr, br, groups=groups, **kw)
    gy = torch.randn(r.shape, generator=g, dtype=torch.float64)
    want = torch.autograd.grad(r, (xr, wr, br), gy)
    xf = x.float().contiguous(memory_format=cl) if x_cl else x.float()
    xf.requires_grad_(True)
    wf, bf = w.float().requires_grad_(True), b.float().requires_grad_(True)
    y = cc.conv2d(xf, wf, bf, groups=groups, **kw)
    assert y.is_contiguous(memory_format=cl)
    torch.testing.assert_close(y.double(), r, rtol=0, atol=2e-5 * (1 + r.abs().max().item()))
    gyf = gy.float().contiguous(memory_format=cl) if gy_cl else gy.float()
    got = torch.autograd.grad(y, (xf, wf, bf), gyf)
    assert got[0].is_contiguous(memory_format=cl) == x_cl and got[0].is_contiguous() == (not x_cl)  # x's layout
    for name, a, e in zip(("input", "weight", "bias"), got, want):
        torch.testing.assert_close(a.double(), e, rtol=0, atol=2e-4 * (1 + e.abs().max().item()), msg=name)


def test_a_channels_last_chain_never_transposes(monkeypatch):
    # two channels-last layers in a row: the second reads the first's output in place (no NCHW copy), and a
    # wide-row layer after them still gets NCHW
    monkeypatch.setattr(CL, "AVX512", True)
    calls = []
    for name in ("to_nhwc", "pad_nhwc"):
        monkeypatch.setattr(_nhwc, name, lambda *a, _f=getattr(_nhwc, name), _n=name: (calls.append(_n), _f(*a))[1])
    x = torch.randn(2, 32, 4, 4)
    w1, w2 = torch.randn(48, 32, 3, 3) / 17, torch.randn(48, 48, 1, 1) / 7
    y = cc.conv2d(cc.conv2d(x, w1, padding=1).relu(), w2)
    assert calls == ["to_nhwc"]  # only the NCHW network input was copied: the 1x1 layer read its input in place
    torch.testing.assert_close(y, F.conv2d(F.conv2d(x, w1, padding=1).relu(), w2), rtol=1e-4, atol=1e-4)


def test_a_channels_last_input_read_in_place_reports_an_in_place_change_like_torch(monkeypatch):
    monkeypatch.setattr(CL, "AVX512", True)
    for conv in (F.conv2d, cc.conv2d):
        h = (torch.randn(2, 48, 4, 4, requires_grad=True) * 1.0).contiguous(memory_format=torch.channels_last)
        y = conv(h, torch.randn(48, 48, 1, 1, requires_grad=True))
        h.add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()


@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("width, steps, pads, Cp", [(5, (2, 2), (1, 1), 8), (23, (2, 2), (0, 0), 8),
                                                    (23, (2, 3), (2, 1), 8), (19, (3, 1), (0, 2), 8),
                                                    (11, (1, 1), (2, 1), 8),
                                                    (700, (1, 1), (1, 2), 48), (700, (2, 2), (3, 0), 96)])
def test_nhwc_copies_take_the_lattice_of_the_padded_input(nhwc, width, steps, pads, Cp):
    """The channels-last input copy holds every uh-th row and uw-th column of the zero-bordered map (what the
    taps of a stride-2 dilation-2 or a strided 1x1 convolution read), checked against numpy slicing; the wide
    rows fill several blocks of rows (``TO_NHWC_BLOCK_BYTES``)."""
    (uh, uw), (pt, pl) = steps, pads
    x = np.random.default_rng(5).standard_normal((2, 3, 7, width)).astype(np.float32)
    Hp, Wp = -(-(7 + 2 * pt) // uh), -(-(width + 2 * pl) // uw)
    assert width < 700 or Wp * Cp * 4 * 2 > _nhwc.TO_NHWC_BLOCK_BYTES  # under two rows per block
    padded = np.zeros((2, 3, Hp * uh + pt, Wp * uw + pl), np.float32)
    padded[:, :, pt:pt + 7, pl:pl + width] = x
    want = np.zeros((2, Hp, Wp, Cp), np.float32)
    want[..., :3] = padded[:, :, ::uh, ::uw][:, :, :Hp, :Wp].transpose(0, 2, 3, 1)
    xp = np.full((2, Hp, Wp, Cp), np.nan, np.float32)
    src = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x
    (_nhwc.pad_nhwc if nhwc else _nhwc.to_nhwc)(src, xp, pt, pl, uh, uw)
    np.testing.assert_array_equal(xp, want)
    if steps == (1, 1):  # and back, by rows or (wide rows) by blocks of rows
        np.testing.assert_array_equal(_nhwc.from_nhwc(xp, np.empty_like(x), pt, pl), x)


@pytest.mark.parametrize("width", sorted(CL.TILES))
@pytest.mark.parametrize("ranges, share, PC", [(1, 1, 64), (3, 2, 5), (2, 8, 7), (1, 3, 4)])
def test_channels_last_grad_weight_kernels_match_a_float64_reference(width, ranges, share, PC):
    """Every cl_gw tile (the AVX2 one reads a packed panel of input) over position ranges, work items of several
    output blocks (a last group shorter than the rest) and passes of PC positions with a short last one."""
    count = CL.TILES[width][0]
    rng = np.random.default_rng(width + ranges + share)
    T, Cp, nb, P = 3, 2 * count, 5, 41
    Cop = nb * width
    x = rng.standard_normal(60 * Cp + 1).astype(np.float32)
    gy = rng.standard_normal(P * Cop + 3).astype(np.float32)
    xoff = (rng.integers(0, 40, P) * Cp).astype(np.int64)
    toff = (np.arange(T) * 7 * Cp).astype(np.int64)
    gyoff = (rng.permutation(P) * Cop + 3).astype(np.int64)
    part = np.full((ranges, T * Cp * Cop), np.nan, np.float32)
    CL.TILES[width][2](x, xoff, toff, Cp, gy, gyoff, part, PC, share)
    cols = x.astype(np.float64)[xoff[:, None, None] + toff[None, :, None] + np.arange(Cp)[None, None, :]]
    rows = gy.astype(np.float64)[gyoff[:, None] + np.arange(Cop)[None, :]]
    want = np.einsum("ptc,po->tco", cols, rows).reshape(-1)
    np.testing.assert_allclose(part.astype(np.float64).sum(0), want, rtol=1e-5, atol=1e-4)


def test_grad_weight_work_items_share_the_panel_on_avx2(monkeypatch):
    monkeypatch.setattr(CL, "_threads", lambda: 2)
    assert _kernels.CL_GW_PANEL_WIDTHS == (16,)
    assert CL.gw_items(8, 8192, 16) == (4, 8)     # one group of all 8 blocks: the items are position ranges
    assert CL.gw_items(32, 128, 16) == (1, 8)     # 4 groups already fill 2 threads; 128 positions: one range
    assert CL.gw_items(36, 128, 16) == (1, 6)     # 6 groups of 6, not 4 of 8 and one of 4 on 2 threads
    assert CL.gw_items(24, 512, 16) == (2, 8)     # 3 groups x 2 ranges: already even
    assert CL.gw_items(7, 128, 16) == (1, 4)      # 4 + 3 blocks: both threads busy
    assert CL.gw_items(9, 128, 16) == (1, 5)      # 5 + 4, not 8 + 1
    assert CL.gw_items(1, 128, 16) == (1, 1)
    assert CL.gw_items(2, 8192, 64) == (2, 1)     # AVX-512 tiles: one block per item
    assert CL.gw_items(1, 100, 64) == (1, 1)      # under GW_MIN_RANGE positions: never split


@st.composite
def channels_last_configs(draw):
    """Dense float32 geometries of the channels-last path: any kernel, stride, dilation and padding (lattice steps
    among them), channel counts that fill or leave part of a tile, small maps."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 11))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 11))
    return dict(x=(draw(st.integers(1, 3)), draw(st.integers(16, 40)), h, w),
                w=(draw(st.integers(16, 40)), kh, kw), stride=(sh, sw), dilation=(dh, dw), padding=(ph, pw),
                host=draw(st.sampled_from(HOSTS)), nhwc=draw(st.booleans()))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=channels_last_configs())
def test_channels_last_path_matches_torch_on_random_geometries(cfg):
    n, c, h, w_ = cfg["x"]
    co, kh, kw = cfg["w"]
    kw_args = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    before = CL.AVX512, CL.AVX2
    CL.AVX512, CL.AVX2 = cfg["host"] == "avx512", cfg["host"] == "avx2"
    try:
        g = torch.Generator().manual_seed(n * c * h * w_)
        x = torch.randn(n, c, h, w_, generator=g, dtype=torch.float64)
        wt = torch.randn(co, c, kh, kw, generator=g, dtype=torch.float64) / (c * kh * kw) ** 0.5
        geo = make_geometry(x, wt, None, kw_args["stride"], kw_args["padding"], kw_args["dilation"], 1)
        assume(CL.use_channels_last(geo, np.float32))  # not an unpadded 1x1 on an input map over 8x8
        xr, wr = x.clone().requires_grad_(True), wt.clone().requires_grad_(True)
        r = F.conv2d(xr, wr, **kw_args)
        gy = torch.randn(r.shape, generator=g, dtype=torch.float64)
        want = torch.autograd.grad(r, (xr, wr), gy)
        xf = x.float().contiguous(memory_format=torch.channels_last) if cfg["nhwc"] else x.float()
        xf.requires_grad_(True)
        wf = wt.float().requires_grad_(True)
        y = cc.conv2d(xf, wf, **kw_args)
        torch.testing.assert_close(y.double(), r, rtol=0, atol=2e-5 * (1 + r.abs().max().item()))
        got = torch.autograd.grad(y, (xf, wf), gy.float())
        for name, a, e in zip(("input", "weight"), got, want):
            torch.testing.assert_close(a.double(), e, rtol=0, atol=2e-4 * (1 + e.abs().max().item()), msg=name)
    finally:
        CL.AVX512, CL.AVX2 = before


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kw, xshape, wshape, bias", [
    (dict(), (32, 144, 1, 1), (6, 144, 1, 1), True),     # a squeeze-and-excitation squeeze
    (dict(), (32, 6, 1, 1), (144, 6, 1, 1), True),       # ... and its expand
    (dict(stride=2), (1, 40, 1, 1), (33, 40, 1, 1), False),  # batch 1, stride on a 1x1 map, no bias
    (dict(), (5, 1, 1, 1), (1, 1, 1, 1), True),          # one channel (also the depthwise geometry)
    (dict(), (3, 2100, 1, 1), (17, 2100, 1, 1), True),   # a long reduction
])
def test_dense_path_matches_torch(kw, xshape, wshape, bias, dtype):
    geo = make_geometry(torch.empty(xshape), torch.empty(wshape), None, kw.get("stride", 1), 0, 1, 1)
    assert K.use_dense(geo) and not K.channels_last_io(geo, np.float32)
    _check(xshape, wshape, dtype, bias=bias, **kw)


def test_dense_path_reads_a_channels_last_input_and_keeps_its_layout():
    x = torch.randn(4, 24, 1, 1).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    w = torch.randn(16, 24, 1, 1, requires_grad=True)
    y = cc.conv2d(x, w)
    torch.testing.assert_close(y, F.conv2d(x, w), rtol=1e-5, atol=1e-5)
    gx, gw = torch.autograd.grad(y, (x, w), torch.ones_like(y))
    want = torch.autograd.grad(F.conv2d(x, w), (x, w), torch.ones_like(y))
    torch.testing.assert_close(gx, want[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, want[1], rtol=1e-5, atol=1e-5)


def test_dense_path_choice():
    def geo(xshape, wshape, **kw):
        return make_geometry(torch.empty(xshape), torch.empty(wshape), None, kw.get("stride", 1),
                             kw.get("padding", 0), 1, kw.get("groups", 1))
    assert K.use_dense(geo((2, 8, 1, 1), (4, 8, 1, 1), stride=3))
    assert not K.use_dense(geo((2, 8, 1, 1), (4, 8, 1, 1), padding=1))   # padded: a 3x3 output
    assert not K.use_dense(geo((2, 8, 2, 1), (4, 8, 1, 1)))              # not a 1x1 map
    assert not K.use_dense(geo((2, 8, 1, 1), (4, 4, 1, 1), groups=2))    # grouped
    assert not K.use_dense(geo((2, 8, 3, 3), (4, 8, 3, 3)))              # a 3x3 kernel covering a 3x3 map
