"""`cnntool train --conv-impl numba`: the Numba convolution trains like torch's."""

from __future__ import annotations

import pytest

from cnntool.config import ModelConfig, RunConfig, TrainConfig
from cnntool.conv import Conv2d as NumbaConv2d
from cnntool.training import load_model
from cnntool.runner import fit
from cnntool.training.engine import prepare_train
from cnntool.training.rundir import read_metrics


def _cfg(tmp_path, impl):
    return RunConfig(model=ModelConfig(conv_impl=impl, bn=True), train=TrainConfig(epochs=1, eval_every=2, threads=1),
                     runs_root=str(tmp_path / impl))


def test_numba_conv_training_follows_torch(tmp_path):
    setup = prepare_train(_cfg(tmp_path, "numba"))
    assert any(isinstance(m, NumbaConv2d) for m in setup.model.modules())
    torch_run = fit(_cfg(tmp_path, "torch"))
    numba_run = fit(_cfg(tmp_path, "numba"))
    t_rows, n_rows = read_metrics(torch_run["run_dir"]), read_metrics(numba_run["run_dir"])
    assert [r["step"] for r in t_rows] == [r["step"] for r in n_rows]
    for t, n in list(zip(t_rows, n_rows))[:3]:  # the first steps: float32 rounding differences stay tiny
        assert n["train_loss"] == pytest.approx(t["train_loss"], rel=2e-3)
        assert n["val_loss"] == pytest.approx(t["val_loss"], rel=2e-3)
    # the checkpoint holds plain Conv2d keys, so it reloads as an ordinary torch model
    model, spec, _ = load_model(numba_run["run_dir"])
    assert not any(isinstance(m, NumbaConv2d) for m in model.modules())
