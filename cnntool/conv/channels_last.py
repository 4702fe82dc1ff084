"""Dense convolutions on small maps as channels-last indirect GEMMs (float32, AVX-512 and AVX2 hosts).

ResNet's 8x8 ... 2x2 stages have few positions per sample and hundreds of channels. The wide-row kernels of
``kernels.py`` vectorise over positions and there compute the padding too (an 8x8 map padded to 10x10 keeps 64 of
100 positions, a 2x2 map 4 of 16) or pay a KH*KW-times im2col copy. Here the vector lanes run over output
channels instead: the input is copied once to padded NHWC, every output position reads its receptive field through
one offset (``xoff``) plus a per-tap offset (``toff``), and a register tile of W output channels x a few positions
(``cl_fwd_*``) multiplies broadcast input values by vectors of weights. Stride, dilation and padding are all in the
offsets, so no position is computed only to be dropped. Where every tap reads a sub-lattice of the input (a
stride that is a multiple of the dilation, a strided 1x1), the copy takes only that lattice.

* grad-input is the same GEMM on the zero-bordered NHWC output gradient, once per input phase (the input positions
  that the same taps reach, ``(ih + pt) % sh``), with the weights transposed per phase by ``pack_cl``.
* grad-weight (``cl_gw_*``) reduces over positions, the broadcast dimension, so its accumulators stay in registers
  (a tile of W output x count input channels); the partial sums of position ranges are added at the end.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np

from cnntool.conv import _kernels as K
from cnntool.conv import _nhwc
from cnntool.conv._numba_setup import AVX2, AVX512
from cnntool.conv._pool import POOL

#: Output channels per register tile (16-lane vectors x count) and the GEMM kernels of each width; the count is
#: positions per tile in the forward, input channels per tile in grad-weight.
TILES = {64: (6, K.cl_fwd_64x6, K.cl_gw_64x6), 48: (8, K.cl_fwd_48x8, K.cl_gw_48x8),
         32: (12, K.cl_fwd_32x12, K.cl_gw_32x12), 16: (6, K.cl_fwd_16x6, K.cl_gw_16x6)}
#: The same forward GEMMs with the weight packing inside (``cl_fwdp_*``: one task per block of lanes).
PACKING = {64: K.cl_fwdp_64x6, 48: K.cl_fwdp_48x8, 32: K.cl_fwdp_32x12, 16: K.cl_fwdp_16x6}
#: The tile widths each host's registers hold: 24 accumulators in AVX-512's 32, 12 (ymm halves) in AVX2's 16.
AVX512_WIDTHS = (64, 48, 32)
AVX2_WIDTHS = (16,)
#: Largest output map (positions per sample) on this path: measured on ResNet-18's layers at 64x64 px (maps of
#: 16x16 ... 2x2), forward 1.2-1.6x and grad-weight 1.1-1.7x faster than the wide-row kernels; on the 32x32 and
#: 64x64 maps of ``bench_conv`` the forward was 1.1-1.3x slower (the NHWC copies in and out).
MAX_POSITIONS = 256
#: ...but an unpadded stride-1 1x1 convolution reads its input in place on the wide rows and computes no padding
#: there, so this path pays only on maps of at most 8x8 (measured, forward + backward: 16x16 maps 1.06-1.24x
#: slower here, 8x8 0.89-1.14, 4x4 and 2x2 0.62-0.85). On AVX2 a strided one too, by its input map: its forward
#: is faster here, but its backward is not (ResNet-18's 1x1 s2 layers at batch 32, forward + backward against the
#: wide rows: 32x32 input 1.53x, 16x16 1.09x, 8x8 0.83x).
POINTWISE_MAX_POSITIONS = 64
#: ...and a kernel whose taps all read a sub-lattice of the input's rows and columns (stride 2 with dilation 2:
#: every other row and column) much larger maps: the NHWC copy takes only that lattice, while the wide rows
#: compute the spare columns and rows of its folded phase plane (``bench_conv`` case b, 4x128x64x64 s2 d2, 30x30
#: output: 12% spare).
#: Measured on 2 cores (AVX2), 4x128xHxH * 128x128x3x3 s2 d2: H 64, 96, 128 (30x30 ... 62x62 output) forward
#: 0.87-0.90x the wide rows' time, forward + backward 0.95-0.98x.
LATTICE_MAX_POSITIONS = 4096
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
#: Most positions (all samples) for which a GEMM packs its weights inside, one task per block of lanes over all
#: positions: there the weights outweigh the inputs (ResNet-18's 4x4 and 2x2 maps at batch 32: 512 and 128
#: positions), and packing them all first cost a write and a re-read of every weight through memory.
PACK_INSIDE_POSITIONS = 512
#: ...and only with at least this many blocks of lanes per thread (the tasks are the blocks).
PACK_INSIDE_BLOCKS_PER_THREAD = 2
#: Positions a grad-weight work item covers at least (fewer make more partial sums than they save).
GW_MIN_RANGE = 256
#: Grad-weight work items per thread to aim for: groups of blocks of output channels first, then ranges of
#: positions (each range one more partial sum of the whole weight gradient to add; 4 per thread made the 4x4-map
#: ResNet layer's additions 1.4 ms, as long as half its kernel).
GW_ITEMS_PER_THREAD = 2
#: Blocks of output channels per grad-weight work item where the tile reads a packed input panel (AVX2's 16x6),
#: all of them reading the one panel: measured on 2 cores, simplecnn's 32x32-input layer (8 blocks) 2 blocks per
#: item 1.18-1.26x faster than the panel-free kernel, 4 blocks 1.29-1.41x, 8 blocks 1.40-1.42x; 16 blocks no better
#: than 8 on its 16x16-input layer. The AVX-512 tiles take one block per item.
GW_SHARE = 8


def _threads() -> int:
    return numba.get_num_threads()


def use_channels_last(g, dtype) -> bool:
    """This path for geometry ``g``: float32 on an AVX-512 or AVX2 host, no groups, a small output map (or one
    whose taps read a sub-lattice of the input), enough channels."""
    unpadded_1x1 = g.KH == g.KW == 1 and not any(g.pad)
    if unpadded_1x1 and (g.stride == (1, 1) or not AVX512):
        positions, limit = g.H * g.W, POINTWISE_MAX_POSITIONS  # the input map: what the NHWC copy costs
    elif g.KH * g.KW > 1 and min(lattice_steps(g)) > 1:
        positions, limit = g.OH * g.OW, LATTICE_MAX_POSITIONS
    else:
        positions, limit = g.OH * g.OW, MAX_POSITIONS
    return ((AVX512 or AVX2) and np.dtype(dtype) == np.float32 and g.groups == 1 and positions <= limit
            and min(g.C, g.Cout) >= MIN_CHANNELS)


def host_widths() -> tuple[int, ...]:
    return AVX512_WIDTHS if AVX512 else AVX2_WIDTHS


def tile_width(channels: int, widths: tuple[int, ...] | None = None) -> int:
    """The tile width (of ``widths``, else this host's) that pads ``channels`` least (ties: the wider tile, fewer
    weight loads per FMA)."""
    return min(widths or host_widths(), key=lambda w: (-(-channels // w) * w, -w))


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _whole_tiles(xoff: np.ndarray, ooff: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Read and write offsets padded to a multiple of the tile's ``count`` with copies of the last position: a
    dummy computes exactly what that position computes (same inputs, weights and order) and stores it in the same
    place, inside the same tile, so the output needs no scratch row and may be the caller's own array."""
    extra = _round_up(len(xoff), count) - len(xoff)
    if not extra:
        return xoff, ooff
    return (np.concatenate([xoff, np.full(extra, xoff[-1], np.int64)]),
            np.concatenate([ooff, np.full(extra, ooff[-1], np.int64)]))


