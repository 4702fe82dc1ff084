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
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np

from cnntool.conv import _kernels as K

#: Target number of wide-row positions per forward work item (keeps the accumulator block in L1).
_FWD_POSITIONS = 1024
#: Positions per chunk in the grad-weight dot products.
_GW_CHUNK = 1024


class BufferPool:
    """Scratch arrays kept for reuse between calls.

    Large fresh allocations are mmap'ed by the C allocator and page-faulted in on first touch, which costs as
    much as the copy that fills them; reusing the padded/phase-split buffers avoids that. Arrays are handed back
    explicitly (``give``) or when an owner object dies (``give_on_death``); at most ``max_bytes`` are kept.
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self._free: dict[tuple, list[np.ndarray]] = {}
        self._bytes = 0
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        key = (tuple(int(s) for s in shape), np.dtype(dtype).str)
        with self._lock:
            stack = self._free.get(key)
            if stack:
                arr = stack.pop()
                self._bytes -= arr.nbytes
                return arr
        return np.empty(key[0], dtype=key[1])

    def give(self, arr: np.ndarray) -> None:
        key = (arr.shape, arr.dtype.str)
        with self._lock:
            if self._bytes + arr.nbytes > self.max_bytes:
                return
            stack = self._free.setdefault(key, [])
            if len(stack) < 4:
                stack.append(arr)
                self._bytes += arr.nbytes

    def give_on_death(self, owner: object, arr: np.ndarray) -> None:
        weakref.finalize(owner, self.give, arr)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._bytes = 0


POOL = BufferPool()


#: Below this many flops a call runs on one thread: waking the pool costs more than it saves (and much more
#: when the cores are busy with other work).
SERIAL_FLOPS = 4_000_000


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


_FWD = {8: K.fwd_c8k4, 4: K.fwd_c4k4, 1: K.fwd_c1k8}
_GW = {4: K.gw_c4k4, 1: K.gw_c1k8}


def _run_fwd(src, toff, wmat, bias, out_flat, *, Cgs, Wq, OH, OW, Pn, CoutG, groups, N,
             strides, ooff) -> None:
    """wmat: (groups, CoutG, Ktaps). Pads output channels to the block size and runs the forward kernel."""
    cob = _variant(CoutG, (8, 4, 1))
    ncob = -(-CoutG // cob)
    wt = np.zeros((groups, ncob * cob, wmat.shape[2]), dtype=src.dtype)
    wt[:, :CoutG] = wmat
    # rows per work item: ~_FWD_POSITIONS positions, but enough items to keep every thread busy
    nch = max(1, min(OH, round(OH * Wq / _FWD_POSITIONS)))
    want = 4 * _threads()
    while nch < OH and N * groups * ncob * nch < want:
        nch += 1
    R = -(-OH // nch)  # rows per item, items as even as possible
    osn, osc, osh, osw = strides
    _FWD[cob](src, toff, wt, bias, out_flat, Cgs, Wq, OH, OW, R, Pn, CoutG, osn, osc, osh, osw, ooff)


@dataclass
class Saved:
    """What the backward pass needs from the forward: the phase-split input and its tap offsets."""

    geo: Geometry
    xs: np.ndarray  # (N, L)
    toff: np.ndarray | None
    Wq: int
    Cgs: int


def _prepare_input(x: np.ndarray, g: Geometry) -> Saved:
    sh, sw = g.stride
    dh, dw = g.dilation
    pt, pb, pl, pr = g.pad
    ah = [kh * dh // sh for kh in range(g.KH)]
    aw = [kw * dw // sw for kw in range(g.KW)]
    rh = [kh * dh % sh for kh in range(g.KH)]
    rw = [kw * dw % sw for kw in range(g.KW)]
    phases = sorted({(rh[kh], rw[kw]) for kh in range(g.KH) for kw in range(g.KW)})
    index = {ph: i for i, ph in enumerate(phases)}
    Hq = g.OH + max(ah)
    Wq = g.OW + max(aw)
    saved = None
    if sh == sw == 1 and pt == pl == 0 and Hq == g.H and Wq == g.W:
        xs = x.reshape(g.N, -1)  # no padding or stride: read the input in place
    else:
        xs5 = POOL.take((g.N, g.C, len(phases), Hq, Wq), x.dtype)
        K.gather(x, xs5, np.array([p[0] for p in phases], np.int64), np.array([p[1] for p in phases], np.int64),
                 sh, sw, pt, pl)
        xs = xs5.reshape(g.N, -1)
        saved = Saved(g, xs, None, Wq, 0)
        POOL.give_on_death(saved, xs5)
    plane = Hq * Wq
    cstride = len(phases) * plane
    toff = np.array([ci * cstride + index[(rh[kh], rw[kw])] * plane + ah[kh] * Wq + aw[kw]
                     for ci in range(g.Cg) for kh in range(g.KH) for kw in range(g.KW)], dtype=np.int64)
    if saved is None:
        saved = Saved(g, xs, None, Wq, 0)
    saved.toff = toff
    saved.Cgs = g.Cg * cstride
    return saved


def forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Geometry,
            out: np.ndarray | None = None) -> tuple[np.ndarray, Saved]:
    """y = conv2d(x, w, b) for C-contiguous float32/float64 arrays; returns y and what backward needs."""
    saved = _prepare_input(x, g)
    if out is None:
        out = np.empty((g.N, g.Cout, g.OH, g.OW), dtype=x.dtype)
    bias = np.zeros(g.Cout, dtype=x.dtype) if b is None else b
    _run_fwd(saved.xs, saved.toff, w.reshape(g.groups, g.CoutG, -1), bias, out.reshape(-1),
             Cgs=saved.Cgs, Wq=saved.Wq, OH=g.OH, OW=g.OW, Pn=(g.OH - 1) * saved.Wq + g.OW, CoutG=g.CoutG,
             groups=g.groups, N=g.N, strides=(g.Cout * g.OH * g.OW, g.OH * g.OW, g.OW, 1), ooff=0)
    return out, saved


def grad_input(gy: np.ndarray, w: np.ndarray, g: Geometry, out: np.ndarray | None = None) -> np.ndarray:
    """dL/dx for y = conv2d(x, w): the forward kernel per input phase on the padded gradient."""
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
    gyp5 = POOL.take((g.N, g.Cout, 1, OHp, Wg), gy.dtype)
    K.gather(gy, gyp5, np.zeros(1, np.int64), np.zeros(1, np.int64), 1, 1, T, L)
    gyp = gyp5.reshape(g.N, -1)
    plane = OHp * Wg
    CoutG = g.CoutG
    w5 = w.reshape(g.groups, CoutG, g.Cg, g.KH, g.KW)
    bias = np.zeros(g.C, dtype=gy.dtype)
    for qh0, ih0, Qh, khs, qw0, iw0, Qw, kws in plans:
        taps = [(kh, kw) for kh in khs for kw in kws]
        toff = np.array([co * plane + (qh0 - kh * dh // sh + T) * Wg + (qw0 - kw * dw // sw + L)
                         for co in range(CoutG) for kh, kw in taps], dtype=np.int64)
        # wmat[g, ci, co*len(taps) + t] = w[g*CoutG + co, ci, kh_t, kw_t]
        sel = w5[:, :, :, [t[0] for t in taps], [t[1] for t in taps]]  # (G, CoutG, Cg, T)
        wmat = np.ascontiguousarray(sel.transpose(0, 2, 1, 3)).reshape(g.groups, g.Cg, -1)
        _run_fwd(gyp, toff, wmat, bias, out.reshape(-1), Cgs=CoutG * plane, Wq=Wg, OH=Qh, OW=Qw,
                 Pn=(Qh - 1) * Wg + Qw, CoutG=g.Cg, groups=g.groups, N=g.N,
                 strides=(g.C * g.H * g.W, g.H * g.W, sh * g.W, sw), ooff=ih0 * g.W + iw0)
    POOL.give(gyp5)
    return out


def grad_weight(gy: np.ndarray, saved: Saved) -> np.ndarray:
    """dL/dw (float64) for y = conv2d(x, w), reusing the phase-split input of the forward pass."""
    g = saved.geo
    Wq = saved.Wq
    if Wq == g.OW:
        gyw = gy.reshape(g.N, g.Cout, -1)
    else:  # wide rows: zero in the spare columns
        gyw5 = POOL.take((g.N, g.Cout, 1, g.OH, Wq), gy.dtype)
        K.gather(gy, gyw5, np.zeros(1, np.int64), np.zeros(1, np.int64), 1, 1, 0, 0)
        gyw = gyw5.reshape(g.N, g.Cout, -1)
    CoutG = g.CoutG
    cob = _variant(CoutG, (4, 1))
    kb = 4 if cob == 4 else 8
    ncob = -(-CoutG // cob)
    Kp = saved.toff.shape[0]
    nkb = -(-Kp // kb)
    want = 8 * _threads()
    outer = g.groups * ncob
    nkg = 1 if outer >= want else min(nkb, -(-want // outer))
    KG = -(-nkb // nkg)
    dw = np.zeros((g.groups, ncob * cob, Kp), dtype=np.float64)
    _GW[cob](gyw, saved.xs, saved.toff, saved.Cgs, (g.OH - 1) * Wq + g.OW, CoutG, _GW_CHUNK, KG,
             gy.dtype.type(0), dw)
    if Wq != g.OW:
        POOL.give(gyw5)
    return dw[:, :CoutG].reshape(g.Cout, g.Cg, g.KH, g.KW)


def grad_bias(gy: np.ndarray) -> np.ndarray:
    """dL/db (float64): the output gradient summed over batch and positions."""
    out = np.empty(gy.shape[1], dtype=np.float64)
    K.grad_bias(gy, out)
    return out


def conv_flops(g: Geometry) -> int:
    """Multiply-adds x 2 of the forward pass (each backward gradient costs the same)."""
    return 2 * g.N * g.Cout * g.OH * g.OW * g.Cg * g.KH * g.KW


__all__ = ["Geometry", "Saved", "forward", "grad_input", "grad_weight", "grad_bias", "set_threads", "conv_flops"]
