"""What every tracker implements, and the facts about the run it tracks."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "tracking.json"  # in the run directory: each tracker's run id, so --resume continues the same run


@dataclass
class TrackedRun:
    run_dir: Path
    name: str  # the run directory's name (train3, trial7, seed2, ...)
    group: str  # the sweep study, recipe or seeds folder; else the folder holding the run
    mlflow_uri: str | None = None
    state: dict[str, Any] = field(default_factory=dict)  # this tracker's part of tracking.json (read and written)


class Tracker:
    """One library's view of one run. The observer calls these in order (params once, metrics per evaluation
    point, images and the summary at the end, close last) and guards every call: an exception drops the
    tracker with one warning, never the run."""

    name = ""

    def __init__(self, run: TrackedRun):
        self.run = run

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_image(self, name: str, path: Path, step: int) -> None: ...

    def log_summary(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self, status: str = "finished") -> None:
        """status: finished, failed, or killed (a pruned trial, an interrupt)."""


def scalar_params(params: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """Hyper-parameters as the scalar types every tracker accepts (None -> "none", lists -> their JSON)."""
    out: dict[str, bool | int | float | str] = {}
    for k, v in params.items():
        if v is None:
            out[k] = "none"
        elif isinstance(v, (bool, int, float, str)):
            out[k] = v
        else:
            out[k] = json.dumps(v)
    return out


def read_state(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".tracking", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, run_dir / STATE_FILE)
