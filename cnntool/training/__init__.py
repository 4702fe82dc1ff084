"""Training engine, evaluation loops, checkpoints and run directories (``cnntool.runner`` drives them)."""

from cnntool.training.checkpoint import load_checkpoint, load_model, save_checkpoint
from cnntool.training.engine import Setup, Trainer, prepare_train
from cnntool.training.events import Reporter

__all__ = ["Reporter", "Setup", "Trainer", "load_checkpoint", "load_model", "prepare_train", "save_checkpoint"]