@dataclass(frozen=True)
class _Gemm:
    """One GEMM's positions: where each reads (``xoff``) and writes (``ooff``), padded to whole tiles, and its
    taps' offsets and indices."""

    xoff: np.ndarray
    ooff: np.ndarray
    toff: np.ndarray
    taps: np.ndarray  # kh * KW + kw of each tap, to pack its weights


@dataclass(frozen=True)
class Plan:
    """Everything the three passes derive from the shapes alone, built once per geometry (a network asks for the
    same few on every step; building them per call cost ~0.15 ms of Python per layer, more than the GEMMs of
    MobileNet's 2x2-map layers)."""

    Wo: int  # forward tile width (output channels per tile)
    Cop: int  # output channels padded to Wo
    Cp: int  # channels per pixel of the NHWC input: C padded to the grad-weight tile
    uh: int  # lattice steps of the NHWC input: it holds every uh-th row and uw-th column of the padded input,
    uw: int  # the only ones a tap reads (a stride that is a multiple of the dilation, or a 1x1 kernel)
    Hp: int  # rows and columns of that lattice
    Wp: int
    xoff: np.ndarray  # (N*OH*OW,) offset of each output position's receptive field in the NHWC input
    toff: np.ndarray  # (KH*KW,) offset of each tap
    fwd: _Gemm
    top: int  # zero border of the NHWC output gradient, wide enough for every tap of grad-input
    left: int
    Hg: int
    Wg: int
    gyoff: np.ndarray  # (N*OH*OW,) offset of each output position in the bordered output gradient
    Wi: int  # grad-input tile width (input channels per tile)
    Cip: int
    phases: tuple[_Gemm, ...]  # grad-input, one GEMM per input phase some tap reaches
    untouched: tuple[tuple[int, int], ...]  # (ih0, iw0) of the phases no tap reaches: their gradient is zero
    zero_out: np.ndarray  # (Cop,) zero bias of the forward without one (read-only use)
    zero_in: np.ndarray  # (Cip,) zero bias of grad-input


