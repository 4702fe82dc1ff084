"""Shared fixtures: small data made on the fly (image folders, MNIST/CIFAR files) and tiny runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Tests share 2 cores with each other; keep every process to its own threads and out of the user's cache.
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """Named data sets never read a real ./data folder from the developer's machine."""
    monkeypatch.setenv("CNNTOOL_DATA_DIR", str(tmp_path / "no-data-here"))


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """One small digits run (simplecnn, BN + dropout, 3 epochs) shared by read-only tests."""
    from cnntool.config import ModelConfig, RunConfig, TrainConfig
    from cnntool.runner import fit

    root = tmp_path_factory.mktemp("runs")
    result = fit(RunConfig(model=ModelConfig(bn=True, dropout=0.3), train=TrainConfig(epochs=3, seed=0),
                           runs_root=str(root)))
    return Path(result["run_dir"]), result
