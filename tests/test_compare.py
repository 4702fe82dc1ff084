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
    from cnntool.runner import fit

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


def test_compare_takes_a_seeds_folder_and_skips_files_a_glob_brings(tmp_path):
    """`cnntool compare runs/bn-seeds/seed* runs/train` (the shell also expands seeds.json, seeds.png)."""
    from cnntool.config import RunConfig
    from cnntool.runner import fit

    seeds = tmp_path / "bn-seeds"
    for seed in (0, 1):
        fit(RunConfig.from_flat({"epochs": 1, "threads": 1, "seed": seed}, runs_root=str(seeds), name=f"seed{seed}"))
    (seeds / "seeds.json").write_text("{}")
    (seeds / "seeds.png").write_bytes(b"\x89PNG")
    shell_glob = sorted(str(p) for p in seeds.glob("seed*"))
    assert len(shell_glob) == 4
    result = runner.invoke(app, ["compare", *shell_glob, "--no-plot", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert [Path(r["run"]).name for r in out["runs"]] == ["seed0", "seed1"]
    assert sorted(Path(p).name for p in out["skipped"]) == ["seeds.json", "seeds.png"]
    assert "skipped 2 path(s) that are not runs" in result.stderr
    folder = runner.invoke(app, ["compare", str(seeds), "--no-plot", "--json"])
    assert folder.exit_code == 0, folder.output
    assert [Path(r["run"]).name for r in json.loads(folder.stdout.strip().splitlines()[-1])["runs"]] == \
        ["seed0", "seed1"]
    missing = runner.invoke(app, ["compare", str(tmp_path / "nope"), "--no-plot"])
    assert missing.exit_code == 1 and "no such run directory" in missing.stderr
