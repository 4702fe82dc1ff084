"""Transfer learning: pretrained weights, a fresh head, and a strategy for which blocks train when.

``cnntool.runner.finetune`` trains what ``prepare_finetune`` prepares.
"""

from cnntool.finetune.blocks import block_params, blocks
from cnntool.finetune.core import FinetuneOptions, build_model, prepare_finetune
from cnntool.finetune.strategy import STRATEGIES, Plan
from cnntool.finetune.weights import resolve_source, transfer

__all__ = ["STRATEGIES", "FinetuneOptions", "Plan", "block_params", "blocks", "build_model",
           "prepare_finetune", "resolve_source", "transfer"]
