"""Training throughput: cnntool's loop vs the coursework's DataLoader loop vs the compute-only bound.

Same model (simplecnn), batch size, optimizer and thread count for all three, measured side by side
in one run, on (i) digits and (ii) CIFAR-shaped data (random 32×32×3 uint8 images made in memory)
with random crop (padding 4) + horizontal flip:

  (a) cnntool: in-memory uint8 tensors batched by index, whole-batch augmentation (Trainer, 1 epoch)
  (b) coursework: Dataset of PIL images + torchvision per-sample transforms + DataLoader
  (c) compute bound: one fixed batch, forward + backward + step (cnntool's optimizer), no data handling

The three are measured in turn, ``--repeats`` times, over the same number of optimizer steps, and the
table shows medians (the machines are shared and noisy; interleaving keeps the ratios fair).

A second table (skip with ``--no-recipe``) times the modern-recipe options on the CIFAR-shaped data, each
row against the coursework loop doing the same thing (TrivialAugmentWide per sample in the DataLoader;
torchvision v2 MixUp/CutMix on its batches) and, for bf16, against cnntool in fp32:

  cnntool --amp bf16 --channels-last    goal: ≥ 1.8× cnntool fp32 (on a CPU with bf16)
  cnntool --mixup 0.2 --cutmix 1.0      goal: ≥ 1.5× coursework with the same mixing
  cnntool --augment trivialaugment      goal: ≥ 1.5× coursework with the same policy

A third table measures experiment tracking: the same cnntool run on digits (``--log-epochs`` epochs, one
evaluation point per epoch) without and with ``--log tensorboard``. Training throughput (the run's own
``seconds``: the training loop) must stay within 5% (goal ≥ 0.95×); the whole run's wall time is shown too,
which adds the tracker's start (importing TensorBoard) and its end (the test confusion matrix).

Usage: python scripts/bench_train.py [--n 50000] [--batch-size 128] [--threads 2] [--workers 2] [--repeats 3]
       [--recipe-n 10000] [--no-recipe] [--log-epochs 5] [--only-tracking]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F


def make_model(in_channels: int, seed: int = 0):
    from cnntool.models import create_model

    torch.manual_seed(seed)
    return create_model("simplecnn", 10, in_channels)


def bench_cnntool(images: np.ndarray, labels: np.ndarray, batch_size: int, augment: dict, tmp: str,
                  epochs: int = 1, wall: bool = False, **train):
    from cnntool.config import DataConfig, RunConfig, TrainConfig
    from cnntool.data.bundle import DataBundle, TensorSplit
    from cnntool.spec import ModelSpec
    from cnntool.runner import run_setup
    from cnntool.training.engine import Setup

    n, c, h, w = images.shape
    x = torch.from_numpy(images)
    y = torch.from_numpy(labels)
    val = TensorSplit(x[:256], y[:256])
    data = DataBundle("bench", [str(i) for i in range(10)], c, [h, w], [0.5] * c, [0.25] * c,
                      {"train": TensorSplit(x, y), "val": val, "test": val})
    cfg = RunConfig(data=DataConfig(**augment), train=TrainConfig(epochs=epochs, batch_size=batch_size,
                                                                   scheduler="none", threads=torch.get_num_threads(),
                                                                   **train),
                    runs_root=tmp)
    spec = ModelSpec("simplecnn", 10, data.class_names, c, [h, w], data.mean, data.std)
    t0 = time.perf_counter()
    result = run_setup(Setup(cfg, make_model(c), data, spec))  # with --log: the trackers too
    seconds = time.perf_counter() - t0
    speed = epochs * (n // batch_size) * batch_size / result["seconds"]
    return (speed, seconds) if wall else speed


class PilDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        from PIL import Image

        mode = "L" if images.shape[1] == 1 else "RGB"
        self.images = [Image.fromarray(im[0] if mode == "L" else im.transpose(1, 2, 0), mode) for im in images]
        self.labels = labels
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), int(self.labels[i])


def bench_coursework(images: np.ndarray, labels: np.ndarray, batch_size: int, workers: int,
                     extra: str | None = None) -> float:
    """extra: "trivialaugment" (per-sample policy in the transform) or "mix" (v2 MixUp/CutMix per batch)."""
    import torchvision.transforms as T
    from torchvision.transforms import v2

    c, h = images.shape[1], images.shape[2]
    pad = 4 if h >= 32 else 2
    policy = [T.TrivialAugmentWide()] if extra == "trivialaugment" else []
    transform = T.Compose([*policy, T.RandomCrop(h, padding=pad), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize([0.5] * c, [0.25] * c)])
    mix = v2.RandomChoice([v2.MixUp(alpha=0.2, num_classes=10), v2.CutMix(alpha=1.0, num_classes=10)]) \
        if extra == "mix" else None
    ds = PilDataset(images, labels, transform)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=False)
    model = make_model(c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    seen = 0
    t0 = time.perf_counter()
    for x, y in loader:
        target = y
        if mix is not None:
            x, target = mix(x, y)
        loss = F.cross_entropy(model(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y)
    return seen / (time.perf_counter() - t0)


def bench_compute(images: np.ndarray, batch_size: int, steps: int) -> float:
    c = images.shape[1]
    x = (torch.from_numpy(images[:batch_size]).float() / 255.0 - 0.5) / 0.25
    y = torch.randint(0, 10, (batch_size,))
    from cnntool.config import TrainConfig
    from cnntool.training.optim import build_optimizer

    model = make_model(c)
    opt = build_optimizer(model.parameters(), TrainConfig())  # the optimizer cnntool's loop uses
    model.train()
    for _ in range(3):  # warm-up
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - t0)


def main() -> None:
    import tempfile

    from rich.console import Console
    from rich.table import Table

    from cnntool.data.sources import digits

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50000, help="CIFAR-shaped images")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the coursework loop")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved measurements per loop (median)")
    ap.add_argument("--recipe-n", type=int, default=10000, help="CIFAR-shaped images of the recipe table")
    ap.add_argument("--no-recipe", action="store_true", help="skip the recipe table")
    ap.add_argument("--log-epochs", type=int, default=5, help="epochs of the tracking comparison")
    ap.add_argument("--only-tracking", action="store_true", help="only the tracking table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    raw = digits(None, False).train
    sets = {
        "digits 1×8×8": (raw.images, raw.labels, {"crop_pad": 2, "hflip": True}),
        "CIFAR-shaped 3×32×32": (rng.integers(0, 256, (args.n, 3, 32, 32), dtype=np.uint8),
                                 rng.integers(0, 10, args.n).astype(np.int64), {"crop_pad": 4, "hflip": True}),
    }
    table = Table(title=f"training throughput, simplecnn, batch {args.batch_size}, {args.threads} threads, "
                        f"median of {args.repeats} (images/s)")
    for col in ("data", "(a) cnntool", "(b) coursework", "(c) compute", "a/b", "a/c"):
        table.add_column(col, justify="right")
    results = {}
    if args.only_tracking:
        sets = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (x, y, aug) in sets.items():
            runs = {"a": [], "b": [], "c": []}
            for _ in range(args.repeats):
                runs["c"].append(bench_compute(x, args.batch_size, steps=len(y) // args.batch_size))
                runs["a"].append(bench_cnntool(x, y, args.batch_size, aug, tmp))
                runs["b"].append(bench_coursework(x, y, args.batch_size, args.workers))
            a, b, c = (statistics.median(runs[k]) for k in "abc")
            results[name] = (a, b, c)
            table.add_row(name, f"{a:,.0f}", f"{b:,.0f}", f"{c:,.0f}", f"{a / b:.2f}×", f"{a / c:.2f}×")
    if not args.only_tracking:
        Console().print(table)
    if not args.no_recipe and not args.only_tracking:
        Console().print(recipe_table(args, rng))
    Console(width=120).print(tracking_table(raw, args))


def recipe_table(args, rng):
    from rich.table import Table

    from cnntool.training.evaluate import cpu_supports_bf16

    import tempfile

    n = args.recipe_n
    x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    aug = {"crop_pad": 4, "hflip": True}
    rows = [  # label, cnntool options, reference, goal
        ("cnntool --amp bf16 --channels-last", dict(train={"amp": "bf16", "channels_last": True}), "fp32", 1.8),
        ("cnntool --mixup 0.2 --cutmix 1.0", dict(train={"mixup": 0.2, "cutmix": 1.0}), "mix", 1.5),
        ("cnntool --augment trivialaugment", dict(data={"augment": "trivialaugment", "crop_pad": 4}),
         "trivialaugment", 1.5),
    ]
    if not cpu_supports_bf16():
        rows = rows[1:]
    table = Table(title=f"recipe options, CIFAR-shaped 3×32×32 × {n}, simplecnn, batch {args.batch_size}, "
                        f"{args.threads} threads, median of {args.repeats} (images/s)")
    for col in ("cnntool loop", "images/s", "reference", "ref images/s", "ratio", "goal", "met"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for label, opts, ref, goal in rows:
            mine, theirs = [], []
            for _ in range(args.repeats):
                mine.append(bench_cnntool(x, y, args.batch_size, {**aug, **opts.get("data", {})}, tmp,
                                          **opts.get("train", {})))
                theirs.append(bench_cnntool(x, y, args.batch_size, aug, tmp) if ref == "fp32" else
                              bench_coursework(x, y, args.batch_size, args.workers, extra=ref))
            a, b = statistics.median(mine), statistics.median(theirs)
            name = "cnntool fp32" if ref == "fp32" else f"coursework + {ref}"
            table.add_row(label, f"{a:,.0f}", name, f"{b:,.0f}", f"{a / b:.2f}×", f"≥ {goal}×",
                          "yes" if a / b >= goal else "no")
    return table


def tracking_table(raw, args):
    """cnntool on digits without and with --log tensorboard, interleaved."""
    import tempfile

    from rich.table import Table

    x, y, aug = raw.images, raw.labels, {"crop_pad": 2, "hflip": True}
    got: dict[str, list[tuple[float, float]]] = {"none": [], "tensorboard": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for log in got:
                got[log].append(bench_cnntool(x, y, args.batch_size, aug, tmp, log=None if log == "none" else log,
                                              epochs=args.log_epochs, wall=True))
    speed = {k: statistics.median(s for s, _ in v) for k, v in got.items()}
    wall = {k: statistics.median(w for _, w in v) for k, v in got.items()}
    table = Table(title=f"tracking overhead: digits, simplecnn, {args.log_epochs} epochs, batch {args.batch_size}, "
                        f"median of {args.repeats}")
    for col in ("run", "train images/s", "ratio", "goal", "whole run s", "ratio"):
        table.add_column(col, justify="right", no_wrap=True)
    for k in got:
        r = speed[k] / speed["none"]
        table.add_row("no --log" if k == "none" else f"--log {k}", f"{speed[k]:,.0f}", f"{r:.3f}×",
                      "-" if k == "none" else ("≥ 0.95× ✓" if r >= 0.95 else "≥ 0.95× ✗"), f"{wall[k]:.2f}",
                      f"{wall[k] / wall['none']:.2f}×")
    return table


if __name__ == "__main__":
    main()
