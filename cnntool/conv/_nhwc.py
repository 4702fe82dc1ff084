"""Numba kernels for depthwise convolutions on small maps, run in channels-last (NHWC) layout.

On a 4x4 or 2x2 map every per-row loop of the NCHW kernels is a few elements long and the padded border is most
of the plane, so their time goes to loop overhead, not arithmetic. In NHWC the innermost loop of every kernel runs
over the channels instead (hundreds of them in the late layers of MobileNet/EfficientNet-style networks), contiguous
for the input, the weights and the output alike: one transpose in, one out, and all three passes (forward,
grad-input, grad-weight) become long unit-stride loops whatever the kernel size, stride, dilation or padding.
Hand-written (not generated): the tap loops are runtime loops, the channel loop is what vectorises.
"""

import numpy as np
from numba import njit, prange

from cnntool.conv._numba_setup import FASTMATH


@njit(parallel=True, cache=True, nogil=True)
def to_nhwc(x, xp, pt, pl):
    """xp[n, h + pt, w + pl, c] = x[n, c, h, w]; the rest of xp (the padding border) is zeroed."""
    N, C, H, W = x.shape
    Hp = xp.shape[1]
    Wp = xp.shape[2]
    for t in prange(N * Hp):
        n = t // Hp
        hp = t % Hp
        h = hp - pt
        row = xp[n, hp]
        if h < 0 or h >= H:
            row[:, :] = 0
            continue
        for wp in range(Wp):
            w = wp - pl
            d = row[wp]
            if w < 0 or w >= W:
                d[:] = 0
            else:
                for c in range(C):
                    d[c] = x[n, c, h, w]
    return xp


@njit(parallel=True, cache=True, nogil=True)
def from_nhwc(xp, out, pt, pl):
    """out[n, c, h, w] = xp[n, h + pt, w + pl, c] (the inverse of ``to_nhwc``, dropping the border)."""
    N, C, H, W = out.shape
    for t in prange(N * H):
        n = t // H
        h = t % H
        src = xp[n, h + pt]
        for c in range(C):
            dst = out[n, c, h]
            for w in range(W):
                dst[w] = src[w + pl, c]
    return out


@njit(parallel=True, fastmath=FASTMATH, cache=True, nogil=True)
def dw_forward(xp, wt, bias, o, sh, sw, dh, dw):
    """o[n, oh, ow, c] = bias[c] + sum over taps (kh, kw) of wt[kh, kw, c] * xp[n, oh*sh + kh*dh, ow*sw + kw*dw, c]."""
    N = o.shape[0]
    OH = o.shape[1]
    OW = o.shape[2]
    C = o.shape[3]
    KH = wt.shape[0]
    KW = wt.shape[1]
    for r in prange(N * OH):
        n = r // OH
        oh = r % OH
        for ow in range(OW):
            od = o[n, oh, ow]
            for c in range(C):
                od[c] = bias[c]
            for kh in range(KH):
                xrow = xp[n, oh * sh + kh * dh]
                for kw in range(KW):
                    xv = xrow[ow * sw + kw * dw]
                    wv = wt[kh, kw]
                    for c in range(C):
                        od[c] += wv[c] * xv[c]
    return o


@njit(parallel=True, fastmath=FASTMATH, cache=True, nogil=True)
def dw_grad_input(gy, wt, gxp, sh, sw, dh, dw):
    """gxp[n, oh*sh + kh*dh, ow*sw + kw*dw, c] += wt[kh, kw, c] * gy[n, oh, ow, c] into a zeroed padded buffer
    (the scatter form: one pass for every stride and dilation). One task per sample: rows of a sample overlap."""
    N = gy.shape[0]
    OH = gy.shape[1]
    OW = gy.shape[2]
    C = gy.shape[3]
    KH = wt.shape[0]
    KW = wt.shape[1]
    for n in prange(N):
        gxp[n] = 0
        for oh in range(OH):
            for ow in range(OW):
                g = gy[n, oh, ow]
                for kh in range(KH):
                    xrow = gxp[n, oh * sh + kh * dh]
                    for kw in range(KW):
                        xv = xrow[ow * sw + kw * dw]
                        wv = wt[kh, kw]
                        for c in range(C):
                            xv[c] += wv[c] * g[c]
    return gxp


@njit(parallel=True, fastmath=FASTMATH, cache=True, nogil=True)
def dw_grad_weight(gy, xp, part, sh, sw, dh, dw):
    """part[n, kh, kw, c] = sum over (oh, ow) of gy[n, oh, ow, c] * xp[n, oh*sh + kh*dh, ow*sw + kw*dw, c]: one
    partial sum per sample (the caller adds them up in float64)."""
    N = gy.shape[0]
    OH = gy.shape[1]
    OW = gy.shape[2]
    C = gy.shape[3]
    KH = part.shape[1]
    KW = part.shape[2]
    for n in prange(N):
        part[n] = 0
        for oh in range(OH):
            for ow in range(OW):
                g = gy[n, oh, ow]
                for kh in range(KH):
                    xrow = xp[n, oh * sh + kh * dh]
                    for kw in range(KW):
                        xv = xrow[ow * sw + kw * dw]
                        pv = part[n, kh, kw]
                        for c in range(C):
                            pv[c] += g[c] * xv[c]
    return part
