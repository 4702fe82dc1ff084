"""cnntool train --seeds: one run per seed, a correct aggregate, a band plot; --jobs gives the same runs."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnntool.cli.main import app
from cnntool.errors import ConfigError
from cnntool.experiments.seeds import aggregate, parse_seeds

runner = CliRunner()


def test_parse_seeds():
    assert parse_seeds("0-9") == list(range(10))
    assert parse_seeds("0,3,7") == [0, 3, 7]
    assert parse_seeds("0-2, 5") == [0, 1, 2, 5]
    for bad in ("", "a", "3-1", "1,1", "0-2,2"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_aggregate_single_run_has_zero_std():
    assert aggregate([{"test_acc": 0.5}])["test_acc"] == {"mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5, "n": 1}


def _train(*args):
    result = runner.invoke(app, ["train", "--epochs", "1", "--threads", "1", "--quiet", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_three_seeds_and_their_aggregate(tmp_path):
    out = _train("--seeds", "0-2", "--runs-root", str(tmp_path), "--dropout", "0.2")
    group = tmp_path / "train-seeds"
    assert out["dir"] == str(group) and out["seeds"] == [0, 1, 2]
    summaries = []
    for s in (0, 1, 2):
        run = group / f"seed{s}"
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["options"]["seed"] == s and cfg["options"]["dropout"] == 0.2
        summaries.append(json.loads((run / "summary.json").read_text()))
    assert len({s["test_acc"] for s in summaries} | {s["val_loss"] for s in summaries}) > 1  # seeds differ
    saved = json.loads((group / "seeds.json").read_text())
    for metric in ("test_acc", "test_loss", "val_acc", "train_loss"):
        vals = [s[metric] for s in summaries]
        agg = saved["aggregate"][metric]
        assert agg["mean"] == pytest.approx(statistics.fmean(vals), abs=1e-12)
        assert agg["std"] == pytest.approx(statistics.stdev(vals), abs=1e-12)
        assert (agg["min"], agg["max"], agg["n"]) == (min(vals), max(vals), 3)
    assert [r["test_acc"] for r in saved["runs"]] == [s["test_acc"] for s in summaries]
    assert (group / "seeds.png").stat().st_size > 0 and out["plot"] == str(group / "seeds.png")


def test_jobs_run_the_same_seeds_in_parallel(tmp_path):
    seq = _train("--seeds", "0,1", "--runs-root", str(tmp_path), "--name", "seq")
    par = _train("--seeds", "0,1", "--jobs", "2", "--runs-root", str(tmp_path), "--name", "par")
    assert Path(par["dir"]).name == "par-seeds"
    assert [r["test_acc"] for r in par["runs"]] == [r["test_acc"] for r in seq["runs"]]
    assert par["aggregate"]["test_acc"] == seq["aggregate"]["test_acc"]


def test_seeds_refuse_resume(tmp_path):
    result = runner.invoke(app, ["train", "--seeds", "0-1", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "--resume" in result.output
