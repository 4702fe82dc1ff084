"""cnntool sweep: space parsing, command lines, pruning hook, grid + failures in-process, and two processes
sharing one journal storage whose best trial's printed command reproduces its score exactly."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnntool.errors import ConfigError
from cnntool.experiments.space import load_space, parse_space

runner = CliRunner()

SMALL_SPACE = """
command: train
monitor: val_acc
base: {data: digits, model: simplecnn, epochs: 2, threads: 1, seed: 0}
params:
  lr: {type: float, low: 1e-3, high: 1e-2, log: true}
  dropout: [0.0, 0.25]
  batch_size: {type: int, low: 32, high: 64, step: 32}
pruner: {startup_trials: 2, warmup_epochs: 0}
"""


def test_parse_space_types_and_yaml_number_strings():
    space = parse_space({"base": {"lr": "1e-3", "epochs": "2"},
                         "params": {"bn": [True, False], "dense": {"type": "int", "low": 32, "high": 64, "log": True},
                                    "dropout": {"type": "float", "low": 0, "high": 0.5, "step": 0.25}}})
    assert space.base == {"lr": 1e-3, "epochs": 2}  # YAML reads 1e-3 as a string: coerced
    assert [d.name for d in space.params] == ["bn", "dense", "dropout"]
    assert space.params[2].grid_values() == [0.0, 0.25, 0.5]
    assert space.maximize and space.pruner == {"startup_trials": 3, "warmup_epochs": 0}
    assert parse_space({"monitor": "val_loss", "params": {"lr": [0.1]}, "pruner": "none"}).pruner is None


@pytest.mark.parametrize("doc, words", [
    ({"params": {"lrr": [0.1]}}, "not a 'train' option"),
    ({"params": {"lr": {"type": "float", "low": 0, "high": 1, "log": True}}}, "low > 0"),
    ({"params": {"lr": {"type": "normal"}}}, "type 'normal'"),
    ({"params": {"lr": [0.1]}, "base": {"lr": 0.2}}, "both fixed"),
    ({"params": {"name": ["a"]}}, "chosen by the sweep"),
    ({"params": {}}, "names no dimension"),
    ({"params": {"lr": [0.1]}, "monitor": "test_acc"}, "must be one of val_acc, val_loss"),
])
def test_parse_space_errors_name_the_problem(doc, words):
    with pytest.raises(ConfigError, match=words):
        parse_space(doc)


def test_command_line_spells_every_option():
    from cnntool.experiments.sweep import command_line

    line = command_line("train", {"data": "digits", "lr": 0.0012345678901234567, "bn": False, "bias": False,
                                  "hflip": False, "channels_last": True, "dense": None, "filters": "16,32"})
    assert line == ("cnntool train --data digits --lr 0.0012345678901234567 --no-bn --no-bias --channels-last "
                    "--filters 16,32")
    assert float(shlex.split(line)[5]) == 0.0012345678901234567  # floats round-trip exactly


def test_pruning_reporter_reports_epoch_ends_only():
    import optuna

    from cnntool.experiments.sweep import SweepReporter, _PruningReporter

    class FakeTrial:
        number = 0
        reported: list = []

        def report(self, value, step):
            self.reported.append((value, step))

        def should_prune(self):
            return True

    trial = FakeTrial()
    hook = _PruningReporter(trial, "val_acc", True, SweepReporter())
    hook.on_eval({"epoch": 0.5, "val_acc": 0.3}, True)  # an --eval-every point: ignored
    with pytest.raises(optuna.TrialPruned):
        hook.on_eval({"epoch": 1.0, "val_acc": 0.4}, True)
    assert trial.reported == [(0.4, 1)]


def test_grid_sweep_records_failures_and_stops_at_grid_size(tmp_path):
    import optuna

    from cnntool.experiments.sweep import run_sweep

    space = parse_space({"base": {"epochs": 1, "threads": 1}, "params": {"dropout": [0.0, 1.5], "lr": [3e-3, 1e-2]},
                         "pruner": "none"}, "grid")
    result = run_sweep(space, trials=10, sampler="grid", runs_root=tmp_path, plots=False)
    trials = result["trials"]
    assert len(trials) == 4  # capped at the grid size
    assert sorted((t["params"]["dropout"], t["params"]["lr"]) for t in trials) == \
        [(0.0, 3e-3), (0.0, 1e-2), (1.5, 3e-3), (1.5, 1e-2)]
    for t in trials:
        if t["params"]["dropout"] == 1.5:  # invalid option: FAIL with the reason, and the sweep goes on
            assert t["state"] == "FAIL" and "--dropout 1.5" in t["error"]
        else:
            assert t["state"] == "COMPLETE"
            assert (Path(t["run_dir"]) / "summary.json").is_file()
    assert result["best"]["params"]["dropout"] == 0.0
    study = optuna.load_study(study_name="grid", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "sweep-grid" / "optuna.journal"))))
    assert len(study.trials) == 4


def test_two_processes_share_one_study_and_best_command_reproduces(tmp_path):
    from cnntool.cli.main import app
    from cnntool.experiments.sweep import run_sweep

    space_file = tmp_path / "small.yaml"
    space_file.write_text(SMALL_SPACE)
    journal = tmp_path / "shared.journal"
    cmd = [sys.executable, "-m", "cnntool", "sweep", str(space_file), "--trials", "6", "--storage", str(journal),
           "--study", "s", "--runs-root", str(tmp_path / "runs"), "--no-plots", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    ran = [json.loads(out)["ran_here"] for out, _ in outs]
    assert sum(ran) == 6 and all(n >= 1 for n in ran)  # both processes worked on the same study

    # Joining the full study runs nothing more and summarises it (plots included).
    result = run_sweep(load_space(space_file), trials=6, storage=str(journal), study="s",
                       runs_root=tmp_path / "runs")
    assert result["ran_here"] == 0 and len(result["trials"]) == 6
    assert sorted(t["number"] for t in result["trials"]) == list(range(6))
    for t in result["trials"]:
        assert t["state"] in ("COMPLETE", "PRUNED")
        run = Path(t["run_dir"])
        assert run == tmp_path / "runs" / "sweep-s" / f"trial{t['number']}"
        assert (run / "config.json").is_file() and (run / "metrics.csv").is_file()
        assert (run / "summary.json").is_file() == (t["state"] == "COMPLETE")
    assert Path(result["plots"]["history"]).is_file() and Path(result["plots"]["parallel"]).is_file()
    assert set(result["importances"]) <= {"lr", "dropout", "batch_size"}

    best = result["best"]
    line = best["command"]
    for key, value in best["params"].items():
        assert f"--{key.replace('_', '-')} {value!r}" in line or f"--{key.replace('_', '-')} {value}" in line
    assert "--seed 0" in line and "--epochs 2" in line and "--threads 1" in line
    args = shlex.split(line)[1:] + ["--runs-root", str(tmp_path / "repro"), "--quiet", "--json"]
    rerun = runner.invoke(app, args)
    assert rerun.exit_code == 0, rerun.output
    again = json.loads(rerun.stdout.strip().splitlines()[-1])
    original = json.loads((Path(best["run_dir"]) / "summary.json").read_text())
    assert again["test_acc"] == original["test_acc"] == best["test_acc"]
    assert again["val_acc"] == original["val_acc"] == best["value"]
