"""Data sets, splits, preprocessing and batch augmentation."""

from cnntool.data.bundle import DataBundle, FileSplit, TensorSplit, load_data, resolve_input_size
from cnntool.data.pipeline import BatchPipeline
from cnntool.data.sources import DATASETS, register_dataset

__all__ = ["DATASETS", "BatchPipeline", "DataBundle", "FileSplit", "TensorSplit", "load_data",
           "register_dataset", "resolve_input_size"]
