"""Numba configuration shared by the conv kernels; imported before any kernel is compiled.

* ``FASTMATH``: FMA contraction and re-association (vectorised reductions) but never ``nnan``/``ninf``, so
  NaN and Inf propagate like in torch.
* ``AVX512`` / ``AVX2``: which register-tiled kernels (``_simd``) are used.
* On AVX-512 CPUs LLVM's default tuning prefers 256-bit vectors; the conv inner loops are ~1.3x faster with
  512-bit ones, so unless the user pinned ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` we drop that preference.
  The CPU features are part of Numba's cache key, so cached kernels stay consistent.
* The first time a process compiles one of the kernels (nothing in the cache for this CPU yet) it logs one line,
  :data:`COMPILE_NOTE`: a first training step then takes about a minute, which would otherwise look like a hang.
"""

from __future__ import annotations

import logging
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


#: The line logged (logger "cnntool", which the CLI prints as one ``warning:`` line) before the first compilation.
COMPILE_NOTE = ("compiling cnntool's Numba convolution kernels for this CPU: the first use takes about a minute, "
                "later runs load them from %s")


def _note_first_compile() -> None:
    from numba.core import event

    class FirstCompile(event.Listener):
        done = False

        def on_start(self, ev) -> None:
            dispatcher = (ev.data or {}).get("dispatcher")
            module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
            if self.done or not module.startswith("cnntool.conv"):
                return
            self.done = True
            logging.getLogger("cnntool").warning(COMPILE_NOTE, dispatcher.stats.cache_path)

        def on_end(self, ev) -> None:
            pass

    event.register("numba:compile", FirstCompile())


_note_first_compile()
