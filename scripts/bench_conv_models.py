"""End to end: one SGD training step with torch's convolutions vs cnntool's Numba ones (``swap_convs``), per model,
plus the per-layer breakdown (every distinct conv shape: count, numba ms, torch ms, ratio of forward + backward).

    python scripts/bench_conv_models.py --threads 2 --reps 5
    python scripts/bench_conv_models.py --model tv:resnet18 --img-size 64 --no-layers
"""

from __future__ import annotations

import argparse
import os

from cnntool.conv.modelbench import BATCH, IMG_SIZE, MODEL_GOALS, REPS, bench_model


def print_model(r) -> None:
    goal = "" if r.goal is None else f"{r.goal:.2f}"
    flag = "" if r.met is None else ("ok" if r.met else "MISS")
    print(f"{r.model:20} {r.torch_ms:9.1f} {r.numba_ms:9.1f} {r.ratio:6.2f} {goal:>5} {flag:4} "
          f"{r.torch_cl_ms:9.1f} {r.ratio_cl:6.2f}")


def print_layers(r) -> None:
    print(f"\n{r.model} ({r.batch}x3x{r.img_size}x{r.img_size}): forward + backward per layer")
    print(f"{'shape':50} {'count':>5} {'numba ms':>9} {'torch ms':>9} {'ratio':>6}")
    for lt in r.layers:
        print(f"{lt.shape:50} {lt.count:5d} {lt.numba_ms:9.2f} {lt.torch_ms:9.2f} {lt.ratio:6.2f}")
    tn = sum(lt.count * lt.numba_ms for lt in r.layers)
    tt = sum(lt.count * lt.torch_ms for lt in r.layers)
    print(f"{'all convs (count x ms)':50} {sum(lt.count for lt in r.layers):5d} {tn:9.1f} {tt:9.1f} "
          f"{tn / max(tt, 1e-9):6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="model name (repeatable; default: the four of the table)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=REPS)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--img-size", type=int, default=IMG_SIZE)
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer breakdown")
    args = ap.parse_args()
    results = []
    for name in args.model or list(MODEL_GOALS):
        results.append(bench_model(name, img_size=args.img_size, batch=args.batch, threads=args.threads,
                                   reps=args.reps, layers=not args.no_layers))
    print(f"one training step, batch {args.batch}, 3x{args.img_size}x{args.img_size}, {args.threads} threads, "
          f"median of {args.reps} interleaved rounds; load average {os.getloadavg()[0]:.2f}")
    print(f"{'model':20} {'torch ms':>9} {'numba ms':>9} {'ratio':>6} {'goal':>5} {'':4} {'torch CL':>9} "
          f"{'ratio':>6}   (torch CL: model and input channels_last)")
    for r in results:
        print_model(r)
    for r in results:
        if r.layers:
            print_layers(r)


if __name__ == "__main__":
    main()
