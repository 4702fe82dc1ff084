"""--config FILE for train and finetune: round trip through config.json, flag precedence, precise errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnntool.cli.main import app
from cnntool.configfile import load_config_file, merge_config
from cnntool.errors import ConfigError

runner = CliRunner()
FAST = ["--epochs", "1", "--threads", "1", "--quiet", "--json"]


def _train(*args):
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def _options(run_dir) -> dict:
    return json.loads((Path(run_dir) / "config.json").read_text())["options"]


def test_config_json_reproduces_a_run_exactly(tmp_path):
    first = _train(*FAST, "--runs-root", str(tmp_path), "--bn", "--dropout", "0.2", "--lr", "0.002",
                   "--batch-size", "32", "--augment", "digits")
    again = _train("--config", str(Path(first["run_dir"]) / "config.json"), "--runs-root", str(tmp_path),
                   "--quiet", "--json")
    assert again["run_dir"] != first["run_dir"]
    assert _options(again["run_dir"]) == _options(first["run_dir"])
    for key in ("test_acc", "test_loss", "val_acc", "val_loss", "train_loss", "train_acc"):
        assert again[key] == first[key], key


def test_flags_on_the_command_line_override_the_file(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("epochs: 3\nlr: 1e-3\nbatch-size: 32\nbn: true\ndropout: 0.1\n")
    out = _train("--config", str(cfg), "--epochs", "1", "--dropout", "0.0", "--threads", "1",
                 "--runs-root", str(tmp_path), "--quiet", "--json")
    opts = _options(out["run_dir"])
    assert opts["epochs"] == 1 and opts["dropout"] == 0.0  # given on the command line
    assert opts["lr"] == 1e-3 and opts["batch_size"] == 32 and opts["bn"] is True  # from the file ("1e-3" coerced)


def test_unknown_key_is_one_line_naming_key_and_file(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("epochs: 1\nlearning_rate: 0.1\n")
    result = runner.invoke(app, ["train", "--config", str(cfg), "--runs-root", str(tmp_path)])
    assert result.exit_code == 2
    err = result.output.strip()
    assert len(err.splitlines()) == 1 and "learning_rate" in err and "bad.yaml" in err
    assert not any(tmp_path.glob("train*"))


def test_values_are_type_checked(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"epochs": "many"}))
    with pytest.raises(ConfigError, match="epochs.*'many'"):
        load_config_file(cfg, "train")
    cfg.write_text(json.dumps({"bn": "yes", "lr": "5e-4", "batch-size": 16.0}))
    assert load_config_file(cfg, "train") == {"bn": True, "lr": 5e-4, "batch_size": 16}
    cfg.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="mapping"):
        load_config_file(cfg, "train")


def test_finetune_keys_only_for_finetune(tmp_path):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text("strategy: last-k\nk: 2\nhead: mlp:64\nepochs: 2\n")
    assert load_config_file(cfg, "finetune") == {"strategy": "last-k", "k": 2, "head": "mlp:64", "epochs": 2}
    with pytest.raises(ConfigError, match="unknown key 'strategy' for cnntool train"):
        load_config_file(cfg, "train")
    merged = merge_config({"strategy": "full", "k": 1, "epochs": 10, "lr": 1e-3}, cfg, "finetune", given={"k"})
    assert merged == {"strategy": "last-k", "k": 1, "head": "mlp:64", "epochs": 2, "lr": 1e-3}


def test_finetune_accepts_a_config_file(tmp_path, digits_run):
    run_dir, _ = digits_run
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(f"weights: {run_dir}\nstrategy: linear\nepochs: 3\nthreads: 1\n")
    result = runner.invoke(app, ["finetune", "--config", str(cfg), "--epochs", "1", "--runs-root", str(tmp_path),
                                 "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    opts = _options(json.loads(result.stdout.strip().splitlines()[-1])["run_dir"])
    assert opts["strategy"] == "linear" and opts["epochs"] == 1 and opts["threads"] == 1


def test_binary_config_file_is_one_line_not_utf8(tmp_path):
    cfg = tmp_path / "binary.yaml"
    cfg.write_bytes(b"\xff\xfe\x00b\x00a\x00d\x00")
    with pytest.raises(ConfigError, match=r"binary\.yaml: not UTF-8 text"):
        load_config_file(cfg, "train")
    result = runner.invoke(app, ["train", "--config", str(cfg), "--runs-root", str(tmp_path)])
    assert result.exit_code != 0
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: --config {cfg}: not UTF-8 text"], result.stderr
    assert "Traceback" not in result.output and not any(tmp_path.glob("train*"))


def test_bad_value_from_the_file_names_the_file(tmp_path):
    cfg = tmp_path / "nan.yaml"
    cfg.write_text("lr: .nan\nepochs: 1\n")
    result = runner.invoke(app, ["train", "--config", str(cfg), "--runs-root", str(tmp_path)])
    assert result.exit_code != 0
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: --config {cfg}: --lr nan must be a finite number"], result.stderr
    assert not any(tmp_path.glob("train*"))
    # the same bad value given as a flag is not blamed on the file
    result = runner.invoke(app, ["train", "--config", str(cfg), "--lr", "nan", "--runs-root", str(tmp_path)])
    assert result.exit_code != 0 and "error: --lr nan must be a finite number" in result.stderr
    assert str(cfg) not in result.stderr
