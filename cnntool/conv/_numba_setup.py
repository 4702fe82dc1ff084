"""Numba configuration shared by the conv kernels; imported before any kernel is compiled.

* ``FASTMATH``: FMA contraction and re-association (vectorised reductions) but never ``nnan``/``ninf``, so
  NaN and Inf propagate like in torch.
* ``AVX512`` / ``AVX2``: which register-tiled kernels (``_simd``) are used.
* On AVX-512 CPUs LLVM's default tuning prefers 256-bit vectors; the conv inner loops are ~1.3x faster with
  512-bit ones, so unless the user pinned ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` we drop that preference.
  The CPU features are part of Numba's cache key, so cached kernels stay consistent.
"""

from __future__ import annotations

import os

FASTMATH = {"contract", "reassoc", "nsz", "arcp", "afn"}


def _host_features() -> str:
    """LLVM's feature string of this CPU ("+avx512f,+fma,..."), empty where it cannot be queried."""
    try:
        import llvmlite.binding as ll

        return ll.get_host_cpu_features().flatten()
    except Exception:  # noqa: BLE001 - tuning only; never fail the import for it
        return ""


def _target_features() -> str:
    """The features Numba compiles for: the pinned ones, else (no CPU name pinned either) the host's."""
    from numba.core import config

    if config.CPU_FEATURES:
        return config.CPU_FEATURES
    return "" if config.CPU_NAME else _host_features()


def _prefer_512_bit_vectors() -> None:
    if os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return
    from numba.core import config

    if config.CPU_FEATURES or config.CPU_NAME:
        return
    features = _host_features()
    if "+avx512f" in features.split(","):
        config.CPU_FEATURES = features + ",-prefer-256-bit"


_prefer_512_bit_vectors()

_FEATURES = _target_features().split(",")
#: AVX-512's 32 vector registers: the register tiles with 24 accumulators (8x3 forward, channels-last) fit.
AVX512 = "+avx512f" in _FEATURES
#: AVX2 with FMA: 16 registers, which hold the forward's smaller tiles (a 16-lane vector is two of them).
AVX2 = "+avx2" in _FEATURES and "+fma" in _FEATURES
