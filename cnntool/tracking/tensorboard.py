"""TensorBoard through torch.utils.tensorboard: event files in RUN/tensorboard (``tensorboard --logdir runs``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from cnntool.tracking import base

LOG_DIR = "tensorboard"


class Tracker(base.Tracker):
    """Scalars under the metrics.csv column names, the options as text and as hparams (with the final metrics,
    for TensorBoard's HParams tab), images under their figure names."""

    name = "tensorboard"

    def __init__(self, run: base.TrackedRun):
        super().__init__(run)
        self.writer = SummaryWriter(log_dir=str(run.run_dir / LOG_DIR), flush_secs=10)
        self.params: dict[str, Any] = {}

    def log_params(self, params: dict[str, Any]) -> None:
        self.params = base.scalar_params(params)
        rows = "\n".join(f"| {k} | {v} |" for k, v in self.params.items())
        self.writer.add_text("options", "| option | value |\n|---|---|\n" + rows, 0)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def log_image(self, name: str, path: Path, step: int) -> None:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
        self.writer.add_image(name, array, step, dataformats="HWC")

    def log_summary(self, metrics: dict[str, float], step: int) -> None:
        final = {f"final/{k}": v for k, v in metrics.items()}
        writer = self.writer._get_file_writer()
        for summary in hparams(self.params, final):  # the HParams tab, in this run's own event file
            writer.add_summary(summary)
        for key, value in final.items():
            self.writer.add_scalar(key, value, step)

    def close(self, status: str = "finished") -> None:
        self.writer.close()
