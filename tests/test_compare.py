"""cnntool compare: table values from the runs' own files, differing options, sorting, globs, curves PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnntool.cli.main import app
from cnntool.training.rundir import read_metrics

runner = CliRunner()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from cnntool.config import RunConfig
    from cnntool.training import fit

    root = tmp_path_factory.mktemp("cmp")
    for name, lr in (("slow", 3e-4), ("fast", 3e-3)):
        fit(RunConfig.from_flat({"epochs": 2, "threads": 1, "lr": lr}, runs_root=str(root / "runs"), name=name))
    return root


def test_compare_glob_sort_and_json(two_runs):
    png = two_runs / "cmp.png"
    result = runner.invoke(app, ["compare", str(two_runs / "runs" / "*"), "--sort", "val_acc", "--json",
                                 "--out", str(png)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["differing_options"] == ["lr"]
    rows = out["runs"]
    assert [Path(r["run"]).name for r in rows] == sorted(
        ["slow", "fast"], key=lambda n: -max(m["val_acc"] for m in read_metrics(two_runs / "runs" / n)))
    for r in rows:
        metrics = read_metrics(r["run"])
        summary = json.loads((Path(r["run"]) / "summary.json").read_text())
        assert r["best_val_acc"] == max(m["val_acc"] for m in metrics)
        assert r["final_val_loss"] == metrics[-1]["val_loss"] and r["epochs"] == 2
        assert r["test_acc"] == summary["test_acc"] and r["seconds"] == summary["seconds"]
        assert r["options"]["lr"] in (3e-4, 3e-3)
    assert rows[0]["best_val_acc"] >= rows[1]["best_val_acc"]
    assert png.stat().st_size > 0 and out["plot"] == str(png)


def test_compare_sort_ascending_and_errors(two_runs):
    runs = [str(two_runs / "runs" / "slow"), str(two_runs / "runs" / "fast")]
    result = runner.invoke(app, ["compare", *runs, "--sort", "lr", "--json", "--no-plot"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert [r["options"]["lr"] for r in out["runs"]] == [3e-4, 3e-3] and out["plot"] is None
    bad = runner.invoke(app, ["compare", str(two_runs / "nothing*"), "--no-plot"])
    assert bad.exit_code == 1 and "matches no run directory" in bad.output
    bad = runner.invoke(app, ["compare", *runs, "--sort", "colour", "--no-plot"])
    assert bad.exit_code == 2 and "--sort 'colour'" in bad.output
