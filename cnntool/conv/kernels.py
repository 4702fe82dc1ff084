"""NumPy-level 2-D convolution on top of the Numba kernels in ``_kernels.py``: forward, grad-input, grad-weight,
grad-bias. Arrays in, arrays out; validation and torch live in ``function.py``.

How a convolution becomes unit-stride reads (the trick every kernel relies on):

* The input is zero-padded and split by the stride into phase planes (space-to-depth): the padded row
  ``ih = oh*sh + kh*dh`` lies in phase ``rh = kh*dh % sh`` at phase row ``oh + kh*dh // sh``. Only the phases
  some tap actually reads are materialised (stride 2 + dilation 2 reads a single one).
* Each (input channel, kh, kw) is a "generalised tap" with a flat read offset ``toff[k]``; outputs are computed
  on wide rows of the phase width ``Wq``, so for every tap the inner loop is one contiguous run over
  ``p = oh*Wq + ow``. One compiled kernel serves every kernel size, stride and dilation.
* grad-input is the same forward kernel run per input phase on the zero-padded output gradient with the
  transposed, flipped tap set; grad-weight is a blocked dot product over the same layout.

Depthwise convolutions have their own paths (``use_depthwise*``, ``use_nhwc_depthwise``): the row kernels with the
padding fused per plane on larger maps, and channels-last kernels (``_nhwc.py``) on maps of at most 8x8. Dense
float32 convolutions with small outputs (at most 16x16; larger where the taps read a sub-lattice of the input) run
as channels-last GEMMs on AVX-512 and AVX2 hosts (``channels_last.py``); a 1x1 kernel on a 1x1 map is a matrix
product (``_dense.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from cnntool.conv import _dense
from cnntool.conv import _kernels as K
from cnntool.conv import _nhwc
from cnntool.conv import channels_last as CL
from cnntool.conv._numba_setup import AVX2, AVX512
from cnntool.conv._pool import POOL

#: Target number of wide-row positions per forward work item (keeps the accumulator block in L1).
_FWD_POSITIONS = 1024
#: Input bytes one forward work item may read (its rows of every plane its taps read): they stay in the core's L2
#: while every block of output channels reuses them (measured: ResNet-18's 4x4-map layer, im2col, 1.2-1.6x faster
#: forward than with one work item of all 512 positions, whose 4.7 MB every block streamed from L3).
FWD_L2_BYTES = 1 << 20
#: ...but at least this many positions per work item (two register tiles and a tail).
_FWD_MIN_POSITIONS = 112
#: Positions per chunk in the grad-weight dot products.
_GW_CHUNK = 1024




#: Below this many flops a call runs on one thread: waking the pool costs more than it saves (and much more
#: when the cores are busy with other work). Memory-bound layers gain from a second core well below the point
#: where their arithmetic would (measured: MobileNet-v2's 4x4-map depthwise layers, 3.5 MFLOP, forward + backward
#: 2.4 -> 1.4 ms when 4 MFLOP was the threshold).
SERIAL_FLOPS = 400_000


def set_threads(n: int | None = None, flops: int | None = None) -> int:
    """Use ``n`` threads in Numba (default: torch's thread count), capped at Numba's pool size; returns it.

    With ``flops`` below :data:`SERIAL_FLOPS` one thread is used for this call.
    """
    import numba

    if flops is not None and flops < SERIAL_FLOPS:
        n = 1

    if n is None:
        try:
            import torch

            n = torch.get_num_threads()
        except ImportError:  # pragma: no cover - torch is a dependency
            n = numba.config.NUMBA_NUM_THREADS
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


def _threads() -> int:
    import numba

    return numba.get_num_threads()


@dataclass
class Geometry:
    """Everything derived from the shapes and hyper-parameters of one convolution."""

    N: int
    C: int
    H: int
    W: int
    Cout: int
    Cg: int
    KH: int
    KW: int
    groups: int
    stride: tuple[int, int]
    pad: tuple[int, int, int, int]  # top, bottom, left, right
    dilation: tuple[int, int]
    OH: int
    OW: int

    @property
    def CoutG(self) -> int:
        return self.Cout // self.groups

    @classmethod
    def make(cls, xshape, wshape, stride, pad, dilation, groups) -> Geometry:
        N, C, H, W = (int(v) for v in xshape)
        Cout, Cg, KH, KW = (int(v) for v in wshape)
        sh, sw = stride
        dh, dw = dilation
        pt, pb, pl, pr = pad
        OH = (H + pt + pb - dh * (KH - 1) - 1) // sh + 1
        OW = (W + pl + pr - dw * (KW - 1) - 1) // sw + 1
        return cls(N, C, H, W, Cout, Cg, KH, KW, groups, (sh, sw), (pt, pb, pl, pr), (dh, dw), OH, OW)


def _variant(cout_per_group: int, choices: tuple[int, ...]) -> int:
    """Output-channel block size: the largest that wastes little on padding channels."""
    for cob in choices:
        if cob == 1:
            return 1
        padded = -(-cout_per_group // cob) * cob
        if cout_per_group >= cob and padded <= cout_per_group * 1.13:
            return cob
    return 1


_FWD = {(8, 4): K.fwd_c8k4, (4, 4): K.fwd_c4k4, (1, 8): K.fwd_c1k8, (1, 9): K.fwd_c1k9, (1, 25): K.fwd_c1k25}
_GW = {4: K.gw_c4k4, 1: K.gw_c1k8}


def _fwd_kernel(cob: int, taps: int):
    """The forward kernel for ``cob`` output channels per block; one output channel per group (depthwise) gets
    the variant that holds all its taps (3x3 = 9, 5x5 = 25) in one pass when the tap count fits."""
    if cob == 1:
        for kb in (25, 9):
            if taps % kb == 0:
                return _FWD[(1, kb)]
        return _FWD[(1, 8)]
    return _FWD[(cob, 4)]


#: Taps per block of the register-tiled forward: its weights and the input rows it reads stay in L1 while the
#: tile walks the positions (measured on case a of ``bench_conv``, AVX-512: 144-288 taps 1.2x faster than all 1152
#: at once; AVX2: 36-288 within 5%).
TILE_TAPS = 144
#: Blocks of output channels per work item of the register-tiled forward: each tile of input rows, loaded into
#: L1 once, serves all of them (measured, AVX-512, ResNet-18 at 64x64 px: the 2x2-map layer 1.1x and the 4x4-map
#: layer 1.3x faster than with one block per item; 64 blocks slower on the 2x2 map and on case a).
TILE_BLOCKS = 16
#: The register-tiled forward kernels by (output channels, 16-lane vectors of positions); see ``register_tile``.
_TILED = {(8, 3): K.fwd_r8x3, (6, 1): K.fwd_r6x1, (4, 1): K.fwd_r4x1}
#: How much slower AVX2's 4x1 tile is than its 6x1 per computed channel (case a 75 vs 70 ms, case d 183 vs 170 ms,
#: AMD EPYC, 2 threads): 4x1 is chosen where 6x1 would pad more than that (16 or 32 channels, not 64 or 128).
_AVX2_4X1_COST = 1.07


def register_tile(dtype, cout_per_group: int) -> tuple[int, int] | None:
    """The register tile (output channels, 16-lane vectors of positions) of the float32 forward on this host, or
    None for the loop-vectorised ``fwd_c*k*`` kernels (float64, fewer than 4 channels per group, no AVX2/FMA).

    AVX-512 takes 8x3 for blocks of 8 channels. AVX2 takes 6x1 or 4x1, whichever computes fewer padded channels
    for the cost (measured on case a of ``bench_conv``: 70 and 75 ms against 86-95 ms for ``fwd_c8k4``, whose
    accumulators live in memory; 8x3 would spill there, 124 ms)."""
    if np.dtype(dtype) != np.float32:
        return None
    if AVX512:
        return (8, 3) if _variant(cout_per_group, (8, 4, 1)) == 8 else None
    if AVX2 and cout_per_group >= 4:
        six, four = -(-cout_per_group // 6) * 6, -(-cout_per_group // 4) * 4
        return (6, 1) if six < four * _AVX2_4X1_COST else (4, 1)
    return None


def channel_split(dtype, cout_per_group: int, groups: int) -> int:
    """Output channels to run on AVX2's 6x1 tile before the rest go to its 4x1 tile (0: one tile for all).

    Blocks of 6 rarely divide a channel count (128 is 21 blocks and 2 spare channels, computed and dropped, or 22
    padded blocks: 3% more work); two launches, blocks of 6 and one or two blocks of 4 (7% slower per channel),
    compute exactly the channels there are: 128 = 20 x 6 + 2 x 4, 64 = 10 x 6 + 4. Dense layers only (the
    kernels index the bias and output by ``group * cout_per_group + channel``)."""
    if groups != 1 or register_tile(dtype, cout_per_group) != (6, 1) or cout_per_group % 6 == 0:
        return 0
    best, split = -(-cout_per_group // 6) * 6, 0
    for fours in (1, 2):  # three blocks of 4 would cost more than two of 6
        sixes = max(0, -(-(cout_per_group - 4 * fours) // 6))
        cost = 6 * sixes + 4 * fours * _AVX2_4X1_COST
        if sixes and 6 * sixes < cout_per_group and cost < best:
            best, split = cost, 6 * sixes
    return split


def fold_batch(N: int, rows: int, Wq: int) -> bool:
    """Stack the batch into one tall image when one sample's output is too small to fill a work item.

    Small feature maps (ResNet's 8x8 ... 2x2 stages, late MobileNet blocks) would otherwise give inner loops of a
    few dozen positions; stacked, every loop runs over whole batches of rows.
    """
    return N > 1 and rows * Wq < _FWD_POSITIONS


#: Smallest map (positions per sample) on which a float32 pointwise convolution reads its rows in place. Measured
#: forward + backward, paired, 2 threads: 16x16 maps 0.82-0.96x the time of the folded batch, 20x20 and 28x28
#: 0.74-0.88x; 14x14 and 10x10 1.03-1.07x (their samples' rows are too short a loop for the tiles); float64's
#: loop-vectorised kernels lose at 16x16 (1.09x), so they keep the fold.
POINTWISE_INPLACE_POSITIONS = 256


def pointwise_inplace(g: Geometry, dtype) -> bool:
    """A float32 1x1 kernel at stride 1 without padding on maps of at least ``POINTWISE_INPLACE_POSITIONS``: every
    pass reads the input and the output gradient as they are, one sample's channel rows at a time, instead of
    folding the batch into one tall image first (a full copy of each, for loops that are long enough without it)."""
    return (np.dtype(dtype) == np.float32 and g.KH == g.KW == 1 and g.stride == (1, 1) and not any(g.pad)
            and g.OH * g.OW >= POINTWISE_INPLACE_POSITIONS)


def _run_fwd(src, toff, wmat, bias, out_flat, *, Cgs, Wq, OH, OW, Pn, CoutG, groups, N,
             strides, ooff, planes, Hs=None, OHv=None) -> None:
    """wmat: (groups, CoutG, Ktaps). Pads output channels to the block size and runs the forward kernel.

    ``OH`` rows are computed (all samples' rows when the batch is folded: then ``Hs`` rows per sample, the first
    ``OHv`` of them kept); ``N`` is the number of rows of ``src``; ``planes`` is how many planes of ``Wq``-wide
    rows the taps read (input channels x phases, or one per tap for im2col): it sizes the work items for L2.
    """
    split = channel_split(src.dtype, CoutG, groups)
    if split:  # two launches, each on whole tiles (``channel_split``)
        kw = dict(Cgs=Cgs, Wq=Wq, OH=OH, OW=OW, Pn=Pn, groups=groups, N=N, strides=strides, planes=planes, Hs=Hs,
                  OHv=OHv)
        _run_fwd(src, toff, wmat[:, :split], bias[:split], out_flat, CoutG=split, ooff=ooff, **kw)
        _run_fwd(src, toff, wmat[:, split:], bias[split:], out_flat, CoutG=CoutG - split,
                 ooff=ooff + split * strides[1], **kw)
        return
    tile = register_tile(src.dtype, CoutG)
    cob = tile[0] if tile else _variant(CoutG, (8, 4, 1))
    ncob = -(-CoutG // cob)
    tiled = tile is not None
    if tiled:
        wt = K.pack_tiles(np.ascontiguousarray(wmat), POOL.take((groups, ncob, wmat.shape[2], cob), src.dtype))
    elif ncob * cob == CoutG and wmat.flags.c_contiguous:
        wt = wmat
    else:
        wt = np.zeros((groups, ncob * cob, wmat.shape[2]), dtype=src.dtype)
        wt[:, :CoutG] = wmat
    # rows per work item: ~_FWD_POSITIONS positions, but enough items to keep every thread busy
    nch = max(1, min(OH, round(OH * Wq / _FWD_POSITIONS)))
    fit = max(FWD_L2_BYTES // (planes * Wq * src.itemsize), -(-_FWD_MIN_POSITIONS // Wq))
    nch = min(OH, max(nch, -(-OH // fit)))
    want = 4 * _threads()
    cbg = min(ncob, TILE_BLOCKS) if tiled else 1  # channel blocks per work item
    items = -(-ncob // cbg)
    while nch < OH and N * groups * items * nch < want:
        nch += 1
    R = -(-OH // nch)  # rows per item, items as even as possible
    osn, osc, osh, osw = strides
    Hs = OH if Hs is None else Hs
    OHv = OH if OHv is None else OHv
    args = (src, toff, wt, bias, out_flat, Cgs, Wq, OH, OW, R, Pn, CoutG, osn, osc, osh, osw, ooff, Hs, OHv)
    if tiled:
        _TILED[tile](*args, TILE_TAPS, cbg)
        POOL.give(wt)
    else:
        _fwd_kernel(cob, wmat.shape[2])(*args)


@dataclass
class Saved:
    """What the backward pass needs from the forward: the phase-split input and its tap offsets."""

    geo: Geometry
    xs: np.ndarray | None  # (N, L), or (1, L) when the batch is folded into one tall image
    toff: np.ndarray | None
    Wq: int
    Cgs: int
    folded: bool = False
    Hq: int = 0  # rows per sample of the phase planes
    x: np.ndarray | None = None  # the input itself when the forward did not build ``xs`` (fused depthwise)
    xn: np.ndarray | None = None  # the channels-last input (unpadded) of the small-map depthwise path
    gyn: tuple | None = None  # (gy, its NHWC form, pooled?) left by that path's grad_input for grad_weight
    planes: int = 1  # planes of Wq-wide rows the taps read (channels x phases; one per tap for im2col)
    cl: CL.ClInput | None = None  # the channels-last path's NHWC input
    nhwc: bool = False  # the path computes in channels-last layout: its output is channels_last (function.py)
    x_nhwc: bool = False  # ...and so was its input (then so is the input gradient)


def plane_stride(n: int) -> int:
    """Elements between two folded planes of ``n`` elements: an odd number of 16-element (64-byte) cache lines.
    A power-of-two stride maps the same row of every plane to the same cache sets: im2col rows of 512 positions
    (ResNet-18's 4x4 maps, batch 32) made the forward 1.6x slower, 144 taps' rows fighting over 8 sets of L1."""
    lines = -(-n // 16)
    return 16 * (lines + 1 - lines % 2)


def _gather_into(src: np.ndarray, shape5: tuple[int, int, int, int, int], phr, phc, sh, sw, pt, pl,
                 folded: bool) -> np.ndarray:
    """Zero-padded phase planes of ``src`` (N, C, H, W) in a pooled buffer: (N, C, nph, Hq, Wq), or with the batch
    folded (C, nph, S), one channel's samples one after another as one tall image of N*Hq rows, the planes
    ``S = plane_stride(N*Hq*Wq)`` apart."""
    N, C, nph, Hq, Wq = shape5
    if folded:
        buf = POOL.take((C, nph, plane_stride(N * Hq * Wq)), src.dtype)
        K.gather_folded(src, buf, phr, phc, sh, sw, pt, pl, Hq, Wq)
    else:
        buf = POOL.take(shape5, src.dtype)
        K.gather(src, buf, phr, phc, sh, sw, pt, pl)
    return buf


_ZERO_PHASE = np.zeros(1, np.int64)


#: Largest im2col buffer (bytes); above it small maps keep the folded phase planes (KH*KW times less memory).
IM2COL_MAX_BYTES = 256 << 20


def use_im2col(folded: bool, cout_per_group: int, nbytes: int = 0, useful: int = 0, computed: int = 1) -> bool:
    """Small maps with enough output channels per group: gather every tap into its own row (im2col) so that no
    position of the padded/wide layout is computed and dropped (a 2x2 map padded to 4x4 would waste 75%). The
    copy costs KH*KW times the input (``nbytes``) in many short rows, so it pays only where the phase planes would
    drop most of what they compute (``useful`` under half of ``computed`` per sample: 4x4 and 2x2 maps with
    padding 1; measured: an 8x8 map (64 of 100 useful) is 1.6x faster without it, a 2x2 map 1.1x faster with it)."""
    return folded and cout_per_group >= 8 and nbytes <= IM2COL_MAX_BYTES and 2 * useful < computed


@dataclass
class _Phases:
    """Where each tap reads in the phase planes: tap (kh, kw) reads phase ``idx[kh, kw]`` (an index into
    ``rows``/``cols``, the phases some tap reads) at row offset ``ah[kh]`` and column offset ``aw[kw]``."""

    rows: np.ndarray
    cols: np.ndarray
    idx: np.ndarray  # (KH, KW)
    ah: np.ndarray
    aw: np.ndarray
    Hq: int
    Wq: int

    def taps(self, plane: int) -> np.ndarray:
        """Flat offset of each tap inside one channel's block of phase planes, ``plane`` elements apart."""
        return self.idx * plane + self.ah[:, None] * self.Wq + self.aw[None, :]


def _phases(g: Geometry) -> _Phases:
    """The phase plan of a geometry; cached, as a network asks for the same few geometries on every step."""
    return _phase_plan(g.KH, g.KW, g.stride, g.dilation, g.OH, g.OW)


@functools.lru_cache(maxsize=512)
def _phase_plan(KH: int, KW: int, stride: tuple[int, int], dilation: tuple[int, int], OH: int, OW: int) -> _Phases:
    sh, sw = stride
    dh, dw = dilation
    kh = np.arange(KH)
    kw = np.arange(KW)
    ah, rh = kh * dh // sh, kh * dh % sh
    aw, rw = kw * dw // sw, kw * dw % sw
    phases = sorted({(int(a), int(b)) for a in rh for b in rw})
    index = {ph: i for i, ph in enumerate(phases)}
    idx = np.array([[index[(int(a), int(b))] for b in rw] for a in rh], dtype=np.int64)
    return _Phases(np.array([p[0] for p in phases], np.int64), np.array([p[1] for p in phases], np.int64), idx,
                   ah, aw, OH + int(ah.max()), OW + int(aw.max()))


def _prepare_input(x: np.ndarray, g: Geometry) -> Saved:
    sh, sw = g.stride
    dh, dw = g.dilation
    pt, pb, pl, pr = g.pad
    kh = np.arange(g.KH)
    kw = np.arange(g.KW)
    ph = _phases(g)
    Hq, Wq = ph.Hq, ph.Wq
    folded = fold_batch(g.N, g.OH, Wq) and not pointwise_inplace(g, x.dtype)
    col_bytes = g.N * g.C * g.KH * g.KW * g.OH * g.OW * x.itemsize
    if use_im2col(folded, g.CoutG, col_bytes, g.OH * g.OW, Hq * Wq):
        # rows (ci, kh, kw), each the batch's N*OH*OW positions: toff[k] = k * N*OH*OW
        taps = [(int(a), int(b)) for a in kh * dh for b in kw * dw]
        phr = np.array([t[0] for t in taps], np.int64)
        phc = np.array([t[1] for t in taps], np.int64)
        buf = _gather_into(x, (g.N, g.C, len(taps), g.OH, g.OW), phr, phc, sh, sw, pt, pl, True)
        S = buf.shape[2]
        toff = np.arange(g.Cg * len(taps), dtype=np.int64) * S
        saved = Saved(g, buf.reshape(1, -1), toff, g.OW, g.Cg * len(taps) * S, True, g.OH, planes=len(toff))
        POOL.give_on_death(saved, buf)
        return saved
    buf = None
    if not folded and sh == sw == 1 and pt == pl == 0 and Hq == g.H and Wq == g.W:
        xs = x.reshape(g.N, -1)  # no padding or stride: read the input in place
    else:
        buf = _gather_into(x, (g.N, g.C, len(ph.rows), Hq, Wq), ph.rows, ph.cols, sh, sw, pt, pl, folded)
        xs = buf.reshape(1 if folded else g.N, -1)
    pstride = buf.shape[2] if folded else Hq * Wq  # one phase plane (all samples when folded)
    cstride = len(ph.rows) * pstride
    tap = ph.taps(pstride)
    toff = (np.arange(g.Cg, dtype=np.int64)[:, None, None] * cstride + tap[None]).reshape(-1)
    saved = Saved(g, xs, toff, Wq, g.Cg * cstride, folded, Hq, planes=g.Cg * len(ph.rows))
    if buf is not None:
        POOL.give_on_death(saved, buf)
    return saved


_DW_FWD = {9: K.dw_fwd_t9, 25: K.dw_fwd_t25}
_DW_ROWS = {(3, 1): K.dw_rows_k3s1, (5, 1): K.dw_rows_k5s1, (3, 2): K.dw_rows_k3s2, (5, 2): K.dw_rows_k5s2}
_DW_GW = {(3, 1): K.dw_gw_k3s1, (5, 1): K.dw_gw_k5s1, (3, 2): K.dw_gw_k3s2, (5, 2): K.dw_gw_k5s2}
#: Smallest output map (positions per plane) for the fused depthwise paths; below it the batch-folded phase planes
#: win (a 4x4 plane is too short a loop to amortise the per-plane work).
DW_MIN_POSITIONS = 36


def _one_channel_groups(g: Geometry) -> bool:
    return g.Cg == 1 and g.groups == g.C


def use_depthwise(g: Geometry) -> bool:
    """One input channel per group, a 3x3/5x5 kernel and maps of at least ``DW_MIN_POSITIONS``: the forward with
    the padding fused into each plane (``dw_rows_k*s*`` where they apply, else ``dw_fwd_t*``), no padded copy of
    the whole input."""
    return _one_channel_groups(g) and g.KH * g.KW in _DW_FWD and g.OH * g.OW >= DW_MIN_POSITIONS


_DW_VROWS = {3: K.dw_vrows_k3, 5: K.dw_vrows_k5}


def _dw_rows_kernel(k: int, stride: int, dtype):
    """The row kernel of a k x k depthwise convolution at ``stride``: at stride 1 in float32 on an AVX2 host the
    register-tiled ``dw_vrows_k*`` (LLVM's vectorised loops spill the 5x5 two-row kernel's 25 weights and 30 input
    vectors there; measured forward, paired: 4x128x64x64 5x5 0.78x the time of ``dw_rows_k5s1``, 3x3 on 32x32 and
    16x16 maps 0.86-0.92x, on 64x64 1.03x), else ``dw_rows_k*s*`` (the AVX-512 host keeps what was measured there)."""
    if stride == 1 and AVX2 and not AVX512 and np.dtype(dtype) == np.float32:
        return _DW_VROWS[k]
    return _DW_ROWS[k, stride]


def use_depthwise_rows(g: Geometry) -> bool:
    """The square, dilation-1 depthwise kernels of ``dw_rows_k*s*`` apply (the forward at stride 1 and 2, and
    grad-input when there is one output channel per input channel)."""
    sh, sw = g.stride
    return (use_depthwise(g) and g.KH == g.KW and sh == sw and (g.KH, sh) in _DW_ROWS and g.dilation == (1, 1))


def _rows_backward(g: Geometry) -> bool:
    """grad-input and grad-weight by the row kernels: their geometry, one output channel per input channel."""
    return use_depthwise_rows(g) and g.Cout == g.C


def _depthwise_chunks(g: Geometry) -> int:
    return min(g.N * g.C, 8 * _threads())


def depthwise_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Geometry, out: np.ndarray) -> None:
    bias = np.zeros(g.Cout, dtype=x.dtype) if b is None else b
    if use_depthwise_rows(g):
        _dw_rows_kernel(g.KH, g.stride[0], x.dtype)(x, w.reshape(g.Cout, -1), bias, out, g.pad[0], g.pad[2], 1,
                                                    _depthwise_chunks(g))
        return
    ph = _phases(g)  # the phase planes of one padded channel, built per plane inside the kernel
    toff = ph.taps(ph.Hq * ph.Wq).reshape(-1)
    sh, sw = g.stride
    _DW_FWD[g.KH * g.KW](x, w.reshape(g.Cout, -1), bias, out, toff, ph.rows, ph.cols, ph.Hq, ph.Wq, sh, sw,
                         g.pad[0], g.pad[2], _depthwise_chunks(g))


def depthwise_grad_input(gy: np.ndarray, w: np.ndarray, g: Geometry, out: np.ndarray) -> None:
    """dL/dx of a depthwise convolution with one output channel per input channel (row-kernel geometry): the
    stride-1 row kernel on the output gradient, upsampled by the stride (a transposed convolution), with the kernel
    flipped and the complementary padding (``k - 1 - pad``). At stride 2 three quarters of its products are with
    zeros, and it is still 4x faster than the per-phase general path (measured on 32x32 maps)."""
    k = g.KH
    wf = np.ascontiguousarray(w.reshape(g.C, k, k)[:, ::-1, ::-1]).reshape(g.C, -1)
    inv = Geometry(g.N, g.C, g.OH, g.OW, g.C, 1, k, k, g.C, (1, 1), (0, 0, 0, 0), (1, 1), g.H, g.W)
    _dw_rows_kernel(k, 1, gy.dtype)(gy, wf, np.zeros(g.C, dtype=gy.dtype), out, k - 1 - g.pad[0],
                                    k - 1 - g.pad[2], g.stride[0], _depthwise_chunks(inv))


def depthwise_grad_weight(gy: np.ndarray, x: np.ndarray, g: Geometry) -> np.ndarray:
    """dL/dw of a depthwise convolution with one output channel per input channel (row-kernel geometry): every
    tap's sum over a plane in one pass (``dw_gw_k*s*``), the planes' sums added in float64."""
    part = np.empty((g.N, g.C, g.KH * g.KW), dtype=np.float64)
    _DW_GW[g.KH, g.stride[0]](x, gy, part, g.pad[0], g.pad[2], gy.dtype.type(0), _depthwise_chunks(g))
    return part.sum(axis=0).reshape(g.C, 1, g.KH, g.KW)


#: Largest output map (positions per plane) for the channels-last depthwise path (``_nhwc``); above it the
#: row kernels win (measured on 2 cores, per pass: 4x4 and 2x2 maps 2.8-4.2x faster in NHWC; 8x8 even with 3x3
#: kernels, 2x faster with 5x5; 16x16 1.7x slower).
NHWC_MAX_POSITIONS = 64


def use_nhwc_depthwise(g: Geometry) -> bool:
    """Depthwise with one output channel per input channel on a small map: forward, grad-input and grad-weight
    run in channels-last layout, their inner loops over the channels."""
    return _one_channel_groups(g) and g.Cout == g.C and g.OH * g.OW <= NHWC_MAX_POSITIONS


def _nhwc_weights(w: np.ndarray, g: Geometry) -> np.ndarray:
    return np.ascontiguousarray(w.reshape(g.C, g.KH, g.KW).transpose(1, 2, 0))


def _as_nhwc(a: np.ndarray, nhwc: bool) -> tuple[np.ndarray, bool]:
    """``a`` channels-last, and whether that is a pooled copy (an NHWC ``a`` is used as it is)."""
    if nhwc:
        return a, False
    N, C, H, W = a.shape
    return _nhwc.to_nhwc(a, POOL.take((N, H, W, C), a.dtype), 0, 0, 1, 1), True


def nhwc_depthwise_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Geometry,
                           out: np.ndarray, x_nhwc: bool = False, out_nhwc: bool = False) -> Saved:
    """The kernels skip the padding instead of storing it, so a channels_last input is read in place (it is kept
    for grad-weight; ``x`` in Saved makes the caller save it)."""
    xn, pooled = _as_nhwc(x, x_nhwc)
    o = out if out_nhwc else POOL.take((g.N, g.OH, g.OW, g.C), x.dtype)
    bias = np.zeros(g.C, dtype=x.dtype) if b is None else b
    _nhwc.dw_forward(xn, _nhwc_weights(w, g), bias, o, g.pad[0], g.pad[2], *g.stride, *g.dilation)
    if not out_nhwc:
        _nhwc.from_nhwc(o, out, 0, 0)
        POOL.give(o)
    saved = Saved(g, None, None, 0, 0, x=x, xn=xn)
    if pooled:
        POOL.give_on_death(saved, xn)
    return saved


def nhwc_depthwise_grad_input(gy: np.ndarray, w: np.ndarray, g: Geometry, out: np.ndarray,
                              saved: Saved | None = None, gy_nhwc: bool = False, out_nhwc: bool = False) -> None:
    """With ``saved`` (the forward's), the NHWC output gradient is left there for grad_weight of the same gy."""
    gyn, pooled = _as_nhwc(gy, gy_nhwc)
    gxn = out if out_nhwc else POOL.take((g.N, g.H, g.W, g.C), gy.dtype)
    _nhwc.dw_grad_input(gyn, _nhwc_weights(w, g), gxn, g.pad[0], g.pad[2], *g.stride, *g.dilation)
    if not out_nhwc:
        _nhwc.from_nhwc(gxn, out, 0, 0)
        POOL.give(gxn)
    if saved is not None:
        saved.gyn = (gy, gyn, pooled)
    elif pooled:
        POOL.give(gyn)


def nhwc_depthwise_grad_weight(gy: np.ndarray, saved: Saved, gy_nhwc: bool = False) -> np.ndarray:
    g = saved.geo
    kept, saved.gyn = saved.gyn, None
    gyn, pooled = kept[1:] if kept is not None and kept[0] is gy else _as_nhwc(gy, gy_nhwc)
    part = np.empty((g.N, g.KH, g.KW, g.C), dtype=gy.dtype)
    _nhwc.dw_grad_weight(gyn, saved.xn, part, g.pad[0], g.pad[2], *g.stride, *g.dilation)
    if pooled:
        POOL.give(gyn)
    return part.sum(axis=0, dtype=np.float64).transpose(2, 0, 1).reshape(g.C, 1, g.KH, g.KW)


def use_dense(g: Geometry) -> bool:
    """A 1x1 kernel on a 1x1 map, unpadded, no groups: a matrix product (``_dense``). Its NCHW and NHWC arrays are
    the same memory, so it is on neither layout's list."""
    return g.KH == g.KW == 1 and g.H == g.W == 1 and not any(g.pad) and g.groups == 1


def channels_last_io(g: Geometry, dtype) -> bool:
    """Whether this geometry's path computes in channels-last layout, so that it takes and gives NHWC arrays
    (torch channels_last tensors) without transposing them (``x_nhwc``/``out_nhwc`` of forward, grad_input and
    grad_weight); every other path takes NCHW."""
    return not use_dense(g) and (use_nhwc_depthwise(g) or CL.use_channels_last(g, dtype))


def forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Geometry,
            out: np.ndarray | None = None, x_nhwc: bool = False, out_nhwc: bool = False) -> tuple[np.ndarray, Saved]:
    """y = conv2d(x, w, b) for C-contiguous float32/float64 arrays (NCHW; NHWC with ``x_nhwc``/``out_nhwc``
    where :func:`channels_last_io` allows); returns y and what backward needs."""
    assert not (x_nhwc or out_nhwc) or channels_last_io(g, x.dtype), "NHWC arrays on an NCHW path"
    if out is None:
        out = np.empty((g.N, g.Cout, g.OH, g.OW), dtype=x.dtype)
    if use_dense(g):
        bias = np.zeros(g.Cout, dtype=x.dtype) if b is None else b
        _dense.dense_forward(x.reshape(g.N, g.C), w.reshape(g.Cout, g.C), bias, out.reshape(g.N, g.Cout))
        return out, Saved(g, None, None, 0, 0, x=x)
    if use_nhwc_depthwise(g):
        return out, nhwc_depthwise_forward(x, w, b, g, out, x_nhwc, out_nhwc)
    if use_depthwise(g):
        depthwise_forward(x, w, b, g, out)
        return out, Saved(g, None, None, 0, 0, x=x)
    if CL.use_channels_last(g, x.dtype):
        cl = CL.forward(x, w, b, g, out, x_nhwc, out_nhwc)
        if cl.xp is x:  # read in place: the caller must save x itself
            return out, Saved(g, None, None, 0, 0, x=x, cl=cl)
        saved = Saved(g, None, None, 0, 0, cl=cl)
        POOL.give_on_death(saved, cl.xp)
        return out, saved
    saved = _prepare_input(x, g)
    bias = np.zeros(g.Cout, dtype=x.dtype) if b is None else b
    rows = (g.N - 1) * saved.Hq + g.OH if saved.folded else g.OH
    _run_fwd(saved.xs, saved.toff, w.reshape(g.groups, g.CoutG, -1), bias, out.reshape(-1),
             Cgs=saved.Cgs, Wq=saved.Wq, OH=rows, OW=g.OW, Pn=(rows - 1) * saved.Wq + g.OW, CoutG=g.CoutG,
             groups=g.groups, N=saved.xs.shape[0], strides=(g.Cout * g.OH * g.OW, g.OH * g.OW, g.OW, 1), ooff=0,
             planes=saved.planes,
             Hs=saved.Hq if saved.folded else g.OH, OHv=g.OH)
    return out, saved


