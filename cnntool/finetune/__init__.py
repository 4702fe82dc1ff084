"""Transfer learning: pretrained weights, a fresh head, and a strategy for which blocks train when.

Importing this package registers ``PREPARERS["finetune"]``, so ``--resume`` works for finetune runs.
"""

from cnntool.finetune.blocks import block_params, blocks
from cnntool.finetune.core import FinetuneOptions, build_model, finetune, prepare_finetune
from cnntool.finetune.strategy import STRATEGIES, Plan
from cnntool.finetune.weights import resolve_source, transfer

__all__ = ["STRATEGIES", "FinetuneOptions", "Plan", "block_params", "blocks", "build_model", "finetune",
           "prepare_finetune", "resolve_source", "transfer"]
