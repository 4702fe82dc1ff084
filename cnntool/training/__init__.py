"""Training engine, evaluation loops, checkpoints and run directories."""

from cnntool.training.checkpoint import load_checkpoint, load_model, save_checkpoint
from cnntool.training.engine import Setup, Trainer, fit, prepare_train, resume
from cnntool.training.events import Reporter

__all__ = ["Reporter", "Setup", "Trainer", "fit", "load_checkpoint", "load_model", "prepare_train", "resume",
           "save_checkpoint"]