def grad_input(gy: np.ndarray, w: np.ndarray, g: Geometry, out: np.ndarray | None = None,
               saved: Saved | None = None, gy_nhwc: bool = False, out_nhwc: bool = False) -> np.ndarray:
    """dL/dx for y = conv2d(x, w): the forward kernel per input phase on the padded gradient. ``saved`` (the
    forward's) lets a following ``grad_weight`` of the same ``gy`` reuse what this call derived from it.
    Layouts as in :func:`forward`."""
    assert not (gy_nhwc or out_nhwc) or channels_last_io(g, gy.dtype), "NHWC arrays on an NCHW path"
    if use_dense(g):
        if out is None:
            out = np.empty((g.N, g.C, g.H, g.W), dtype=gy.dtype)
        _dense.dense_matmul(gy.reshape(g.N, g.Cout), w.reshape(g.Cout, g.C), out.reshape(g.N, g.C))
        return out
    if use_nhwc_depthwise(g):
        if out is None:
            out = np.empty((g.N, g.C, g.H, g.W), dtype=gy.dtype)
        nhwc_depthwise_grad_input(gy, w, g, out, saved, gy_nhwc, out_nhwc)
        return out
    if _rows_backward(g):
        if out is None:
            out = np.empty((g.N, g.C, g.H, g.W), dtype=gy.dtype)
        depthwise_grad_input(gy, w, g, out)
        return out
    if CL.use_channels_last(g, gy.dtype):
        return CL.grad_input(gy, w, g, np.empty((g.N, g.C, g.H, g.W), dtype=gy.dtype) if out is None else out,
                             None if saved is None else saved.cl, gy_nhwc, out_nhwc)
    sh, sw = g.stride
    dh, dw = g.dilation
    pt, _, pl, _ = g.pad
    # per phase: first input row/col of the phase, how many, and its taps
    plans = []
    for rh in range(sh):
        qh0 = max(0, -(-(pt - rh) // sh))
        ih0 = qh0 * sh + rh - pt
        Qh = len(range(ih0, g.H, sh))
        khs = [kh for kh in range(g.KH) if kh * dh % sh == rh]
        for rw in range(sw):
            qw0 = max(0, -(-(pl - rw) // sw))
            iw0 = qw0 * sw + rw - pl
            Qw = len(range(iw0, g.W, sw))
            kws = [kw for kw in range(g.KW) if kw * dw % sw == rw]
            if Qh and Qw:
                plans.append((qh0, ih0, Qh, khs, qw0, iw0, Qw, kws))
    empty = any(not p[3] or not p[7] for p in plans)
    if out is None:
        out = (np.zeros if empty else np.empty)((g.N, g.C, g.H, g.W), dtype=gy.dtype)
    elif empty:
        out[...] = 0
    plans = [p for p in plans if p[3] and p[7]]
    if not plans:
        return out
    # rows/cols of gy that some phase reads; pad gy so that all of them exist
    rmin = min(p[0] - max(p[3]) * dh // sh for p in plans)
    rmax = max(p[0] + p[2] - 1 - min(p[3]) * dh // sh for p in plans)
    cmin = min(p[4] - max(p[7]) * dw // sw for p in plans)
    cmax = max(p[4] + p[6] - 1 - min(p[7]) * dw // sw for p in plans)
    T, L = max(0, -rmin), max(0, -cmin)
    OHp = g.OH + T + max(0, rmax - (g.OH - 1))
    Wg = g.OW + L + max(0, cmax - (g.OW - 1))
    folded = fold_batch(g.N, max(p[2] for p in plans), Wg) and not pointwise_inplace(g, gy.dtype)
    CoutG = g.CoutG
    w5 = w.reshape(g.groups, CoutG, g.Cg, g.KH, g.KW)
    bias = np.zeros(g.C, dtype=gy.dtype)
    col_bytes = max(g.N * g.Cout * len(p[3]) * len(p[7]) * p[2] * p[6] for p in plans) * gy.itemsize
    im2col = use_im2col(folded, g.Cg, col_bytes, sum(p[2] * p[6] for p in plans), len(plans) * OHp * Wg)
    gyp5 = None
    if not im2col and not folded and (OHp, Wg) == (g.OH, g.OW):  # no border to add: read the gradient in place
        gyp, cst = gy.reshape(g.N, -1), g.OH * g.OW
    elif not im2col:
        gyp5 = _gather_into(gy, (g.N, g.Cout, 1, OHp, Wg), _ZERO_PHASE, _ZERO_PHASE, 1, 1, T, L, folded)
        gyp = gyp5.reshape(1 if folded else g.N, -1)
        cst = gyp5.shape[2] if folded else OHp * Wg  # one output-gradient channel (all samples when folded)
    for qh0, ih0, Qh, khs, qw0, iw0, Qw, kws in plans:
        taps = [(kh, kw) for kh in khs for kw in kws]
        # wmat[g, ci, co*len(taps) + t] = w[g*CoutG + co, ci, kh_t, kw_t]
        wmat = np.empty((g.groups, g.Cg, CoutG * len(taps)), dtype=w.dtype)
        K.transpose_taps(w5, np.array([t[0] for t in taps], np.int64), np.array([t[1] for t in taps], np.int64), wmat)
        strides = (g.C * g.H * g.W, g.H * g.W, sh * g.W, sw)
        if im2col:  # rows (co, tap) of this phase's reads of gy, each N*Qh*Qw positions
            phr = np.array([qh0 - kh * dh // sh + T for kh, _ in taps], np.int64)
            phc = np.array([qw0 - kw * dw // sw + L for _, kw in taps], np.int64)
            col = _gather_into(gy, (g.N, g.Cout, len(taps), Qh, Qw), phr, phc, 1, 1, T, L, True)
            NP = g.N * Qh * Qw
            toff = np.arange(CoutG * len(taps), dtype=np.int64) * col.shape[2]
            _run_fwd(col.reshape(1, -1), toff, wmat, bias, out.reshape(-1), Cgs=CoutG * len(taps) * col.shape[2], Wq=Qw,
                     OH=g.N * Qh, OW=Qw, Pn=NP, CoutG=g.Cg, groups=g.groups, N=1, strides=strides,
                     ooff=ih0 * g.W + iw0, planes=len(toff), Hs=Qh, OHv=Qh)
            POOL.give(col)
            continue
        tap = np.array([(qh0 - kh * dh // sh + T) * Wg + (qw0 - kw * dw // sw + L) for kh, kw in taps],
                       dtype=np.int64)
        toff = (np.arange(CoutG, dtype=np.int64)[:, None] * cst + tap[None]).reshape(-1)
        rows = (g.N - 1) * OHp + Qh if folded else Qh
        _run_fwd(gyp, toff, wmat, bias, out.reshape(-1), Cgs=CoutG * cst, Wq=Wg, OH=rows, OW=Qw,
                 Pn=(rows - 1) * Wg + Qw, CoutG=g.Cg, groups=g.groups, N=gyp.shape[0], strides=strides,
                 ooff=ih0 * g.W + iw0, planes=CoutG, Hs=OHp if folded else Qh, OHv=Qh)
    if gyp5 is not None:
        POOL.give(gyp5)
    return out


#: The register-tiled grad-weight kernels by (output channels, taps); see ``grad_weight_tile``.
_GW_TILED = {(3, 2): K.gw_r3x2, (2, 3): K.gw_r2x3}
#: Positions per chunk of the tiled grad-weight: each chunk ends in a sum across lanes and a float64 add (measured
#: on case a, AVX2: 256 positions 96 ms, 1024 81 ms, 2048-4096 80-82 ms).
GW_TILE_CHUNK = 2048
#: How much slower AVX2's 2x3 grad-weight tile is than its 3x2 per computed channel (case a 83 vs 80 ms, d 196 vs
#: 192 ms).
_AVX2_2X3_COST = 1.03


def grad_weight_tile(dtype, cout_per_group: int) -> tuple[int, int] | None:
    """The register tile (output channels, taps) of the float32 grad-weight on an AVX2 host, or None for the
    loop-vectorised ``gw_c*k*`` kernels (whose 16 reduction chains fit AVX-512's registers but spill AVX2's:
    measured on case a of ``bench_conv``, AVX2: 3x2 80 ms, 2x3 83, 2x2 97, 4x1 99, ``gw_c4k4`` 105; torch 84)."""
    if AVX512 or not AVX2 or np.dtype(dtype) != np.float32 or cout_per_group < 2:
        return None
    three, two = -(-cout_per_group // 3) * 3, -(-cout_per_group // 2) * 2
    return (3, 2) if three < two * _AVX2_2X3_COST else (2, 3)


def grad_weight(gy: np.ndarray, saved: Saved, gy_nhwc: bool = False) -> np.ndarray:
    """dL/dw (float64) for y = conv2d(x, w), reusing the phase-split input of the forward pass (``gy`` NCHW, or
    NHWC with ``gy_nhwc`` where :func:`channels_last_io` allows)."""
    g = saved.geo
    if use_dense(g):
        dw = np.empty((g.Cout, g.C), dtype=np.float64)
        return _dense.dense_matmul(gy.reshape(g.N, g.Cout).T, saved.x.reshape(g.N, g.C), dw).reshape(g.Cout, g.C, 1, 1)
    if saved.cl is not None:
        return CL.grad_weight(gy, saved.cl, g, gy_nhwc)
    if saved.xn is not None:
        return nhwc_depthwise_grad_weight(gy, saved, gy_nhwc)
    assert not gy_nhwc, "an NHWC output gradient on an NCHW path"
    if saved.x is not None and _rows_backward(g):
        return depthwise_grad_weight(gy, saved.x, g)
    if saved.xs is None:
        saved = _prepare_input(saved.x, g)
    Wq = saved.Wq
    gyw5 = None
    if saved.folded:  # the output gradient as one tall image like the input: zero in spare rows and columns
        gyw5 = _gather_into(gy, (g.N, g.Cout, 1, saved.Hq, Wq), _ZERO_PHASE, _ZERO_PHASE, 1, 1, 0, 0, True)
        gyw = gyw5.reshape(1, g.Cout, -1)
        Pn = ((g.N - 1) * saved.Hq + g.OH - 1) * Wq + g.OW
    elif Wq == g.OW:
        gyw = gy.reshape(g.N, g.Cout, -1)
        Pn = (g.OH - 1) * Wq + g.OW
    else:  # wide rows: zero in the spare columns
        gyw5 = POOL.take((g.N, g.Cout, 1, g.OH, Wq), gy.dtype)
        K.gather(gy, gyw5, _ZERO_PHASE, _ZERO_PHASE, 1, 1, 0, 0)
        gyw = gyw5.reshape(g.N, g.Cout, -1)
        Pn = (g.OH - 1) * Wq + g.OW
    CoutG = g.CoutG
    cob = _variant(CoutG, (4, 1))
    kb = 4 if cob == 4 else 8
    tile = grad_weight_tile(gy.dtype, CoutG)
    if tile:
        cob, kb = tile
    ncob = -(-CoutG // cob)
    Kp = saved.toff.shape[0]
    nkb = -(-Kp // kb)
    want = 8 * _threads()
    outer = g.groups * ncob
    nkg = 1 if outer >= want else min(nkb, -(-want // outer))
    KG = -(-nkb // nkg)
    dw = np.zeros((g.groups, ncob * cob, Kp), dtype=np.float64)
    if tile:
        _GW_TILED[tile](gyw, saved.xs, saved.toff, saved.Cgs, Pn, CoutG, GW_TILE_CHUNK, KG, gy.dtype.type(0), dw)
    else:
        _GW[cob](gyw, saved.xs, saved.toff, saved.Cgs, Pn, CoutG, _GW_CHUNK, KG, gy.dtype.type(0), dw)
    if gyw5 is not None:
        POOL.give(gyw5)
    return dw[:, :CoutG].reshape(g.Cout, g.Cg, g.KH, g.KW)


def grad_bias(gy: np.ndarray, nhwc: bool = False) -> np.ndarray:
    """dL/db (float64): the output gradient (NCHW, or NHWC) summed over batch and positions."""
    if nhwc:
        return gy.reshape(-1, gy.shape[3]).sum(axis=0, dtype=np.float64)
    out = np.empty(gy.shape[1], dtype=np.float64)
    K.grad_bias(gy, out)
    return out


def conv_flops(g: Geometry) -> int:
    """Multiply-adds x 2 of the forward pass (each backward gradient costs the same)."""
    return 2 * g.N * g.Cout * g.OH * g.OW * g.Cg * g.KH * g.KW


__all__ = ["Geometry", "Saved", "channels_last_io", "forward", "grad_input", "grad_weight", "grad_bias", "set_threads",
           "conv_flops"]
