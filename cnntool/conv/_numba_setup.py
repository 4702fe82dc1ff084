"""Numba configuration shared by the conv kernels; imported before any kernel is compiled.

* ``FASTMATH``: FMA contraction and re-association (vectorised reductions) but never ``nnan``/``ninf``, so
  NaN and Inf propagate like in torch.
* ``AVX512``: whether the register-tiled kernels (``_simd``) are used.
* On AVX-512 CPUs LLVM's default tuning prefers 256-bit vectors; the conv inner loops are ~1.3x faster with
  512-bit ones, so unless the user pinned ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` we drop that preference.
  The CPU features are part of Numba's cache key, so cached kernels stay consistent.
"""

from __future__ import annotations

import os

FASTMATH = {"contract", "reassoc", "nsz", "arcp", "afn"}


def _host_has_avx512() -> bool:
    try:
        import llvmlite.binding as ll

        return "+avx512f" in ll.get_host_cpu_features().flatten().split(",")
    except Exception:  # noqa: BLE001 - a missing feature query means: assume none
        return False


#: The host has AVX-512's 32 vector registers: the register-tiled kernels' 24 accumulators fit (with AVX2's 16
#: they would spill, so those kernels are not chosen there).
AVX512 = _host_has_avx512()


def _prefer_512_bit_vectors() -> None:
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return
    try:
        import llvmlite.binding as ll
        from numba.core import config

        if config.CPU_FEATURES or config.CPU_NAME:
            return
        features = ll.get_host_cpu_features().flatten()
    except Exception:  # noqa: BLE001 - tuning only; never fail the import for it
        return
    if "+avx512f" in features.split(","):
        config.CPU_FEATURES = features + ",-prefer-256-bit"


_prefer_512_bit_vectors()
