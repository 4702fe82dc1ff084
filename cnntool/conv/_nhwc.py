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


@njit(inline="always")
def _zero_border(row, h, H, W, C, pl, uw):
    """Zero what of one row (Wp, Cp) of a padded channels-last buffer no input fills: all of it when input row
    ``h`` is outside the map (returns True: nothing to copy), else its border pixels and the channels past C.
    Pixel ``wq`` of the row holds input column ``wq*uw - pl``."""
    if h < 0 or h >= H:
        row[:, :] = 0
        return True
    for wq in range(row.shape[0]):
        w = wq * uw - pl
        if w < 0 or w >= W:
            row[wq, :] = 0
        elif row.shape[1] > C:
            row[wq, C:] = 0
    return False


@njit(inline="always")
def _filled(Wp, W, pl, uw):
    """The pixels [w0, w1) of a padded row of ``Wp`` that hold input columns (``wq*uw - pl`` inside the map)."""
    w0 = min(Wp, (pl + uw - 1) // uw)
    return w0, max(w0, min(Wp, (W - 1 + pl) // uw + 1))


#: Bytes of the padded NHWC rows one task of ``to_nhwc`` fills: its block of rows stays in L2 while every channel's
#: plane is read one contiguous run of rows at a time (measured on 2 cores against one row per task: 32x64x32x32
#: 5.1 -> 2.7 ms, 32x128x16x16 2.6 -> 1.3, 32x64x64x64 13.4 -> 9.1; 32 KB and 256 KB blocks were slower on some).
TO_NHWC_BLOCK_BYTES = 128 << 10


@njit(parallel=True, cache=True, nogil=True)
def to_nhwc(x, xp, pt, pl, uh, uw):
    """xp[n, hq, wq, c] = x[n, c, hq*uh - pt, wq*uw - pl]: the lattice of every ``uh``-th row and ``uw``-th column
    of the zero-padded input (steps of 1: all of it), the rest of xp (the padding border, and the channels past
    x's when xp has more) zeroed. Rows of more than 8 pixels are filled a block of rows at a time, channel by
    channel, each channel's rows read front to back (one row per task, the channels' planes often a multiple of 4
    KiB apart, left too many short streams to prefetch); shorter rows go pixel by pixel (a channel's few values
    would not fill a loop; measured 1.5x faster on 4x4 maps)."""
    N, C, H, W = x.shape
    Hp = xp.shape[1]
    w0, w1 = _filled(xp.shape[2], W, pl, uw)
    short = w1 - w0 <= 8
    rb = 1 if short else max(1, min(Hp, TO_NHWC_BLOCK_BYTES // (xp.shape[2] * xp.shape[3] * 4)))
    nblk = (Hp + rb - 1) // rb
    for t in prange(N * nblk):
        n = t // nblk
        h0 = (t % nblk) * rb
        h1 = min(Hp, h0 + rb)
        for hp in range(h0, h1):
            h = hp * uh - pt
            row = xp[n, hp]
            if _zero_border(row, h, H, W, C, pl, uw) or not short:
                continue
            for wq in range(w0, w1):
                d = row[wq]
                w = wq * uw - pl
                for c in range(C):
                    d[c] = x[n, c, h, w]
        if short:
            continue
        ha = max(h0, (pt + uh - 1) // uh)  # the rows of the block that hold input rows
        hb = min(h1, (H - 1 + pt) // uh + 1)
        nw = w1 - w0
        wb = w0 * uw - pl
        for c in range(C):
            for hp in range(ha, hb):
                # views counted from 0: LLVM then drops the negative-index fix-up from the copy loop
                src = x[n, c, hp * uh - pt, wb:wb + (nw - 1) * uw + 1:uw]
                dst = xp[n, hp, w0:w1, c]
                for w in range(nw):
                    dst[w] = src[w]
    return xp


@njit(parallel=True, cache=True, nogil=True)
def from_nhwc(xp, out, pt, pl):
    """out[n, c, h, w] = xp[n, h + pt, w + pl, c] (the inverse of ``to_nhwc``, dropping the border). Rows of more
    than 8 pixels go a block of rows of xp (``TO_NHWC_BLOCK_BYTES``) at a time, each channel's rows of out written
    front to back (measured against one row per task: 32x64x32x32 1.3x, 32x128x16x16 1.65x faster; on 4x4 and 2x2
    maps 1.3-2.2x slower, so those keep one row per task)."""
    N, C, H, W = out.shape
    rb = 1 if W <= 8 else max(1, min(H, TO_NHWC_BLOCK_BYTES // (xp.shape[2] * xp.shape[3] * 4)))
    nblk = (H + rb - 1) // rb
    for t in prange(N * nblk):
        n = t // nblk
        h0 = (t % nblk) * rb
        h1 = min(H, h0 + rb)
        if W <= 8:
            src = xp[n, h0 + pt]
            for c in range(C):
                dst = out[n, c, h0]
                for w in range(W):
                    dst[w] = src[w + pl, c]
            continue
        for c in range(C):
            for h in range(h0, h1):
                src = xp[n, h + pt, pl:pl + W, c]
                dst = out[n, c, h]
                for w in range(W):
                    dst[w] = src[w]
    return out


@njit(parallel=True, cache=True, nogil=True)
def pad_nhwc(x, xp, pt, pl, uh, uw):
    """xp[n, hq, wq, c] = x[n, hq*uh - pt, wq*uw - pl, c] for x already channels-last (a torch channels_last
    tensor's memory), lattice steps as in ``to_nhwc``: the padding border and the channels past x's zeroed, each
    pixel one contiguous run."""
    N, H, W, C = x.shape
    Hp = xp.shape[1]
    w0, w1 = _filled(xp.shape[2], W, pl, uw)
    for t in prange(N * Hp):
        n = t // Hp
        hp = t % Hp
        h = hp * uh - pt
        row = xp[n, hp]
        if _zero_border(row, h, H, W, C, pl, uw):
            continue
        src = x[n, h]
        for wq in range(w0, w1):
            s = src[wq * uw - pl]
            d = row[wq]
            for c in range(C):
                d[c] = s[c]
    return xp


@njit(parallel=True, cache=True, nogil=True)
def strip_nhwc(xp, out, pt, pl):
    """out[n, h, w, c] = xp[n, h + pt, w + pl, c]: a padded channels-last buffer into a channels-last output,
    the border and the channels past out's dropped."""
    N, H, W, C = out.shape
    for t in prange(N * H):
        n = t // H
        h = t % H
        src = xp[n, h + pt]
        dst = out[n, h]
        for w in range(W):
            s = src[w + pl]
            d = dst[w]
            for c in range(C):
                d[c] = s[c]
    return out


@njit(parallel=True, fastmath=FASTMATH, cache=True, nogil=True)
def dw_forward(x, wt, bias, o, pt, pl, sh, sw, dh, dw):
    """o[n, oh, ow, c] = bias[c] + sum over taps (kh, kw) of wt[kh, kw, c] * x[n, ih, iw, c], ih = oh*sh + kh*dh - pt,
    iw = ow*sw + kw*dw - pl, over the taps inside the map: the padding is skipped, not stored (x is the caller's
    channels_last input or an unpadded NHWC copy)."""
    N, H, W, C = x.shape
    OH = o.shape[1]
    OW = o.shape[2]
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
                ih = oh * sh + kh * dh - pt
                if ih < 0 or ih >= H:
                    continue
                xrow = x[n, ih]
                for kw in range(KW):
                    iw = ow * sw + kw * dw - pl
                    if iw < 0 or iw >= W:
                        continue
                    xv = xrow[iw]
                    wv = wt[kh, kw]
                    for c in range(C):
                        od[c] += wv[c] * xv[c]
    return o


@njit(parallel=True, fastmath=FASTMATH, cache=True, nogil=True)
def dw_grad_input(gy, wt, gx, pt, pl, sh, sw, dh, dw):
    """gx[n, ih, iw, c] = sum of wt[kh, kw, c] * gy[n, oh, ow, c] over the (oh, ow, kh, kw) with ih = oh*sh + kh*dh - pt
    and iw = ow*sw + kw*dw - pl, as a scatter (one pass for every stride and dilation) straight into the unpadded
    NHWC gx, taps outside it skipped. One task per sample: rows of a sample overlap."""
    N, OH, OW, C = gy.shape
    H = gx.shape[1]
    W = gx.shape[2]
    KH = wt.shape[0]
    KW = wt.shape[1]
    for n in prange(N):
        gx[n] = 0
        for oh in range(OH):
            for ow in range(OW):
                g = gy[n, oh, ow]
                for kh in range(KH):
                    ih = oh * sh + kh * dh - pt
                    if ih < 0 or ih >= H:
                        continue
                    xrow = gx[n, ih]
                    for kw in range(KW):
                        iw = ow * sw + kw * dw - pl
                        if iw < 0 or iw >= W:
                            continue
                        xv = xrow[iw]
                        wv = wt[kh, kw]
                        for c in range(C):
                            xv[c] += wv[c] * g[c]
    return gx


@njit(parallel=True, fastmath=FASTMATH, cache=True, nogil=True)
def dw_grad_weight(gy, x, part, pt, pl, sh, sw, dh, dw):
    """part[n, kh, kw, c] = sum over (oh, ow) of gy[n, oh, ow, c] * x[n, oh*sh + kh*dh - pt, ow*sw + kw*dw - pl, c]
    over the taps inside the map: one partial sum per sample (the caller adds them up in float64)."""
    N, OH, OW, C = gy.shape
    H = x.shape[1]
    W = x.shape[2]
    KH = part.shape[1]
    KW = part.shape[2]
    for n in prange(N):
        part[n] = 0
        for oh in range(OH):
            for ow in range(OW):
                g = gy[n, oh, ow]
                for kh in range(KH):
                    ih = oh * sh + kh * dh - pt
                    if ih < 0 or ih >= H:
                        continue
                    xrow = x[n, ih]
                    for kw in range(KW):
                        iw = ow * sw + kw * dw - pl
                        if iw < 0 or iw >= W:
                            continue
                        xv = xrow[iw]
                        pv = part[n, kh, kw]
                        for c in range(C):
                            pv[c] += g[c] * xv[c]
    return part


@njit(parallel=True, cache=True, nogil=True)
def pack_cl(w3, taps, out, by_input):
    """Weights of the channels-last GEMM (``cl_fwd_*``) from w3 = w.reshape(Cout, Cin, KH*KW), for the taps
    ``taps``; out is (blocks, len(taps), K, W): block cb holds W output lanes over K reduction channels.

    Forward (``by_input`` False): out[cb, j, ci, l] = w3[cb*W + l, ci, taps[j]] (lanes = output channels).
    Grad-input (True): out[cb, j, co, l] = w3[co, cb*W + l, taps[j]] (lanes = input channels). Lanes past the
    last channel are zero. One task per (block, reduction channel): it reads the taps of each lane contiguously
    and writes one W-lane row per tap (a task per tap would read every weight once per tap)."""
    nb, T, K, W = out.shape
    lanes = w3.shape[1] if by_input else w3.shape[0]
    for task in prange(nb * K):
        cb = task // K
        k = task % K
        for l in range(W):
            c = cb * W + l
            if c >= lanes:
                for j in range(T):
                    out[cb, j, k, l] = 0
            elif by_input:
                for j in range(T):
                    out[cb, j, k, l] = w3[k, c, taps[j]]
            else:
                for j in range(T):
                    out[cb, j, k, l] = w3[c, k, taps[j]]
    return out


@njit(parallel=True, cache=True, nogil=True)
def sum_cl_parts(part, out):
    """out[co, ci, t] = sum over r of part[r, t, ci, co] (the position ranges of ``cl_gw_*``, reordered to the
    weight layout; padding channels of ``part`` dropped). The ranges are first added into part[0] (overwritten),
    then part[0] is transposed in tiles of 16 x 16 channels x all taps: the tile's rows of part (64 bytes each,
    read front to back) are gathered into a contiguous scratch, which then gives each output channel's 16 x T
    weights as one contiguous run. (Reading part and writing out in place, tap plane by tap plane, thrashed L1:
    part's rows and out's channels lie a power of two apart, so a tile's lines fell into two cache sets: 9.9 ms
    for a 512x512x3x3 kernel on an AVX2 host; one output channel at a time was 3.5x slower still.)"""
    NR, T, Cp, Cop = part.shape
    Cout, C, _ = out.shape
    if NR > 1:
        flat = part.reshape(NR, T * Cp, Cop)
        for row in prange(T * Cp):
            acc = flat[0, row]
            for r in range(1, NR):
                src = flat[r, row]
                for co in range(Cop):
                    acc[co] += src[co]
    nci = (C + 15) // 16
    for task in prange(((Cout + 15) // 16) * nci):
        c0 = (task // nci) * 16
        i0 = (task % nci) * 16
        nc = min(Cout, c0 + 16) - c0
        ni = min(C, i0 + 16) - i0
        tile = np.empty((16, 16, T), part.dtype)  # [co, ci, t] of this block
        for t in range(T):
            for i in range(ni):
                src = part[0, t, i0 + i, c0:c0 + nc]
                for c in range(nc):
                    tile[c, i, t] = src[c]
        for c in range(nc):
            dst = out[c0 + c, i0:i0 + ni]
            for i in range(ni):
                for t in range(T):
                    dst[i, t] = tile[c, i, t]
    return out
