"""Bad input: one clear line naming the problem, exit 1, no traceback, and no run directory left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import make_image_folder


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnntool", *args], capture_output=True, text=True, cwd=cwd,
                          env={**__import__("os").environ, "NO_COLOR": "1", "COLUMNS": "200"})


def assert_clean_failure(proc: subprocess.CompletedProcess, *needles: str, code: int = 1) -> None:
    """code 2: a bad option value (usage); 1: a problem with the data, model or files."""
    assert proc.returncode == code, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr  # exactly one error line (progress lines may precede it)
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize("args,needle,code", [
    (["--epochs", "0"], "--epochs 0", 2),
    (["--lr", "-1"], "--lr -1", 2),
    (["--lr", "inf"], "--lr inf", 2),
    (["--dropout", "1.5"], "--dropout 1.5", 2),
    (["--img-size", "100000"], "--img-size 100000", 2),
    (["--seed", "99999999999999999999"], "--seed", 2),
    (["--optimizer", "rmsprop"], "rmsprop", 2),
    (["--model", "simplecnn", "--filters", "equal32"], "--filters", 2),
    (["--epochs", "many"], "--epochs", 2),
    (["--no-such-flag"], "--no-such-flag", 2),
    (["--data", "/no/such/dir"], "/no/such/dir", 1),
    (["--model", "nosuchnet"], "nosuchnet", 2),  # a bad option value: exit 2
    (["--model", "cnn5", "--img-size", "8"], "--img-size", 1),
])
def test_bad_option_values(tmp_path, args, needle, code):
    proc = run_cli(["train", "--epochs", "1", *args] if args[0] != "--epochs" else ["train", *args], tmp_path)
    assert_clean_failure(proc, needle, code=code)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_debug_shows_traceback(tmp_path):
    proc = run_cli(["--debug", "train", "--lr", "-1"], tmp_path)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_offline_named_dataset_says_what_to_do(tmp_path):
    proc = run_cli(["train", "--data", "cifar10", "--data-dir", str(tmp_path / "d")], tmp_path)
    assert_clean_failure(proc, "--download", "CIFAR-10")


@pytest.mark.parametrize("breakage,needle", [
    ("truncated", "truncated"),
    ("text", "not an image"),
    ("empty", "no images"),
])
def test_broken_image_folder(tmp_path, breakage, needle):
    data = make_image_folder(tmp_path / "data", per_class=4, ext="jpg")
    if breakage == "truncated":
        bad = data / "cat" / "cat_0.jpg"
        bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
        name = "cat_0.jpg"
    elif breakage == "text":
        bad = data / "dog" / "notes.jpg"
        bad.write_text("this is not a picture\n")
        name = "notes.jpg"
    else:
        (data / "empty_class").mkdir()
        name = "empty_class"
    proc = run_cli(["train", "--data", str(data), "--epochs", "1"], tmp_path)
    assert_clean_failure(proc, needle, name)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_existing_run_name_is_never_overwritten(tmp_path):
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    (tmp_path / "runs" / "mine" / "keep.txt").write_text("precious")
    proc = run_cli(["train", "--epochs", "1", "--name", "mine"], tmp_path)
    assert_clean_failure(proc, "already exists")
    assert (tmp_path / "runs" / "mine" / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in (tmp_path / "runs" / "mine").iterdir()) == ["keep.txt"]
