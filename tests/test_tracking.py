"""Experiment tracking: what TensorBoard, MLflow and W&B hold, read back with each library's own reader and
compared with metrics.csv / summary.json exactly; a failing tracker never fails the run; a missing or unknown
tracker is one line before anything runs. Never touches the network (W&B offline, MLflow on local sqlite)."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import numpy as np
import pytest

import mlflow  # noqa: E402,F401 - [dev] installs the trackers: a missing one fails, never skips
import tensorboard  # noqa: E402,F401
import wandb  # noqa: E402,F401

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time")
FINAL = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "best_epoch", "params")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One digits run (2 epochs, an evaluation every 10 steps too) logged to all three trackers."""
    from cnntool.config import RunConfig, TrainConfig
    from cnntool.runner import fit
    from cnntool.training.rundir import read_metrics

    root = tmp_path_factory.mktemp("tracked")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_DIR", str(root / "wandb-home"))
    mp.setenv("WANDB_CONFIG_DIR", str(root / "wandb-config"))
    mp.setenv("WANDB_CACHE_DIR", str(root / "wandb-cache"))
    mp.setenv("WANDB_SILENT", "true")
    mp.delenv("WANDB_API_KEY", raising=False)
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    (root / "wandb-home").mkdir()
    uri = f"sqlite:///{root / 'ml.db'}"
    cfg = RunConfig(train=TrainConfig(epochs=2, eval_every=10, threads=1, log="tensorboard,wandb,mlflow",
                                      mlflow_uri=uri), runs_root=str(root / "runs"), name="tracked")
    result = fit(cfg)
    mp.undo()
    run_dir = Path(result["run_dir"])
    rows = read_metrics(run_dir / "metrics.csv")
    assert len(rows) >= 4  # inside-epoch points and epoch ends
    return {"run_dir": run_dir, "rows": rows, "summary": json.loads((run_dir / "summary.json").read_text()),
            "uri": uri, "root": root, "config": json.loads((run_dir / "config.json").read_text())}


def test_tensorboard_event_files_hold_metrics_csv(tracked):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(tracked["run_dir"] / "tensorboard"),
                                             size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    rows = tracked["rows"]
    for col in COLUMNS:  # TensorBoard stores float32: the csv value rounded to float32, at the same step
        got = [(e.step, e.value) for e in acc.Scalars(col)]
        assert got == [(r["step"], float(np.float32(r[col]))) for r in rows], col
    last = rows[-1]["step"]
    for key in FINAL:
        (event,) = acc.Scalars(f"final/{key}")
        assert (event.step, event.value) == (last, float(np.float32(tracked["summary"][key])))
    tags = acc.Tags()
    assert {"confusion", "confusion_normalized"} <= set(tags["images"])
    from io import BytesIO

    from PIL import Image

    png = acc.Images("confusion")[0].encoded_image_string
    with Image.open(BytesIO(png)) as im:
        assert im.format == "PNG" and im.width > 100
    assert "options" in "".join(tags["tensors"])  # add_text
    assert acc.PluginTagToContent("hparams")  # the HParams tab: options + final metrics


