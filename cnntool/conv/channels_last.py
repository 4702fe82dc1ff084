"""Dense convolutions on small maps as channels-last indirect GEMMs (float32, AVX-512 hosts).

ResNet's 8x8 ... 2x2 stages have few positions per sample and hundreds of channels. The wide-row kernels of
``kernels.py`` vectorise over positions and there compute the padding too (an 8x8 map padded to 10x10 keeps 64 of
100 positions, a 2x2 map 4 of 16) or pay a KH*KW-times im2col copy. Here the vector lanes run over output
channels instead: the input is copied once to padded NHWC, every output position reads its receptive field through
one offset (``xoff``) plus a per-tap offset (``toff``), and a register tile of W output channels x a few positions
(``cl_fwd_*``) multiplies broadcast input values by vectors of weights. Stride, dilation and padding are all in the
offsets, so no position is computed only to be dropped.

* grad-input is the same GEMM on the zero-bordered NHWC output gradient, once per input phase (the input positions
  that the same taps reach, ``(ih + pt) % sh``), with the weights transposed per phase by ``pack_cl``.
* grad-weight (``cl_gw_*``) reduces over positions, the broadcast dimension, so its accumulators stay in registers
  (a tile of W output x count input channels); the partial sums of position ranges are added at the end.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np

from cnntool.conv import _kernels as K
from cnntool.conv import _nhwc
from cnntool.conv._numba_setup import AVX512
from cnntool.conv._pool import POOL

#: Output channels per register tile (16-lane vectors x count) and the GEMM kernels of each width; the count is
#: positions per tile in the forward, input channels per tile in grad-weight (both keep 24 accumulators).
TILES = {64: (6, K.cl_fwd_64x6, K.cl_gw_64x6), 48: (8, K.cl_fwd_48x8, K.cl_gw_48x8),
         32: (12, K.cl_fwd_32x12, K.cl_gw_32x12)}
#: Largest output map (positions per sample) on this path: measured on ResNet-18's layers at 64x64 px (maps of
#: 16x16 ... 2x2), forward 1.2-1.6x and grad-weight 1.1-1.7x faster than the wide-row kernels; on the 32x32 and
#: 64x64 maps of ``bench_conv`` the forward was 1.1-1.3x slower (the NHWC copies in and out).
MAX_POSITIONS = 256
#: Fewest input and output channels: fewer leave most of a 32-lane tile empty.
MIN_CHANNELS = 16
#: Reduction channels per block of the forward GEMM: their weights stay in L1 while the positions pass (measured on
#: the 8x8 ... 2x2 ResNet layers: 128 best or within 2%).
KC = 128
#: Tiles of positions per work item of the forward GEMM (one block of output channels over a range of positions;
#: measured on the 8x8 ... 2x2 ResNet layers: 8 best or within the noise; one item per thread and block 1.5x
#: slower on the 8x8 map).
PT = 8
#: Positions per pass of the grad-weight tile, between loads and stores of its accumulators (its rows of the output
#: gradient stay in L1; measured: 64 best on the 16x16 and 8x8 maps, 10% behind 128 on the 2x2 map).
PC = 64
#: Positions a grad-weight work item covers at least (fewer make more partial sums than they save).
GW_MIN_RANGE = 256
#: Grad-weight work items per thread to aim for: blocks of output channels first, then ranges of positions (each
#: range one more partial sum of the whole weight gradient to add; 4 per thread made the 4x4-map ResNet layer's
#: additions 1.4 ms, as long as half its kernel).
GW_ITEMS_PER_THREAD = 2


def _threads() -> int:
    return numba.get_num_threads()


def use_channels_last(g, dtype) -> bool:
    """This path for geometry ``g``: float32 on an AVX-512 host, no groups, a small output map, enough channels."""
    return (AVX512 and np.dtype(dtype) == np.float32 and g.groups == 1 and g.OH * g.OW <= MAX_POSITIONS
            and min(g.C, g.Cout) >= MIN_CHANNELS)


def tile_width(channels: int) -> int:
    """The tile width that pads ``channels`` least (ties: the wider tile, fewer weight loads per FMA)."""
    return min(TILES, key=lambda w: (-(-channels // w) * w, -w))


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


@dataclass
class ClInput:
    """The forward's padded NHWC input and position offsets, kept for grad-weight."""

    xp: np.ndarray  # (N, Hp, Wp, Cp), pooled: the owner hands it back
    xoff: np.ndarray  # (N*OH*OW,) offset of each output position's receptive field
    toff: np.ndarray  # (KH*KW,) offset of each tap
    Cp: int  # channels per pixel of xp: C rounded up to the grad-weight tile
    grad_out: tuple | None = None  # (gy, its _GradOut) left by grad_input for grad_weight of the same gy


