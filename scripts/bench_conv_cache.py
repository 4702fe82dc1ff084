"""Time a fresh process's first convolutions with the Numba kernels loaded from the on-disk cache (goal: under 1 s).

    python scripts/bench_conv_cache.py --runs 5            # the cache Numba uses for this install
    python scripts/bench_conv_cache.py --runs 5 --cold     # an empty cache folder: the first process compiles

Each row is a new Python process that imports torch and cnntool.conv, then runs one convolution (forward and
backward) of each kind of path (cnntool.conv.startup.FIRST_CALLS); "calls s" is their time (the goal), "whole s"
the process's from start to exit, "hits"/"misses" count the kernels Numba loaded from the cache or had to compile.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

from cnntool.conv.startup import GOAL_S, fresh_process


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="fresh processes that load from the cache")
    ap.add_argument("--cold", action="store_true", help="start from an empty cache folder (the first run compiles)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as empty:
        cache_dir = empty if args.cold else None
        first = fresh_process(cache_dir)  # fills the cache where it is empty
        runs = [fresh_process(cache_dir) for _ in range(args.runs)]
    print(f"{'process':10} {'whole s':>7} {'import s':>8} {'calls s':>8} {'hits':>5} {'misses':>6} {'goal s':>6}")
    print(f"{'first':10} {first['process_s']:7.2f} {first['import_s']:8.2f} {first['first_calls_s']:8.2f} "
          f"{first['cache_hits']:5d} {first['cache_misses']:6d} {'':>6}  "
          f"{'compiled' if first['cache_misses'] else 'from the cache'}")
    for i, r in enumerate(runs, 1):
        ok = r["first_calls_s"] < GOAL_S and not r["cache_misses"]
        print(f"{'cached ' + str(i):10} {r['process_s']:7.2f} {r['import_s']:8.2f} {r['first_calls_s']:8.2f} "
              f"{r['cache_hits']:5d} {r['cache_misses']:6d} {GOAL_S:6.2f}  {'ok' if ok else 'MISS'}")
    calls = [r["first_calls_s"] for r in runs]
    print(f"cached runs: calls median {statistics.median(calls):.2f} s (min {min(calls):.2f}, max {max(calls):.2f}); "
          f"cache {runs[-1]['cache_dir'] if not args.cold else '(a temporary folder)'}; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