def test_mlflow_run_holds_metrics_csv_params_and_figures(tracked):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracked["uri"])
    exp = client.get_experiment_by_name("runs")  # group: the folder holding the run
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "tracked" and run.info.status == "FINISHED"
    rows = tracked["rows"]
    for col in COLUMNS:
        hist = sorted(client.get_metric_history(run.info.run_id, col), key=lambda m: m.step)
        assert [(m.step, m.value) for m in hist] == [(r["step"], r[col]) for r in rows], col
    for key in FINAL:
        assert run.data.metrics[f"final/{key}"] == tracked["summary"][key]
    options = tracked["config"]["options"]
    assert run.data.params["lr"] == str(options["lr"]) and run.data.params["model"] == "simplecnn"
    assert run.data.params["bn"] == "none"  # None options are spelled out
    files = {f.path for f in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/confusion.png", "figures/confusion_normalized.png"} <= files
    assert (tracked["root"] / "mlflow-artifacts").is_dir()  # beside the sqlite file, not in the working dir
    state = json.loads((tracked["run_dir"] / "tracking.json").read_text())
    assert state["mlflow"]["run_id"] == run.info.run_id


def _wandb_records(path: Path):
    """Records of a .wandb file: wandb's LevelDB-style log (7-byte file header, 32 KiB blocks, 7-byte chunk
    headers), each record one wandb protobuf ``Record`` parsed with wandb's own message class."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_offline_run_holds_metrics_csv(tracked):
    state = json.loads((tracked["run_dir"] / "tracking.json").read_text())["wandb"]
    run_dir = Path(state["dir"])
    assert run_dir.name.startswith("offline-run-") and str(tracked["root"] / "wandb-home") in str(run_dir)
    (log_file,) = run_dir.glob("run-*.wandb")
    history, config, summary, exit_code = {}, {}, {}, None
    for r in _wandb_records(log_file):
        kind = r.WhichOneof("record_type")
        if kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            history[items["_step"]] = items
        elif kind == "config":
            config.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.config.update})
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update})
        elif kind == "exit":
            exit_code = r.exit.exit_code
    rows = tracked["rows"]
    assert sorted(history) == [r["step"] for r in rows]
    for r in rows:
        assert {c: history[r["step"]][c] for c in COLUMNS} == {c: r[c] for c in COLUMNS}
    assert history[rows[-1]["step"]]["confusion/_type"] == "image-file"  # the image, at the last point
    assert config["lr"] == tracked["config"]["options"]["lr"] and config["model"] == "simplecnn"
    for key in FINAL:
        assert summary[f"final/{key}"] == tracked["summary"][key]
    assert exit_code == 0


def test_a_failing_tracker_is_one_warning_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    from cnntool.config import RunConfig, TrainConfig
    from cnntool.tracking import tensorboard as tb
    from cnntool.runner import fit

    def broken(self, metrics, step):
        raise OSError("disk full")

    monkeypatch.setattr(tb.Tracker, "log_metrics", broken)
    with caplog.at_level(logging.WARNING, logger="cnntool.tracking"):
        result = fit(RunConfig(train=TrainConfig(epochs=1, threads=1, log="tensorboard"), runs_root=str(tmp_path)))
    assert (Path(result["run_dir"]) / "summary.json").is_file()
    lines = [r.getMessage() for r in caplog.records if r.name == "cnntool.tracking"]
    assert lines == ["warning: tensorboard tracking stopped (OSError: disk full); the run goes on"]


@pytest.mark.parametrize("value, words", [
    ("tensorbored", "unknown tracker 'tensorbored'"),
    ("wandb", "pip install 'cnntool[wandb]'"),
])
def test_unknown_or_missing_tracker_is_one_line_before_anything_runs(tmp_path, monkeypatch, value, words):
    from typer.testing import CliRunner

    from cnntool.cli.main import app
    from cnntool.tracking import names

    monkeypatch.setitem(names.TRACKERS, "wandb", names.TrackerInfo("wandb", "x", "no_such_package_wandb"))
    res = CliRunner().invoke(app, ["train", "--epochs", "1", "--runs-root", str(tmp_path), "--log", value])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0]
    assert list(tmp_path.iterdir()) == []  # no run directory


def test_sweep_trials_are_tracked_runs_grouped_by_study(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from cnntool.experiments.space import parse_space
    from cnntool.experiments.sweep import run_sweep

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    space = parse_space({"base": {"epochs": 1, "threads": 1}, "params": {"lr": [3e-3, 1e-2]}, "pruner": "none"},
                        "grid")
    result = run_sweep(space, trials=2, sampler="grid", runs_root=tmp_path, plots=False, study="tiny",
                       log="mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'sweep-tiny' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["trial0", "trial1"]
    by_name = {r.info.run_name: r for r in runs}
    for t in result["trials"]:
        run = by_name[Path(t["run_dir"]).name]
        assert float(run.data.params["lr"]) == t["params"]["lr"]
        assert run.data.metrics["final/val_acc"] == t["value"]
    best = result["best"]["command"]
    assert "--log" not in best  # the reproduce command stays a plain run


def test_help_imports_no_tracker_library():
    import subprocess
    import sys

    commands = [["train"], ["finetune"], ["sweep"], ["recipe", "run"]]
    code = (f"import sys\nfrom cnntool.cli.main import app\nfor c in {commands!r}:\n    try:\n"
            "        app([*c, '--help'])\n    except SystemExit:\n        pass\n"
            "print('MODULES:' + ' '.join(m for m in sys.modules if '.' not in m))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.count("--log") >= len(commands)
    loaded = set(out.rsplit("MODULES:", 1)[1].split())
    assert not loaded & {"tensorboard", "wandb", "mlflow", "torch"}


def test_resume_continues_the_same_mlflow_run(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from cnntool.config import RunConfig, TrainConfig
    from cnntool.training import Reporter
    from cnntool.runner import fit, resume
    from cnntool.training.rundir import read_metrics

    class Stop(Reporter):
        def on_epoch_start(self, epoch, steps):
            if epoch == 2:
                raise KeyboardInterrupt

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    cfg = RunConfig(train=TrainConfig(epochs=2, threads=1, log="mlflow", mlflow_uri=uri), runs_root=str(tmp_path),
                    name="killed")
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, Stop())
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name(tmp_path.name).experiment_id])
    assert run.info.status == "KILLED"
    resume(tmp_path / "killed")
    (again,) = client.search_runs([client.get_experiment_by_name(tmp_path.name).experiment_id])
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    rows = read_metrics(tmp_path / "killed" / "metrics.csv")
    hist = sorted(client.get_metric_history(run.info.run_id, "val_acc"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in hist] == [(r["step"], r["val_acc"]) for r in rows] and len(rows) == 2
