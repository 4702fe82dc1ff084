"""Training engine: run directory contract, determinism, resume, non-finite loss, safe checkpoints."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from cnntool.cli.main import app
from cnntool.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from cnntool.errors import CheckpointError, TrainingError
from cnntool.models import register_model
from cnntool.spec import ModelSpec
from cnntool.training import Reporter, load_checkpoint, load_model, save_checkpoint
from cnntool.runner import fit, resume
from cnntool.training.evaluate import evaluate
from cnntool.training.rundir import read_metrics


def small(tmp_path: Path, **train) -> RunConfig:
    return RunConfig(model=ModelConfig(bn=True, dropout=0.2), data=DataConfig(augment="digits"),
                     train=TrainConfig(**{"epochs": 3, "threads": 1, **train}), runs_root=str(tmp_path / "runs"))


def test_run_directory_contract(digits_run):
    run_dir, result = digits_run
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "spec.json", "metrics.csv", "best.pt", "last.pt", "summary.json"} <= names
    assert not any(n.endswith(".tmp") for n in names)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["command"] == "train"
    assert config["options"]["bn"] is True and config["options"]["epochs"] == 3
    assert config["resolved"]["seed"] == 0 and config["resolved"]["threads"] >= 1
    assert config["environment"]["torch"] == torch.__version__
    spec = ModelSpec.load(run_dir / "spec.json")
    assert spec.arch == "simplecnn" and spec.class_names == [str(i) for i in range(10)]
    assert spec.model_kwargs == {"bn": True, "dropout": 0.3}  # options not given: the builder's defaults
    rows = read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1.0, 2.0, 3.0]
    assert json.loads((run_dir / "summary.json").read_text())["test_acc"] == result["test_acc"]
    last = load_checkpoint(run_dir / "last.pt")
    assert {"optimizer", "scheduler", "rng", "epoch", "model", "spec"} <= set(last)
    assert last["epoch"] == 3


def test_best_checkpoint_rebuilds_the_model_and_its_test_accuracy(digits_run):
    run_dir, result = digits_run
    model, spec, ckpt = load_model(run_dir)
    from cnntool.data import BatchPipeline, load_data

    data = load_data(DataConfig(), input_size=spec.input_size, mean=spec.mean, std=spec.std,
                     class_names=spec.class_names)
    test = evaluate(model, data.split("test"), BatchPipeline(spec.mean, spec.std))
    assert test["acc"] == pytest.approx(result["test_acc"], abs=1e-7)
    assert ckpt["metrics"]["val_acc"] == max(r["val_acc"] for r in read_metrics(run_dir))


def test_same_seed_same_metrics_different_seed_different(tmp_path):
    a = fit(small(tmp_path, epochs=2, seed=3))
    b = fit(small(tmp_path, epochs=2, seed=3))
    c = fit(small(tmp_path, epochs=2, seed=4))
    strip = [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(a["run_dir"])]
    assert strip == [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(b["run_dir"])]
    assert a["test_loss"] == b["test_loss"]
    assert a["test_loss"] != c["test_loss"]
    assert Path(a["run_dir"]).name == "train" and Path(b["run_dir"]).name == "train2"


class KillAfter(Reporter):
    """Simulates a run killed during epoch ``epoch`` (after the previous epoch's last.pt was written)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_step(self, epoch, step_in_epoch, steps, loss):
        if epoch == self.epoch and step_in_epoch == 3:
            raise KeyboardInterrupt


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    full = fit(small(tmp_path, epochs=4, eval_every=7, scheduler="onecycle"))
    with pytest.raises(KeyboardInterrupt):
        fit(small(tmp_path, epochs=4, eval_every=7, scheduler="onecycle"), KillAfter(3))
    killed = tmp_path / "runs" / "train2"
    assert load_checkpoint(killed / "last.pt")["epoch"] == 2
    resumed = resume(killed)
    for key in ("test_loss", "test_acc", "val_loss", "val_acc", "best_epoch"):
        assert resumed[key] == full[key], key
    full_rows = [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(full["run_dir"])]
    resumed_rows = [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(killed)]
    assert resumed_rows == full_rows


def test_kill_before_first_checkpoint_leaves_no_run(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        fit(small(tmp_path), KillAfter(1))
    assert not any((tmp_path / "runs").iterdir())


class _NanAfter(nn.Module):
    def __init__(self, num_classes, in_channels, after):
        super().__init__()
        self.lin = nn.Linear(in_channels * 64, num_classes)
        self.calls, self.after = 0, after

    def forward(self, x):
        if self.training:
            self.calls += 1
        out = self.lin(x.flatten(1))
        return out * float("nan") if self.training and self.calls > self.after else out


@register_model("test_nan_after_40", min_size=8)
def _nan_model(num_classes: int, in_channels: int) -> nn.Module:
    return _NanAfter(num_classes, in_channels, after=40)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = RunConfig(model=ModelConfig(model="test_nan_after_40"), train=TrainConfig(epochs=5, threads=1),
                    runs_root=str(tmp_path / "runs"))
    with pytest.raises(TrainingError, match="non-finite loss at step 41"):
        fit(cfg)
    run = tmp_path / "runs" / "train"
    assert load_checkpoint(run / "last.pt")["epoch"] == 2  # 17 steps per epoch: two good epochs
    assert all(torch.isfinite(v).all() for v in load_checkpoint(run / "best.pt")["model"].values())


def test_early_stopping_and_val_loss_monitor(tmp_path):
    r = fit(small(tmp_path, epochs=12, patience=1, monitor="val_loss", lr=0.05, optimizer="sgd"))
    rows = read_metrics(r["run_dir"])
    assert r["stopped_early"] and len(rows) < 12
    assert r["val_loss"] == min(row["val_loss"] for row in rows)


def test_eval_every_adds_rows_between_epochs(tmp_path):
    r = fit(small(tmp_path, epochs=2, eval_every=5))
    steps = [row["step"] for row in read_metrics(r["run_dir"])]
    assert steps == [5, 10, 15, 17, 20, 25, 30, 34]


def test_checkpoint_needing_arbitrary_unpickling_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pt"
    torch.save({"format": "cnntool-checkpoint", "model": Evil()}, bad)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(bad)
    assert not marker.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, {"model": {"w": torch.zeros(1)}})
    with pytest.raises(CheckpointError, match="no model spec"):
        load_model(plain)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_cli_train_json_and_quiet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", "--model", "cnn5", "--filters", "doubling16", "--kernels",
                                      "5,5,3,3,3", "--activation", "gelu", "--epochs", "1", "--json", "--quiet",
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["arch"] == "cnn5" and 0 <= data["test_acc"] <= 1
    assert Path(data["run_dir"]).is_dir()
    spec = json.loads((Path(data["run_dir"]) / "spec.json").read_text())
    assert spec["input_size"] == [32, 32]  # cnn5 cannot take 8×8 digits: upsized to its minimum


def test_state_dict_pickle_protocol_is_plain(digits_run):
    """best.pt holds only tensors and JSON values: it loads with the plain weights_only unpickler."""
    run_dir, _ = digits_run
    ckpt = torch.load(run_dir / "best.pt", weights_only=True)
    json.dumps({k: v for k, v in ckpt.items() if k not in ("model",)})
    assert all(isinstance(v, torch.Tensor) for v in ckpt["model"].values())
    assert pickle  # the module is used above through torch.save of the Evil object


def test_resume_refuses_finished_and_foreign_directories(digits_run, tmp_path):
    run_dir, _ = digits_run
    with pytest.raises(CheckpointError, match="already finished"):
        resume(run_dir)
    with pytest.raises(CheckpointError, match="already finished"):
        resume(run_dir / "last.pt")  # a checkpoint inside a run means that run
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a run directory"):
        resume(tmp_path / "empty")


def _lenet_spec(**changes) -> ModelSpec:
    spec = ModelSpec(arch="lenet", num_classes=3, class_names=["a", "b", "c"], in_channels=3,
                     input_size=[16, 16], mean=[0.5] * 3, std=[0.25] * 3)
    return spec.replace(**changes) if changes else spec


def test_weights_that_do_not_fit_name_keys_and_shapes(tmp_path):
    from cnntool.training.checkpoint import build_from_spec

    rgb = _lenet_spec()
    gray = _lenet_spec(in_channels=1, mean=[0.5], std=[0.25])
    # a checkpoint whose spec says 1 channel but whose weights were trained on 3
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, {"spec": gray.to_dict(), "model": build_from_spec(rgb).state_dict()})
    key = next(k for k, v in build_from_spec(rgb).state_dict().items() if v.dim() == 4)
    want = list(build_from_spec(rgb).state_dict()[key].shape)
    got = [want[0], 1, *want[2:]]
    with pytest.raises(CheckpointError) as err:
        load_model(bad)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: weights do not fit the model (")
    assert f"{key}: checkpoint {want} vs model {got}" in msg
    assert "Error(s) in loading" not in msg and "\n" not in msg


@pytest.mark.parametrize("changes, words", [
    ({"arch": "nosuchnet"}, "nosuchnet"),
    ({"model_kwargs": {"bogus_option": 1}}, "bogus_option"),
])
def test_spec_errors_name_the_checkpoint(tmp_path, changes, words):
    from cnntool.errors import CnnToolError
    from cnntool.training.checkpoint import build_from_spec

    spec = _lenet_spec()
    bad = tmp_path / "odd.pt"
    save_checkpoint(bad, {"spec": {**spec.to_dict(), **changes}, "model": build_from_spec(spec).state_dict()})
    with pytest.raises(CnnToolError) as err:
        load_model(bad)
    assert str(err.value).startswith(f"{bad}: ") and words in str(err.value)
    result = CliRunner().invoke(app, ["eval", str(bad)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0] and words in errors[0]


def test_checkpoint_from_a_newer_format_is_refused(digits_run, tmp_path):
    run_dir, _ = digits_run
    ckpt = load_checkpoint(run_dir / "best.pt")
    torch.save({**ckpt, "format_version": 999}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer cnntool"):
        load_model(tmp_path / "future.pt")


def test_summary_writes_whole_epochs_as_integers(digits_run):
    run_dir, _ = digits_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert isinstance(summary["best_epoch"], int) and isinstance(summary["epochs_run"], int)
    assert '"best_epoch": 2.0' not in (run_dir / "summary.json").read_text()
