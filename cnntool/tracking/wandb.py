"""Weights & Biases: offline unless an API key is configured (``wandb sync RUN/wandb/offline-run-*`` later).

Mode: ``$WANDB_MODE`` when set; else online when ``$WANDB_API_KEY`` or a netrc entry for api.wandb.ai exists;
else offline. Files go under ``$WANDB_DIR`` when set, else into the run directory; project ``$WANDB_PROJECT``
(default ``cnntool``), group = the sweep study / recipe / seeds folder.
"""

from __future__ import annotations

import netrc
import os
import uuid
from pathlib import Path
from typing import Any

import wandb

from cnntool.tracking import base

PROJECT = "cnntool"


def mode() -> str:
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


class Tracker(base.Tracker):
    name = "wandb"

    def __init__(self, run: base.TrackedRun):
        super().__init__(run)
        run_id = run.state.get("id") or uuid.uuid4().hex[:12]
        where = os.environ.get("WANDB_DIR") or str(run.run_dir)
        self.wb = wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT), group=run.group, name=run.name,
                             id=run_id, resume="allow", dir=where, mode=mode(), reinit="create_new",
                             settings=wandb.Settings(silent=True, console="off", disable_git=True,
                                                     x_disable_stats=True, save_code=False))
        run.state.update({"id": run_id, "dir": str(Path(self.wb.dir).parent)})

    def log_params(self, params: dict[str, Any]) -> None:
        self.wb.config.update(base.scalar_params(params), allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.wb.log(metrics, step=step)

    def log_image(self, name: str, path: Path, step: int) -> None:
        self.wb.log({name: wandb.Image(str(path))}, step=step)

    def log_summary(self, metrics: dict[str, float], step: int) -> None:
        self.wb.summary.update({f"final/{k}": v for k, v in metrics.items()})

    def close(self, status: str = "finished") -> None:
        self.wb.finish(exit_code=0 if status == "finished" else 1)
