"""Learning-rate finder: the exponential sweep of fastai's ``lr_find`` / Lightning's ``Tuner.lr_find``.

From ``start_lr`` to ``end_lr`` over ``steps`` optimizer steps, the learning rate grows geometrically while the
model trains on the training split (the run's augmentation, loss, optimizer and class weights); the loss is
smoothed with an exponential moving average (beta 0.98, bias-corrected) and the sweep stops early once the
smoothed loss exceeds ``diverge`` × its minimum. The suggestion is the learning rate of the steepest descent
of the smoothed loss against log(lr) (Lightning's rule), the first and last tenth of the curve excluded.
The curve's documented shape: roughly flat at the initial loss, a descent, then a blow-up. Nothing is written
except the plot you ask for; no run directory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnntool.config import RunConfig
from cnntool.errors import ConfigError

START_LR, END_LR, STEPS, DIVERGE, BETA = 1e-7, 10.0, 100, 4.0, 0.98


def lr_find(cfg: RunConfig, start_lr: float = START_LR, end_lr: float = END_LR, steps: int = STEPS,
            diverge: float = DIVERGE) -> dict[str, Any]:
    import torch

    from cnntool.data.pipeline import BatchPipeline
    from cnntool.training.engine import loss_fn, prepare_train, resolve_device, set_threads
    from cnntool.training.evaluate import autocast, check_amp
    from cnntool.training.mixing import class_weights
    from cnntool.training.optim import build_optimizer

    if not (0 < start_lr < end_lr) or not all(map(math.isfinite, (start_lr, end_lr))):
        raise ConfigError(f"--start-lr {start_lr!r} and --end-lr {end_lr!r} must be finite with 0 < start < end")
    if not 5 <= steps <= 100_000:
        raise ConfigError(f"--steps {steps} must be in 5..100000")
    if not diverge > 1:
        raise ConfigError(f"--diverge {diverge!r} must be > 1")
    cfg.validate()
    set_threads(cfg.train.threads)
    tcfg = cfg.train
    setup = prepare_train(cfg)
    device = resolve_device(tcfg.device)
    check_amp(device, tcfg.amp)
    model = setup.model.to(device)
    pipeline = BatchPipeline(setup.spec.mean, setup.spec.std, cfg.data.augmentations(), device, tcfg.channels_last)
    train = setup.data.split("train")
    weight = class_weights(tcfg.class_weights, train.labels, setup.spec.class_names).to(device) \
        if tcfg.class_weights else None
    optimizer = build_optimizer(list(model.parameters()), tcfg)
    gen = torch.Generator().manual_seed(tcfg.seed + 1)
    factor = (end_lr / start_lr) ** (1.0 / (steps - 1))
    lrs, raw, smooth = [], [], []
    avg, best = 0.0, math.inf
    model.train()

    def batches():
        while True:
            yield from train.batches(tcfg.batch_size, shuffle=True, generator=gen,
                                     drop_last=len(train) >= tcfg.batch_size)

    it = batches()
    for i in range(steps):
        lr = start_lr * factor ** i
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = next(it)
        with autocast(device, tcfg.amp):
            out = model(pipeline(x, train=True, generator=gen))
            loss = loss_fn(out, y.to(device), tcfg.label_smoothing, weight)
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        avg = BETA * avg + (1 - BETA) * value
        smoothed = avg / (1 - BETA ** (i + 1))
        lrs.append(lr)
        raw.append(value)
        smooth.append(smoothed)
        best = min(best, smoothed)
        if smoothed > diverge * best:
            break
    return {"lrs": lrs, "losses": smooth, "raw_losses": raw, "suggestion": suggest(lrs, smooth),
            "min_loss_lr": lrs[smooth.index(min(smooth))] if smooth else None, "steps_run": len(lrs),
            "stopped_early": len(lrs) < steps, "start_lr": start_lr, "end_lr": end_lr}


def suggest(lrs: list[float], losses: list[float]) -> float | None:
    """The lr of the steepest descent of loss vs log(lr), the first and last tenth of the curve skipped."""
    n = len(losses)
    if n < 5:
        return None
    lo, hi = max(1, n // 10), max(2, n - n // 10)
    slopes = [(losses[i + 1] - losses[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1]))
              for i in range(lo, min(hi, n - 1))]
    if not slopes:
        return None
    return lrs[lo + slopes.index(min(slopes))]


def plot_lr_find(result: dict[str, Any], path: str | Path) -> Path:
    """loss vs lr (log x), raw and smoothed, with the suggestion marked; written atomically."""
    from cnntool.viz._plot import figure, save

    fig = figure(6, 4)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(result["lrs"], result["raw_losses"], color="#bbbbbb", lw=0.8, label="loss")
    ax.plot(result["lrs"], result["losses"], color="#1f77b4", lw=1.6, label="smoothed")
    if result["suggestion"] is not None:
        s = result["suggestion"]
        ax.axvline(s, color="#d62728", ls="--", lw=1)
        ax.plot([s], [result["losses"][result["lrs"].index(s)]], "o", color="#d62728",
                label=f"suggested lr {s:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    finite = [v for v in result["losses"] if math.isfinite(v)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), min(finite) * DIVERGE) * 1.05)
    ax.legend(loc="upper left")
    ax.set_title("lr-find")
    return save(fig, path)