@functools.lru_cache(maxsize=256)
def _forward_offsets(N, OH, OW, Hp, Wp, Cp, KH, KW, stride, dilation):
    sh, sw = stride
    dh, dw = dilation
    n, oh, ow = np.meshgrid(np.arange(N), np.arange(OH), np.arange(OW), indexing="ij")
    xoff = (((n * Hp + oh * sh) * Wp + ow * sw) * Cp).reshape(-1).astype(np.int64)
    kh, kw = np.meshgrid(np.arange(KH), np.arange(KW), indexing="ij")
    toff = ((kh * dh * Wp + kw * dw) * Cp).reshape(-1).astype(np.int64)
    return xoff, toff


def _pad_positions(off: np.ndarray, count: int, fill: int) -> np.ndarray:
    """``off`` padded to a multiple of the tile's ``count`` with ``fill`` (dummy positions)."""
    extra = _round_up(len(off), count) - len(off)
    return np.concatenate([off, np.full(extra, fill, np.int64)]) if extra else off


def _gemm(W, src, xoff, toff, C, wp, bias, ooff, rows, width):
    """Run the forward GEMM of tile width W over positions (xoff, ooff); returns its pooled (rows + 1, width)
    output (row ``rows`` is the scratch row of the dummy positions)."""
    o = POOL.take(((rows + 1) * width,), np.float32)
    _run_gemm(W, src, xoff, toff, C, wp, bias, o, ooff, rows * width)
    return o


def _run_gemm(W, src, xoff, toff, C, wp, bias, o, ooff, scratch):
    """The forward GEMM of tile width W over positions (xoff, ooff) into ``o``; dummy positions write at
    ``scratch``."""
    count, fwd, _ = TILES[W]
    fwd(src, _pad_positions(xoff, count, xoff[0]), toff, C, wp, bias, o, _pad_positions(ooff, count, scratch), KC, PT)


def forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g, out: np.ndarray) -> ClInput:
    """out = conv2d(x, w, b) (NCHW arrays); returns what grad-weight needs (the caller gives ``xp`` back)."""
    pt, pb, pl, pr = g.pad
    Wo = tile_width(g.Cout)
    Cop = _round_up(g.Cout, Wo)
    Cp = _round_up(g.C, TILES[Wo][0])
    Hp, Wp = g.H + pt + pb, g.W + pl + pr
    xp = POOL.take((g.N, Hp, Wp, Cp), np.float32)
    _nhwc.to_nhwc(x, xp, pt, pl)
    xoff, toff = _forward_offsets(g.N, g.OH, g.OW, Hp, Wp, Cp, g.KH, g.KW, g.stride, g.dilation)
    taps = np.arange(g.KH * g.KW, dtype=np.int64)
    wp = _nhwc.pack_cl(w.reshape(g.Cout, g.C, -1), taps, POOL.take((Cop // Wo, len(taps), g.C, Wo), np.float32),
                       False)
    bias = np.zeros(Cop, np.float32)
    if b is not None:
        bias[:g.Cout] = b
    rows = len(xoff)
    o = _gemm(Wo, xp.reshape(-1), xoff, toff, g.C, wp.reshape(-1), bias, np.arange(rows, dtype=np.int64) * Cop,
              rows, Cop)
    _nhwc.from_nhwc(o[:rows * Cop].reshape(g.N, g.OH, g.OW, Cop), out, 0, 0)
    POOL.give(o)
    POOL.give(wp)
    return ClInput(xp, xoff, toff, Cp)


@dataclass
class _GradOut:
    gp: np.ndarray  # flat (N, Hg, Wg, Cop): the output gradient, zero-bordered, channels padded to Cop
    Hg: int
    Wg: int
    top: int
    left: int
    Cop: int


def _grad_out(gy: np.ndarray, g) -> _GradOut:
    """The output gradient in NHWC with a zero border wide enough for every tap of grad-input to read."""
    sh, sw = g.stride
    dh, dw = g.dilation
    pt, _, pl, _ = g.pad
    top, left = (g.KH - 1) * dh // sh, (g.KW - 1) * dw // sw
    bottom = max(0, (g.H - 1 + pt) // sh - (g.OH - 1))
    right = max(0, (g.W - 1 + pl) // sw - (g.OW - 1))
    Hg, Wg = g.OH + top + bottom, g.OW + left + right
    Cop = _round_up(g.Cout, tile_width(g.Cout))
    gp = POOL.take((g.N, Hg, Wg, Cop), np.float32)
    _nhwc.to_nhwc(gy, gp, top, left)
    return _GradOut(gp.reshape(-1), Hg, Wg, top, left, Cop)


def grad_input(gy: np.ndarray, w: np.ndarray, g, out: np.ndarray, keep: ClInput | None = None) -> np.ndarray:
    """out = dL/dx (NCHW): per input phase, the GEMM on the bordered output gradient with that phase's taps.
    With ``keep`` (the forward's ClInput) the NHWC output gradient is left there for grad_weight."""
    sh, sw = g.stride
    dh, dw = g.dilation
    pt, _, pl, _ = g.pad
    go = _grad_out(gy, g)
    Wi = tile_width(g.C)
    Cip = _round_up(g.C, Wi)
    rows = g.N * g.H * g.W
    o = POOL.take(((rows + 1) * Cip,), np.float32)
    ov = o[:rows * Cip].reshape(g.N, g.H, g.W, Cip)
    w3 = w.reshape(g.Cout, g.C, -1)
    zero = np.zeros(Cip, np.float32)
    n = np.arange(g.N)[:, None, None]
    for rh in range(sh):
        ih0 = (rh - pt) % sh
        khs = [kh for kh in range(g.KH) if kh * dh % sh == rh]
        for rw in range(sw):
            iw0 = (rw - pl) % sw
            if ih0 >= g.H or iw0 >= g.W:
                continue
            kws = [kw for kw in range(g.KW) if kw * dw % sw == rw]
            if not khs or not kws:
                ov[:, ih0::sh, iw0::sw] = 0  # no tap reaches these inputs
                continue
            ih = np.arange(ih0, g.H, sh)[None, :, None]
            iw = np.arange(iw0, g.W, sw)[None, None, :]
            qh = (ih + pt - rh) // sh + go.top
            qw = (iw + pl - rw) // sw + go.left
            xoff = (((n * go.Hg + qh) * go.Wg + qw) * go.Cop).reshape(-1).astype(np.int64)
            ooff = (((n * g.H + ih) * g.W + iw) * Cip).reshape(-1).astype(np.int64)
            taps = [(kh, kw) for kh in khs for kw in kws]
            toff = np.array([-((kh * dh - rh) // sh * go.Wg + (kw * dw - rw) // sw) * go.Cop for kh, kw in taps],
                            np.int64)
            tidx = np.array([kh * g.KW + kw for kh, kw in taps], np.int64)
            wp = _nhwc.pack_cl(w3, tidx, POOL.take((Cip // Wi, len(taps), g.Cout, Wi), np.float32), True)
            _run_gemm(Wi, go.gp, xoff, toff, g.Cout, wp.reshape(-1), zero, o, ooff, rows * Cip)
            POOL.give(wp)
    _nhwc.from_nhwc(ov, out, 0, 0)
    POOL.give(o)
    if keep is None:
        _give(go, g)
    else:
        keep.grad_out = (gy, go)
    return out


def _give(go: _GradOut, g) -> None:
    POOL.give(go.gp.reshape(g.N, go.Hg, go.Wg, go.Cop))


def grad_weight(gy: np.ndarray, saved: ClInput, g) -> np.ndarray:
    """dL/dw (float32, (Cout, C, KH, KW)) from the output gradient and the forward's NHWC input."""
    kept, saved.grad_out = saved.grad_out, None
    go = kept[1] if kept is not None and kept[0] is gy else _grad_out(gy, g)
    Wo = tile_width(g.Cout)
    nb = go.Cop // Wo
    n, oh, ow = np.meshgrid(np.arange(g.N), np.arange(g.OH), np.arange(g.OW), indexing="ij")
    gyoff = (((n * go.Hg + oh + go.top) * go.Wg + ow + go.left) * go.Cop).reshape(-1).astype(np.int64)
    P = len(gyoff)
    T = len(saved.toff)
    ranges = max(1, min(P // GW_MIN_RANGE, -(-GW_ITEMS_PER_THREAD * _threads() // nb)))
    part = POOL.take((ranges, T * saved.Cp * go.Cop), np.float32)
    TILES[Wo][2](saved.xp.reshape(-1), saved.xoff, saved.toff, saved.Cp, go.gp, gyoff, part, PC)
    dw = np.empty((g.Cout, g.C, T), np.float32)
    _nhwc.sum_cl_parts(part.reshape(ranges, T, saved.Cp, go.Cop), dw)
    POOL.give(part)
    _give(go, g)
    return dw.reshape(g.Cout, g.C, g.KH, g.KW)
