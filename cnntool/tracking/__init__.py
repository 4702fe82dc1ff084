"""Experiment tracking: TensorBoard, Weights & Biases and MLflow as observers of the training engine.

``--log tensorboard,wandb,mlflow`` (TrainConfig.log) makes the engine add a :class:`TrackingReporter` next
to the progress view: it receives the same events (start, each evaluation point, end) and forwards them to
one tracker per name (``cnntool/tracking/<name>.py``, each a :class:`~cnntool.tracking.base.Tracker`).
A tracker that fails is dropped with one warning line; the run goes on.

Importing this package imports no tracker library (they load when a tracked run starts).
"""

from cnntool.tracking.names import TRACKERS, check_log, parse_log, pip_hint
from cnntool.tracking.observer import TrackingReporter

__all__ = ["TRACKERS", "TrackingReporter", "check_log", "parse_log", "pip_hint"]