def lattice_step(k: int, stride: int, dilation: int) -> int:
    """Every input row (column) a tap reads in padded coordinates, ``o*stride + i*dilation``, is a multiple of
    this: the stride for a 1x1 kernel, else the greatest common divisor of stride and dilation."""
    return stride if k == 1 else math.gcd(stride, dilation)


def lattice_steps(g) -> tuple[int, int]:
    return lattice_step(g.KH, g.stride[0], g.dilation[0]), lattice_step(g.KW, g.stride[1], g.dilation[1])


def plan(g) -> Plan:
    return _plan(g.N, g.C, g.H, g.W, g.Cout, g.KH, g.KW, g.stride, g.pad, g.dilation, host_widths())


@functools.lru_cache(maxsize=256)
def _plan(N, C, H, W, Cout, KH, KW, stride, pad, dilation, widths) -> Plan:
    sh, sw = stride
    dh, dw = dilation
    pt, pb, pl, pr = pad
    OH = (H + pt + pb - dh * (KH - 1) - 1) // sh + 1
    OW = (W + pl + pr - dw * (KW - 1) - 1) // sw + 1
    Wo = tile_width(Cout, widths)
    Cop = _round_up(Cout, Wo)
    Cp = _round_up(C, TILES[Wo][0])
    uh, uw = lattice_step(KH, sh, dh), lattice_step(KW, sw, dw)
    Hp, Wp = -(-(H + pt + pb) // uh), -(-(W + pl + pr) // uw)
    n, oh, ow = np.meshgrid(np.arange(N), np.arange(OH), np.arange(OW), indexing="ij")
    xoff = (((n * Hp + oh * (sh // uh)) * Wp + ow * (sw // uw)) * Cp).reshape(-1).astype(np.int64)
    kh, kw = np.meshgrid(np.arange(KH), np.arange(KW), indexing="ij")
    toff = ((kh * (dh // uh) * Wp + kw * (dw // uw)) * Cp).reshape(-1).astype(np.int64)
    count = TILES[Wo][0]
    rows = len(xoff)
    fwd = _Gemm(*_whole_tiles(xoff, np.arange(rows, dtype=np.int64) * Cop, count), toff,
                np.arange(KH * KW, dtype=np.int64))
    top, left = (KH - 1) * dh // sh, (KW - 1) * dw // sw
    Hg = OH + top + max(0, (H - 1 + pt) // sh - (OH - 1))
    Wg = OW + left + max(0, (W - 1 + pl) // sw - (OW - 1))
    gyoff = (((n * Hg + oh + top) * Wg + ow + left) * Cop).reshape(-1).astype(np.int64)
    Wi = tile_width(C, widths)
    Cip = _round_up(C, Wi)
    phases, untouched = [], []
    nn = np.arange(N)[:, None, None]
    for rh in range(sh):
        ih0 = (rh - pt) % sh
        khs = [k for k in range(KH) if k * dh % sh == rh]
        for rw in range(sw):
            iw0 = (rw - pl) % sw
            if ih0 >= H or iw0 >= W:
                continue
            kws = [k for k in range(KW) if k * dw % sw == rw]
            if not khs or not kws:
                untouched.append((ih0, iw0))
                continue
            ih = np.arange(ih0, H, sh)[None, :, None]
            iw = np.arange(iw0, W, sw)[None, None, :]
            qh = (ih + pt - rh) // sh + top
            qw = (iw + pl - rw) // sw + left
            pxoff = (((nn * Hg + qh) * Wg + qw) * Cop).reshape(-1).astype(np.int64)
            pooff = (((nn * H + ih) * W + iw) * Cip).reshape(-1).astype(np.int64)
            taps = [(a, b) for a in khs for b in kws]
            ptoff = np.array([-((a * dh - rh) // sh * Wg + (b * dw - rw) // sw) * Cop for a, b in taps], np.int64)
            ci = TILES[Wi][0]
            phases.append(_Gemm(*_whole_tiles(pxoff, pooff, ci), ptoff,
                                np.array([a * KW + b for a, b in taps], np.int64)))
    return Plan(Wo, Cop, Cp, uh, uw, Hp, Wp, xoff, toff, fwd, top, left, Hg, Wg, gyoff, Wi, Cip, tuple(phases),
                tuple(untouched), np.zeros(Cop, np.float32), np.zeros(Cip, np.float32))


@dataclass
class ClInput:
    """The forward's padded NHWC input and the geometry's plan, kept for the backward."""

    xp: np.ndarray  # (N, Hp, Wp, Cp): pooled (the owner hands it back), or the caller's NHWC input itself
    plan: Plan
    grad_out: tuple | None = None  # (gy, its NHWC form) left by grad_input for grad_weight of the same gy


def _in_place(a: np.ndarray, Hp: int, Wp: int, Cp: int, steps: tuple[int, int] = (1, 1)) -> bool:
    """An NHWC array that already is the padded buffer a GEMM reads (no border, no lattice, channels filling the
    tile)."""
    return steps == (1, 1) and a.shape[1:] == (Hp, Wp, Cp)


def packs_inside(positions: int, blocks: int) -> bool:
    """Whether a GEMM of ``blocks`` blocks of lanes over ``positions`` positions packs its weights inside."""
    return positions <= PACK_INSIDE_POSITIONS and blocks >= PACK_INSIDE_BLOCKS_PER_THREAD * _threads()


def _run_gemm(W, src, gm: _Gemm, C, w3, by_input: bool, shape: tuple, bias, o) -> None:
    """The forward GEMM of tile width W over the positions of ``gm`` into ``o``, its weights taken from
    w3 = w.reshape(Cout, Cin, KH*KW) for the taps ``gm.taps`` (lanes: input channels when ``by_input``), packed
    first into a (blocks, taps, C, W) buffer of ``shape`` or, for small maps, inside the GEMM."""
    if packs_inside(len(gm.xoff), shape[0]):
        PACKING[W](src, gm.xoff, gm.toff, C, w3, gm.taps, by_input, bias, o, gm.ooff, KC)
        return
    wp = _nhwc.pack_cl(w3, gm.taps, POOL.take(shape, np.float32), by_input)
    TILES[W][1](src, gm.xoff, gm.toff, C, wp.reshape(-1), bias, o, gm.ooff, KC, PT)
    POOL.give(wp)


def _to_padded(a: np.ndarray, buf: np.ndarray, top: int, left: int, nhwc: bool,
               steps: tuple[int, int] = (1, 1)) -> np.ndarray:
    """``a`` (NCHW, or NHWC when ``nhwc``) into the zero-bordered channels-last ``buf``: the lattice of every
    ``steps``-th row and column of the bordered map."""
    return (_nhwc.pad_nhwc if nhwc else _nhwc.to_nhwc)(a, buf, top, left, *steps)


def _write_out(o: np.ndarray, out: np.ndarray, nhwc: bool) -> None:
    """A GEMM's (N, H, W, padded channels) result into the caller's NCHW or NHWC ``out``."""
    (_nhwc.strip_nhwc if nhwc else _nhwc.from_nhwc)(o, out, 0, 0)


def forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g, out: np.ndarray, x_nhwc: bool = False,
            out_nhwc: bool = False) -> ClInput:
    """out = conv2d(x, w, b); x and out are NCHW arrays, or NHWC (N, H, W, C) ones with ``x_nhwc`` /
    ``out_nhwc`` (a channels_last tensor's memory: then the input copy is plain rows, and an output whose channel
    count fills whole tiles is written by the GEMM itself). Returns what the backward needs (the caller gives
    ``xp`` back)."""
    pl_ = plan(g)
    Wo, Cop = pl_.Wo, pl_.Cop
    steps = (pl_.uh, pl_.uw)
    if x_nhwc and _in_place(x, pl_.Hp, pl_.Wp, pl_.Cp, steps):
        xp = x  # kept for grad-weight as it is: the caller saves the tensor (and so sees any in-place change)
    else:
        xp = _to_padded(x, POOL.take((g.N, pl_.Hp, pl_.Wp, pl_.Cp), np.float32), g.pad[0], g.pad[2], x_nhwc,
                        steps)
    if b is None:
        bias = pl_.zero_out
    else:
        bias = np.zeros(Cop, np.float32)
        bias[:g.Cout] = b
    w3 = w.reshape(g.Cout, g.C, -1)
    shape = (Cop // Wo, len(pl_.fwd.taps), g.C, Wo)
    if out_nhwc and Cop == g.Cout:
        _run_gemm(Wo, xp.reshape(-1), pl_.fwd, g.C, w3, False, shape, bias, out.reshape(-1))
    else:
        o = POOL.take((g.N, g.OH, g.OW, Cop), np.float32)
        _run_gemm(Wo, xp.reshape(-1), pl_.fwd, g.C, w3, False, shape, bias, o.reshape(-1))
        _write_out(o, out, out_nhwc)
        POOL.give(o)
    return ClInput(xp, pl_)


def _grad_out(gy: np.ndarray, g, pl_: Plan, nhwc: bool) -> np.ndarray:
    """The output gradient in NHWC, zero-bordered and its channels padded to Cop: a pooled copy, or an NHWC gy
    itself where it needs neither (1x1 stride-1 layers whose channels fill the tiles)."""
    if nhwc and _in_place(gy, pl_.Hg, pl_.Wg, pl_.Cop):
        return gy
    return _to_padded(gy, POOL.take((g.N, pl_.Hg, pl_.Wg, pl_.Cop), np.float32), pl_.top, pl_.left, nhwc)


def _give(a: np.ndarray, caller: np.ndarray) -> None:
    if a is not caller:
        POOL.give(a)


def grad_input(gy: np.ndarray, w: np.ndarray, g, out: np.ndarray, keep: ClInput | None = None,
               gy_nhwc: bool = False, out_nhwc: bool = False) -> np.ndarray:
    """out = dL/dx: per input phase, the GEMM on the bordered output gradient with that phase's taps (layouts as
    in ``forward``). With ``keep`` (the forward's ClInput) the NHWC output gradient is left there for
    grad_weight."""
    pl_ = plan(g)
    gp = _grad_out(gy, g, pl_, gy_nhwc)
    Wi, Cip = pl_.Wi, pl_.Cip
    direct = out_nhwc and Cip == g.C
    ov = out if direct else POOL.take((g.N, g.H, g.W, Cip), np.float32)
    sh, sw = g.stride
    for ih0, iw0 in pl_.untouched:
        ov[:, ih0::sh, iw0::sw] = 0
    w3 = w.reshape(g.Cout, g.C, -1)
    for gm in pl_.phases:
        _run_gemm(Wi, gp.reshape(-1), gm, g.Cout, w3, True, (Cip // Wi, len(gm.taps), g.Cout, Wi), pl_.zero_in,
                  ov.reshape(-1))
    if not direct:
        _write_out(ov, out, out_nhwc)
        POOL.give(ov)
    if keep is None:
        _give(gp, gy)
    else:
        keep.grad_out = (gy, gp)
    return out


def gw_items(blocks: int, positions: int, width: int) -> tuple[int, int]:
    """How grad-weight splits its work: (ranges of positions, blocks of output channels per work item). With one
    range (too few positions to split), the panel kernels' blocks are dealt into a multiple of the threads' number
    of even groups where there are enough blocks (MobileNet's 96 -> 576 1x1 layer on 4x4 maps: 36 blocks as 6 x 6
    rather than 4 x 8 + 4, forward + grad-weight 0.94x the time; 9 blocks as 5 + 4, not 8 + 1)."""
    panel = width in K.CL_GW_PANEL_WIDTHS
    share = min(blocks, GW_SHARE) if panel else 1
    groups = -(-blocks // share)
    threads = _threads()
    ranges = max(1, min(positions // GW_MIN_RANGE, -(-GW_ITEMS_PER_THREAD * threads // groups)))
    if panel and ranges == 1:
        share = -(-blocks // min(blocks, -(-groups // threads) * threads))
    return ranges, share


def grad_weight(gy: np.ndarray, saved: ClInput, g, gy_nhwc: bool = False) -> np.ndarray:
    """dL/dw (float32, (Cout, C, KH, KW)) from the output gradient (NCHW, or NHWC with ``gy_nhwc``) and the
    forward's NHWC input."""
    pl_ = saved.plan
    kept, saved.grad_out = saved.grad_out, None
    gp = kept[1] if kept is not None and kept[0] is gy else _grad_out(gy, g, pl_, gy_nhwc)
    P = len(pl_.gyoff)
    T = len(pl_.toff)
    ranges, share = gw_items(pl_.Cop // pl_.Wo, P, pl_.Wo)
    part = POOL.take((ranges, T * pl_.Cp * pl_.Cop), np.float32)
    TILES[pl_.Wo][2](saved.xp.reshape(-1), pl_.xoff, pl_.toff, pl_.Cp, gp.reshape(-1), pl_.gyoff, part, PC, share)
    dw = np.empty((g.Cout, g.C, T), np.float32)
    _nhwc.sum_cl_parts(part.reshape(ranges, T, pl_.Cp, pl_.Cop), dw)
    POOL.give(part)
    _give(gp, gy)
    return dw.reshape(g.Cout, g.C, g.KH, g.KW)
