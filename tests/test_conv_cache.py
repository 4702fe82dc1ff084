"""Numba's on-disk cache of the conv kernels: a second fresh process loads every kernel its first convolution
runs from the cache and compiles none (cnntool.conv.startup, behind scripts/bench_conv_cache.py); only a process
that compiles says so, in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnntool.conv import channels_last as CL
from cnntool.conv._numba_setup import COMPILE_NOTE
from cnntool.conv import kernels as K
from cnntool.conv.function import make_geometry
from cnntool.conv.startup import FIRST_CALLS, fresh_process


@pytest.mark.slow
def test_a_second_process_loads_the_kernels_from_the_cache(tmp_path):
    cache = tmp_path / "numba-cache"
    first = fresh_process(str(cache), calls=1)  # the dense 3x3: an empty cache, so it compiles
    assert first["cache_misses"] > 0 and first["cache_hits"] == 0
    assert any(cache.rglob("*.nbi")), "NUMBA_CACHE_DIR was not used"
    second = fresh_process(str(cache), calls=1)
    assert second["cache_misses"] == 0 and second["cache_hits"] == first["cache_misses"]
    assert second["cache_dir"].startswith(str(cache))
    note = COMPILE_NOTE.split(":")[0]
    assert first["stderr"].count(note) == 1 and str(cache) in first["stderr"]  # once, however many kernels compile
    assert note not in second["stderr"]


def test_first_calls_cover_every_kind_of_path():
    kinds = set()
    for xshape, wshape, stride, padding, groups in FIRST_CALLS:
        g = make_geometry(torch.empty(xshape), torch.empty(wshape), None, stride, padding, 1, groups)
        kinds.add("nhwc depthwise" if K.use_nhwc_depthwise(g) else
                  f"depthwise rows s{g.stride[0]}" if K.use_depthwise_rows(g) else
                  "channels-last" if CL.use_channels_last(g, np.float32) else
                  "folded" if K.fold_batch(g.N, g.OH, g.OW) else "wide rows")
    want = {"nhwc depthwise", "depthwise rows s1", "depthwise rows s2", "folded", "wide rows"}
    assert kinds == want | ({"channels-last"} if CL.AVX2 or CL.AVX512 else set())
