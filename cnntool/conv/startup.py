"""A fresh process's first convolutions: how long they take with the kernels in Numba's on-disk cache, and whether
they really came from it (cache hits and misses of every kernel they ran). The library side of
``scripts/bench_conv_cache.py``; each measurement is a new Python process, since a process compiles or loads a
kernel only once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

#: One convolution of each kind of path a network's first step reaches (input shape, weight shape, stride,
#: padding, groups): a dense 3x3 on the wide rows, depthwise 3x3 on the row kernels at stride 1 and 2, depthwise
#: and dense 3x3 on the channels-last paths (8x8 maps), and a 1x1 whose batch is folded into one tall image.
FIRST_CALLS = (
    ((4, 16, 32, 32), (32, 16, 3, 3), 1, 1, 1),
    ((4, 32, 16, 16), (32, 1, 3, 3), 1, 1, 32),
    ((4, 32, 32, 32), (32, 1, 3, 3), 2, 1, 32),
    ((4, 32, 8, 8), (32, 1, 3, 3), 1, 1, 32),
    ((4, 32, 8, 8), (32, 32, 3, 3), 1, 1, 1),
    ((8, 32, 12, 12), (16, 32, 1, 1), 1, 0, 1),
)
#: What a fresh process may spend on those calls with the kernels cached (seconds).
GOAL_S = 1.0

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import torch, cnntool.conv
t1 = time.perf_counter()
from cnntool.conv.startup import FIRST_CALLS, run_first_calls
print(json.dumps({"import_s": t1 - t0, **run_first_calls(FIRST_CALLS[:int(sys.argv[1])])}))
"""


def cache_stats() -> tuple[int, int, str | None]:
    """(hits, misses, cache folder) summed over every Numba kernel of cnntool.conv that this process has run."""
    from numba.core.dispatcher import Dispatcher

    hits = misses = 0
    where = None
    for name, module in list(sys.modules.items()):
        if not name.startswith("cnntool.conv"):
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, Dispatcher) and obj.signatures:
                stats = obj.stats
                hits += sum(stats.cache_hits.values())
                misses += sum(stats.cache_misses.values())
                where = where or stats.cache_path
    return hits, misses, where


def run_first_calls(calls=FIRST_CALLS) -> dict:
    """Run ``calls`` (forward and backward, float32) in this process; their time and the cache stats."""
    import torch

    import cnntool.conv as cc

    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for xshape, wshape, stride, padding, groups in calls:
        x = torch.randn(xshape, generator=gen, requires_grad=True)
        w = torch.randn(wshape, generator=gen, requires_grad=True)
        cc.conv2d(x, w, None, stride, padding, 1, groups).sum().backward()
    took = time.perf_counter() - start
    hits, misses, where = cache_stats()
    return {"first_calls_s": took, "cache_hits": hits, "cache_misses": misses, "cache_dir": where}


def fresh_process(cache_dir: str | None = None, calls: int = len(FIRST_CALLS)) -> dict:
    """Run the first ``calls`` of :data:`FIRST_CALLS` in a new Python process (with ``NUMBA_CACHE_DIR=cache_dir``
    when given); the result of :func:`run_first_calls` plus ``process_s``, the wall time of the whole process, and
    ``stderr``, what it printed there."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, str(calls)], env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the fresh process failed (exit {done.returncode}): {tail}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_s": took, "stderr": done.stderr}
