"""Multi-seed runs: the same options under several ``--seed`` values, plus an aggregate.

Layout: ``RUNS_ROOT/<name or train>-seeds/`` (``train-seeds2``, ... when taken; ``--out`` picks the folder)
holds one ordinary run directory per seed (``seed0``, ``seed1``, ...), ``seeds.json`` (per-seed final metrics
and their mean, sample std, min and max) and ``seeds.png`` (per-epoch mean ± std band).
The data split does not depend on ``--seed`` (``--split-seed`` does), so every seed sees the same test set.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from pathlib import Path
from typing import Any, Callable

from cnntool.config import RunConfig
from cnntool.errors import ConfigError

AGGREGATED = ("test_acc", "test_loss", "val_acc", "val_loss", "train_acc", "train_loss", "best_epoch", "seconds")


MAX_SEEDS = 1000


def parse_seeds(text: str) -> list[int]:
    """``0-9`` / ``0,3,7`` / ``0-2,5`` -> a list of distinct seeds in the given order."""
    seeds: list[int] = []
    try:
        for part in str(text).replace(" ", "").split(","):
            if not part:
                continue
            if "-" in part[1:]:
                cut = part.index("-", 1)
                lo, hi = int(part[:cut]), int(part[cut + 1:])
                if hi < lo:
                    raise ValueError
                if len(seeds) + hi - lo + 1 > MAX_SEEDS:  # checked before the list is made
                    raise ConfigError(f"--seeds {text!r} names more than {MAX_SEEDS} seeds")
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ConfigError(f"--seeds {text!r} is not a seed list (examples: 0-9, 0,3,7, 0-2,5)") from None
    if not seeds:
        raise ConfigError(f"--seeds {text!r} names no seed")
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"--seeds {text!r} names more than {MAX_SEEDS} seeds")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r} names a seed twice")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds {text!r}: seeds must be >= 0")
    return seeds


def aggregate(results: list[dict[str, Any]], keys: tuple[str, ...] = AGGREGATED) -> dict[str, dict[str, float]]:
    """Mean, sample standard deviation (n-1; 0 for one run), min and max of each metric over runs."""
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        vals = [float(r[k]) for r in results if r.get(k) is not None]
        if not vals:
            continue
        out[k] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                  "min": min(vals), "max": max(vals), "n": len(vals)}
    return out


def _seed_config(cfg: RunConfig, seed: int, group: Path, threads: int | None) -> RunConfig:
    train = dataclasses.replace(cfg.train, seed=seed, threads=threads if threads is not None else cfg.train.threads)
    return dataclasses.replace(cfg, train=train, runs_root=str(group), name=f"seed{seed}", out=None, resume=None)


def _fit_quiet(cfg: RunConfig) -> dict[str, Any]:  # runs in a worker process
    from cnntool.runner import fit

    return fit(cfg)


def run_seeds(cfg: RunConfig, seeds: list[int], jobs: int = 1,
              reporter: Callable[[int], Any] | None = None,
              on_run: Callable[[int, dict[str, Any]], None] | None = None,
              plot: bool = True) -> dict[str, Any]:
    """Train ``cfg`` once per seed (``jobs`` processes at a time) and write the aggregate.

    ``reporter(seed)`` gives the Reporter of a sequential run; ``on_run(seed, result)`` is called as each
    run finishes. Returns ``{"dir", "seeds", "runs": [...], "aggregate": {metric: {mean, std, min, max, n}},
    "seeds_json", "plot"}``.
    """
    from cnntool.training.distributed import env_world_size
    from cnntool.runner import fit
    from cnntool.training.rundir import allocate_run_dir, read_metrics, write_json

    if cfg.resume:
        raise ConfigError("--seeds cannot be combined with --resume (resume each seed's run directory instead)")
    if env_world_size() > 1:
        raise ConfigError("--seeds cannot run under torchrun; use --jobs N for parallel seeds")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs} must be >= 1")
    cfg.validate()
    base = cfg.name or "train"
    group = allocate_run_dir(cfg.runs_root, f"{base}-seeds", f"{cfg.name}-seeds" if cfg.name else None, cfg.out)
    jobs = min(jobs, len(seeds))
    # Parallel seeds share the cores: unless --threads is given, each process gets its share.
    threads = None if jobs == 1 or cfg.train.threads else max(1, (os.cpu_count() or 1) // jobs)
    if threads is not None:
        import logging

        logging.getLogger("cnntool").warning(
            f"--jobs {jobs}: each seed trains with {threads} thread(s) instead of {cfg.train.threads or 'all'}; "
            f"thread count changes float summation order, so per-seed results differ from --jobs 1 "
            f"(pass --threads to fix it)")
    configs = {s: _seed_config(cfg, s, group, threads) for s in seeds}
    results: dict[int, dict[str, Any]] = {}
    if jobs == 1:
        for s in seeds:
            results[s] = fit(configs[s], reporter(s) if reporter else None)
            if on_run:
                on_run(s, results[s])
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_fit_quiet, configs[s]): s for s in seeds}
            for fut in as_completed(futures):
                s = futures[fut]
                results[s] = fut.result()
                if on_run:
                    on_run(s, results[s])
    runs = [{"seed": s, **results[s]} for s in seeds]
    agg = aggregate(runs)
    agg["threads_per_seed"] = threads if threads is not None else cfg.train.threads  # None: torch's default
    agg["jobs"] = jobs
    summary = {"dir": str(group), "seeds": list(seeds), "options": cfg.flat(), "runs": runs, "aggregate": agg}
    seeds_json = group / "seeds.json"
    summary["seeds_json"] = str(seeds_json)
    summary["plot"] = None
    if plot:
        from cnntool.experiments.plots import band_figure, epoch_rows

        curves = [epoch_rows(read_metrics(r["run_dir"])) for r in runs]
        summary["plot"] = band_figure(curves, group / "seeds.png", title=f"{len(seeds)} seeds · {group.name}")
    write_json(seeds_json, summary)
    return summary
