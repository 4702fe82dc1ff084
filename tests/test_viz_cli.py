"""cnntool viz end to end: every command writes legible, correctly sized, non-blank PNGs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _helpers_viz import check_png, train_run
from PIL import Image
from typer.testing import CliRunner

from cnntool.cli.main import app
from cnntool.viz.cam import cam_figsize
from cnntool.viz.confusion import confusion_figsize
from cnntool.viz.curves import CURVES_SIZE, group_runs, read_run
from cnntool.viz.predictions import examples_figsize
from cnntool.viz.saliency import saliency_figsize

runner = CliRunner()


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vizruns")
    return {"base": train_run(root, "base"), "base_s1": train_run(root, "base_s1", seed=1),
            "bn": train_run(root, "bn", bn=True)}


def viz(*args):
    r = runner.invoke(app, ["viz", *map(str, args), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["files"]


def test_curves_single_and_overlaid(runs, tmp_path):
    (path,) = viz("curves", runs["base"])
    assert path == str(runs["base"] / "plots" / "curves.png")
    check_png(path, CURVES_SIZE)
    (path,) = viz("curves", runs["base"], runs["base_s1"], runs["bn"], "--out", tmp_path)
    check_png(path, CURVES_SIZE)
    labels = [label for label, _ in group_runs([read_run(runs[k]) for k in ("base", "base_s1", "bn")])]
    assert labels == ["base (2 seeds)", "bn"]


def test_confusion_and_predictions(runs, tmp_path):
    paths = viz("confusion", runs["base"], "--out", tmp_path)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["confusion_test.png", "confusion_test_normalized.png"]
    for p in paths:
        check_png(p, confusion_figsize(10))
    (path,) = viz("predictions", runs["base"], "--rows", 10, "--cols", 3, "--out", tmp_path)
    arr = check_png(path, examples_figsize(10, 3))
    (path,) = viz("predictions", runs["base"], "--rows", 2, "--cols", 2, "--wrong", "--out", tmp_path / "w")
    red = (arr[..., 0] > 180) & (arr[..., 1] < 80) & (arr[..., 2] < 80)
    wrong = check_png(path, examples_figsize(2, 2))
    wred = (wrong[..., 0] > 180) & (wrong[..., 1] < 80) & (wrong[..., 2] < 80)
    assert wred.mean() > red.mean()  # only wrong ones: more red frames per pixel


def test_dataset_and_augment(tmp_path):
    paths = viz("dataset", "digits", "--out", tmp_path)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["digits_samples.png", "digits_classes.png"]
    check_png(paths[0], (10 * 1.6, 1.85 + 0.5))
    check_png(paths[1], (8.0, 5.0))
    (path,) = viz("augment", "digits", "--ops", "crop_pad=2,hflip,rotate=20,cutout", "--rows", 2, "--out", tmp_path)
    check_png(path, (5 * 1.9, 2 * 2.1 + 0.5))
    r = runner.invoke(app, ["viz", "augment", "digits", "--ops", "twirl"])
    assert r.exit_code == 2 and "twirl" in r.output


def test_filters(runs, tmp_path):
    (path,) = viz("filters", runs["base"], "--max-filters", 16, "--out", tmp_path)
    assert path.endswith("filters_0.png")
    check_png(path)
    (path,) = viz("filters", runs["base"], "--layer", "2", "--max-filters", 4, "--out", tmp_path)
    check_png(path)
    r = runner.invoke(app, ["viz", "filters", str(runs["base"]), "--layer", "fc9"])
    assert r.exit_code == 2 and "'fc9'" in r.output and "Traceback" not in r.output


def test_features_from_split_and_file(runs, tmp_path):
    paths = viz("features", runs["base"], "--from-split", "test", "--layers", 2, "--max-channels", 16,
                "--out", tmp_path)
    assert len(paths) == 2
    for p in paths:
        check_png(p)
    img = tmp_path / "seven.png"
    Image.fromarray((np.random.default_rng(0).random((16, 16)) * 255).astype(np.uint8), "L").save(img)
    paths = viz("features", runs["base"], img, "--max-channels", 4, "--out", tmp_path / "f")
    assert len(paths) == 3 and "seven" in paths[0]
    check_png(paths[0], (4 * 1.3 + 1.3 * 1.6, 1.3 + 0.9))


def test_cam_and_saliency(runs, tmp_path):
    (path,) = viz("cam", runs["base"], "--from-split", "test", "--n", 3, "--out", tmp_path)
    assert path.endswith("/gradcam.png")  # simplecnn has two dense layers after GAP: no CAM
    check_png(path, cam_figsize(3, 2))
    (path,) = viz("cam", runs["base"], "--from-split", "test", "--n", 2, "--wrong", "--layer", "1",
                  "--out", tmp_path)
    check_png(path, cam_figsize(2, 2))
    r = runner.invoke(app, ["viz", "cam", str(runs["base"]), "--from-split", "test", "--method", "cam"])
    assert r.exit_code == 1 and "CAM does not apply" in r.output
    for method in ("guided", "gradient"):
        (path,) = viz("saliency", runs["base"], "--from-split", "test", "--n", 2, "--method", method,
                      "--out", tmp_path)
        assert path.endswith(f"saliency_{method}.png")
        check_png(path, saliency_figsize(2))


def test_viz_errors_are_one_line(runs, tmp_path):
    r = runner.invoke(app, ["viz", "saliency", str(runs["base"])])
    assert r.exit_code == 2 and "--from-split" in r.output
    r = runner.invoke(app, ["viz", "cam", str(runs["base"]), str(tmp_path / "missing.png")])
    assert r.exit_code == 1 and "missing.png" in r.output
    r = runner.invoke(app, ["viz", "curves", str(tmp_path)])
    assert r.exit_code == 1 and "metrics" in r.output


def test_help_imports_nothing_heavy():
    code = ("import sys; from typer.testing import CliRunner; from cnntool.cli.main import app; "
            "r = CliRunner(); [r.invoke(app, a) for a in (['viz', '--help'], ['viz', 'cam', '--help'], "
            "['eval', '--help'], ['summary', '--help'])]; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'torchvision', 'numba') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("command", ["dataset", "augment"])
def test_dataset_and_augment_download_the_data_they_name(tmp_path, monkeypatch, command):
    from cnntool.data import bundle

    r = runner.invoke(app, ["viz", command, "cifar10", "--data-dir", str(tmp_path)])
    assert r.exit_code == 1 and "--download" in r.output  # the error names a flag this command has
    seen = []

    def fake(cfg):
        seen.append(cfg.download)
        raise bundle.DataError("stop here")

    monkeypatch.setattr(bundle, "load_data", fake)
    r = runner.invoke(app, ["viz", command, "cifar10", "--data-dir", str(tmp_path), "--download"])
    assert r.exit_code == 1 and seen == [True]
