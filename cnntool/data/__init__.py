"""Data sets, splits, preprocessing and batch augmentation.

Names are imported lazily: ``cnntool.data.preprocess`` (numpy + Pillow) must load without torch,
because `cnntool predict` on an ONNX file never imports torch.
"""

import importlib

_LAZY = {"DataBundle": "bundle", "FileSplit": "bundle", "TensorSplit": "bundle", "load_data": "bundle",
         "resolve_input_size": "bundle", "BatchPipeline": "pipeline", "DATASETS": "sources",
         "register_dataset": "sources"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"cnntool.data.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnntool.data' has no attribute {name!r}")
