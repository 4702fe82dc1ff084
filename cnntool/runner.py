"""Prepare a run from options (train or finetune), fit it, resume it: the one table of commands that train.

``PREPARERS`` maps a command name (as stored in a run's config.json) to the function that rebuilds its Setup
from the flat options; `--resume` and sweep trials look commands up here, so nothing is registered by an
import side effect and neither training nor finetune imports the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from cnntool.config import RunConfig
from cnntool.errors import CheckpointError, ConfigError
from cnntool.finetune.core import FinetuneOptions, prepare_finetune
from cnntool.finetune.strategy import Plan
from cnntool.training.checkpoint import load_checkpoint
from cnntool.training.engine import Setup, Trainer, prepare_train, set_threads
from cnntool.training.events import CompositeReporter, Reporter
from cnntool.training.rundir import read_json

PREPARERS: dict[str, Callable[[dict[str, Any], Reporter], Setup]] = {
    "train": lambda options, reporter: prepare_train(RunConfig.from_flat(options), reporter),
    "finetune": lambda options, reporter: prepare_finetune(RunConfig.from_flat(options),
                                                           FinetuneOptions.from_flat(options), reporter),
}


def preparer(command: str) -> Callable[[dict[str, Any], Reporter], Setup]:
    if command not in PREPARERS:
        raise ConfigError(f"command {command!r} does not train (known: {', '.join(PREPARERS)})")
    return PREPARERS[command]


def run_setup(setup: Setup, reporter: Reporter | None = None, run_dir: Path | None = None,
              resume_from: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train a prepared Setup; with ``--log`` the trackers observe the same events as the view (on the main
    process only, and they never fail the run)."""
    from cnntool.training.distributed import is_main_process

    reporter = reporter or Reporter()
    tcfg = setup.cfg.train
    if tcfg.log and is_main_process():
        from cnntool.tracking import TrackingReporter

        reporter = CompositeReporter(TrackingReporter(tcfg.log, tcfg.mlflow_uri, tcfg.log_group), reporter)
    return Trainer(setup, reporter).run(run_dir=run_dir, resume_from=resume_from)


def check_trackers(cfg: RunConfig) -> None:
    """Each tracker --log names is installed: one line naming the pip command, before any data is loaded."""
    if cfg.train.log:
        from cnntool.tracking import check_log

        check_log(cfg.train.log)


def fit(cfg: RunConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """Train a model as `cnntool train` does and return the final metrics (plus ``run_dir``)."""
    if cfg.resume:
        return resume(cfg.resume, reporter)
    cfg.validate()  # before anything uses a value (threads)
    check_trackers(cfg)
    set_threads(cfg.train.threads)
    return run_setup(prepare_train(cfg, reporter), reporter)


def finetune(cfg: RunConfig, ft: FinetuneOptions | None = None, reporter: Reporter | None = None) -> dict[str, Any]:
    """Fine-tune as `cnntool finetune` does and return the final metrics (plus ``run_dir``)."""
    if cfg.resume:
        return resume(cfg.resume, reporter)
    cfg.validate()
    check_trackers(cfg)
    set_threads(cfg.train.threads)
    setup = prepare_finetune(cfg, ft or FinetuneOptions(), reporter)
    plan: Plan = setup.plan  # type: ignore[attr-defined]
    start = plan.trainable()
    result = run_setup(setup, reporter)
    result.update(strategy=plan.strategy, trainable_start=start, trainable_params=plan.trainable())
    return result


def resume(run_dir: str | Path, reporter: Reporter | None = None) -> dict[str, Any]:
    """Continue a run from its last.pt to the same result an uninterrupted run reaches."""
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.name in ("last.pt", "best.pt"):
        run_dir = run_dir.parent  # a checkpoint inside a run directory means that run
    if not run_dir.is_dir():
        raise CheckpointError(f"--resume {run_dir}: no such run directory")
    if not (run_dir / "config.json").is_file():
        raise CheckpointError(f"--resume {run_dir}: not a run directory (no config.json)")
    if (run_dir / "summary.json").is_file():
        raise CheckpointError(f"--resume {run_dir}: that run already finished (summary.json); start a new run")
    saved = read_json(run_dir / "config.json")
    if not isinstance(saved, dict) or not isinstance(saved.get("options"), dict):
        raise CheckpointError(f"{run_dir / 'config.json'}: not a run's config (a mapping with an 'options' mapping)")
    command = saved.get("command", "train")
    if command not in PREPARERS:
        raise CheckpointError(f"--resume {run_dir}: runs of '{command}' cannot be resumed")
    if not (run_dir / "last.pt").is_file():
        raise CheckpointError(f"--resume {run_dir}: the run stopped before it saved its first checkpoint (no "
                              f"last.pt, written after the first evaluation); nothing to resume, start it again")
    last = load_checkpoint(run_dir / "last.pt")
    options = saved["options"]
    set_threads(options.get("threads"))
    setup = PREPARERS[command](options, reporter or Reporter())
    check_trackers(setup.cfg)
    return run_setup(setup, reporter, run_dir=run_dir, resume_from=last)
