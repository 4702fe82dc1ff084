"""Numba kernels for the convolutions that are matrix products: a 1x1 kernel on a 1x1 map (squeeze-and-excitation
layers, heads on globally pooled features), y[n, co] = b[co] + sum_c w[co, c] * x[n, c].

There are a few thousand products per layer (EfficientNet-B0's 144 -> 6 squeeze: 28k), so the general paths'
phase planes, register-tile packing and several launches per pass were most of their time; here each pass is one
loop nest over contiguous rows. Hand-written (not generated): the inner loops are plain reductions and row updates
that LLVM vectorises.
"""

import numpy as np
from numba import njit, prange

from cnntool.conv._numba_setup import FASTMATH


@njit(parallel=True, fastmath=FASTMATH, cache=True, nogil=True)
def dense_forward(x, w, bias, out):
    """out[n, co] = bias[co] + sum over c of w[co, c] * x[n, c] (x (N, C), w (Cout, C), out (N, Cout))."""
    N, C = x.shape
    Cout = w.shape[0]
    for n in prange(N):
        xr = x[n]
        o = out[n]
        for co in range(Cout):
            wr = w[co]
            s = bias[co]
            for c in range(C):
                s += wr[c] * xr[c]
            o[co] = s
    return out


@njit(parallel=True, fastmath=FASTMATH, cache=True, nogil=True)
def dense_grad_input(gy, w, out):
    """out[n, c] = sum over co of gy[n, co] * w[co, c] (gy (N, Cout), out (N, C)): rows of w added into out's row."""
    N, Cout = gy.shape
    C = w.shape[1]
    for n in prange(N):
        o = out[n]
        for c in range(C):
            o[c] = 0
        g = gy[n]
        for co in range(Cout):
            gv = g[co]
            wr = w[co]
            for c in range(C):
                o[c] += gv * wr[c]
    return out


@njit(parallel=True, fastmath=FASTMATH, cache=True, nogil=True)
def dense_grad_weight(gy, x, out):
    """out[co, c] = sum over n of gy[n, co] * x[n, c], accumulated in out's dtype (float64)."""
    N, Cout = gy.shape
    C = x.shape[1]
    for co in prange(Cout):
        o = out[co]
        for c in range(C):
            o[c] = 0
        for n in range(N):
            gv = np.float64(gy[n, co])
            xr = x[n]
            for c in range(C):
                o[c] += gv * xr[c]
    return out
