"""TrackingReporter: the training engine's events, forwarded to the trackers named by ``--log``."""

from __future__ import annotations

import importlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Callable

from cnntool.tracking.base import Tracker, TrackedRun, read_state, write_state
from cnntool.tracking.names import TRACKERS, parse_log

log = logging.getLogger("cnntool.tracking")

# Final numbers of summary.json logged as the run's summary ("final/<key>"; per-point series keep their names).
FINAL_KEYS = ("best_epoch", "epochs_run", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
              "params", "seconds")
FIGURES = {"confusion": "confusion_png", "confusion_normalized": "confusion_normalized_png"}


def warn(text: str) -> None:
    """One line on stderr (logging's last-resort handler, or whatever handler the application set up)."""
    log.warning("warning: %s", text)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class TrackingReporter:
    """Observer of the engine's events (duck-types cnntool.training.events.Reporter; tracking imports nothing
    from training). Opens one tracker per name when the run starts, logs each evaluation point, and at the end
    the final metrics and the test confusion matrix (drawn by cnntool.evaluation.evaluate_run into RUN/eval)."""

    def __init__(self, log: str | None, mlflow_uri: str | None = None, group: str | None = None,
                 confusion: bool = True):
        self.names = parse_log(log)
        self.mlflow_uri, self.group, self.confusion = mlflow_uri, group, confusion
        self.trackers: list[Tracker] = []
        self.step = 0
        self.device = "cpu"
        self.run_dir: Path | None = None
        self.state: dict[str, Any] = {}

    # ------------------------------------------------------------------ engine events

    def on_data(self, what: str, done: int, total: int) -> None: ...

    def on_epoch_start(self, epoch: int, steps: int) -> None: ...

    def on_step(self, epoch: int, step_in_epoch: int, steps: int, loss: float) -> None: ...

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None: ...

    def on_start(self, info: dict[str, Any]) -> None:
        self.run_dir = run_dir = Path(info["run_dir"])
        self.device = str(info.get("device", "cpu"))
        self.state = read_state(run_dir)
        group = self.group or run_dir.resolve().parent.name or "cnntool"
        for name in self.names:
            run = TrackedRun(run_dir, run_dir.name, group, self.mlflow_uri, self.state.setdefault(name, {}))
            try:
                cls = importlib.import_module(TRACKERS[name].module).Tracker
                self.trackers.append(cls(run))
            except Exception as e:  # noqa: BLE001 - a tracker never fails the run
                warn(f"{name} tracking is off for this run ({type(e).__name__}: {_first_line(e)})")
        params = hyper_params(run_dir, info)
        self._each(lambda t: t.log_params(params))
        self._save_state()

    def on_eval(self, row: dict[str, Any], is_best: bool) -> None:
        self.step = int(row["step"])
        metrics = {k: float(v) for k, v in row.items() if k != "step" and _number(v)}
        self._each(lambda t: t.log_metrics(metrics, self.step))

    def on_end(self, result: dict[str, Any]) -> None:
        if not self.trackers:
            return
        final = {k: float(result[k]) for k in FINAL_KEYS if _number(result.get(k))}
        for name, path in self._figures(result).items():
            self._each(lambda t: t.log_image(name, path, self.step))
        self._each(lambda t: t.log_summary(final, self.step))
        self._close("finished")

    def on_abort(self, error: BaseException) -> None:
        killed = type(error).__name__ in ("TrialPruned", "KeyboardInterrupt")
        self._close("killed" if killed else "failed")

    # ------------------------------------------------------------------ internals

    def _figures(self, result: dict[str, Any]) -> dict[str, Path]:
        if not self.confusion:
            return {}
        try:
            # The one import upward (tracking -> evaluation): the figure code lives there and is reused, not redrawn.
            from cnntool.evaluation import evaluate_run

            files = evaluate_run(result["run_dir"], device=self.device).files
        except Exception as e:  # noqa: BLE001
            warn(f"tracking: no confusion matrix for {result.get('run_dir')} ({type(e).__name__}: {_first_line(e)})")
            return {}
        return {name: Path(files[key]) for name, key in FIGURES.items() if key in files}

    def _each(self, call: Callable[[Tracker], None]) -> None:
        for t in list(self.trackers):
            try:
                call(t)
            except Exception as e:  # noqa: BLE001 - a tracker never fails the run
                warn(f"{t.name} tracking stopped ({type(e).__name__}: {_first_line(e)}); the run goes on")
                self.trackers.remove(t)
                try:
                    t.close("failed")
                except Exception:  # noqa: BLE001
                    pass

    def _close(self, status: str) -> None:
        self._each(lambda t: t.close(status))
        self.trackers = []
        self._save_state()

    def _save_state(self) -> None:
        if self.run_dir is not None and self.run_dir.is_dir() and any(self.state.values()):
            try:
                write_state(self.run_dir, self.state)
            except OSError as e:
                warn(f"tracking: could not write {self.run_dir / 'tracking.json'} ({e})")


def hyper_params(run_dir: Path, info: dict[str, Any]) -> dict[str, Any]:
    """The resolved options of config.json, plus the command and the model's size."""
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    params = {"command": config.get("command", "train"), **config.get("options", {})}
    for key in ("arch", "params", "trainable_params", "input_size", "num_classes"):
        if key in info:
            params[key] = info[key]
    return params


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""
