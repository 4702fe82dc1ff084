"""Print the numba/torch ratio table for the a-e benchmark shapes (a thin wrapper over cnntool.conv.suite).

    python scripts/bench_conv.py --threads 2 --reps 15
"""

from __future__ import annotations

import argparse
import os

from cnntool.conv.suite import BENCH_CASES, run_suite

# numba/torch time ratios to reach: dense (a, b, d) near oneDNN, grouped and depthwise (c, e) clearly faster
GOALS = {"forward": {"a": 1.1, "b": 1.1, "c": 0.8, "d": 1.1, "e": 0.8},
         "backward": {"a": 1.25, "b": 1.25, "c": 0.8, "d": 1.25, "e": 0.8}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=11)
    args = ap.parse_args()
    report = run_suite(check=False, bench=True, threads=args.threads, reps=args.reps)
    shapes = {c.name: c.shape for c in BENCH_CASES}
    print(f"{'case':4} {'part':8} {'numba ms':>9} {'torch ms':>9} {'ratio':>6} {'goal':>5} {'GFLOP/s':>8}  shape")
    for r in report.results:
        goal = GOALS[r.part][r.case]
        flag = "ok" if r.ratio <= goal else "MISS"
        print(f"{r.case:4} {r.part:8} {r.numba_ms:9.2f} {r.torch_ms:9.2f} {r.ratio:6.2f} {goal:5.2f} "
              f"{r.gflops:8.1f}  {shapes[r.case]}  {flag}")
    print(f"threads={report.threads}; accuracy {'ok' if report.passed else 'FAILED'}; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
