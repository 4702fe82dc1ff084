"""Numba kernels for the convolutions that are matrix products: a 1x1 kernel on a 1x1 map (squeeze-and-excitation
layers, heads on globally pooled features), y[n, co] = b[co] + sum_c w[co, c] * x[n, c].

There are a few thousand products per layer (EfficientNet-B0's 144 -> 6 squeeze: 28k), so the general paths'
phase planes, register-tile packing and several launches per pass were most of their time; here each pass is one
loop nest over contiguous rows. Hand-written (not generated): the inner loops are plain reductions and row updates
that LLVM vectorises.
"""

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
def dense_matmul(a, b, out):
    """out[i, j] = sum over k of a[i, k] * b[k, j], each row of out a sum of rows of b (summed in out's dtype; a
    may be a transposed view). Grad-input is gy @ w, grad-weight gy.T @ x."""
    for i in prange(a.shape[0]):
        o = out[i]
        for j in range(o.shape[0]):
            o[j] = 0
        for k in range(a.shape[1]):
            v = a[i, k]
            br = b[k]
            for j in range(o.shape[0]):
                o[j] += v * br[j]
    return out
