"""cnntool eval: metrics against hand-computed numbers, agreement with train, spec class order."""

from __future__ import annotations

import json

from pathlib import Path
import numpy as np
import pytest
import torch
from _helpers_viz import check_png, make_folder_dataset, train_run
from typer.testing import CliRunner

from cnntool.cli.main import app
from cnntool.evaluation import (
    averages,
    compute_metrics,
    confusion_matrix,
    per_class_metrics,
    row_normalise,
    topk_accuracy,
)
from cnntool.viz.confusion import confusion_figsize

runner = CliRunner()


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("evalruns"), "base")


# --------------------------------------------------------------------------- metrics by hand

LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
PREDS = np.array([0, 0, 1, 1, 2, 2, 2, 0, 2, 0])
# true \ pred   0  1  2  3
HAND_CM = np.array([[2, 1, 0, 0],
                    [0, 1, 1, 0],
                    [1, 0, 3, 0],
                    [1, 0, 0, 0]])


def test_confusion_matrix_by_hand():
    assert (confusion_matrix(LABELS, PREDS, 4) == HAND_CM).all()


def test_per_class_metrics_by_hand():
    m = per_class_metrics(HAND_CM)
    # class 0: tp 2, predicted 4, actual 3; class 1: tp 1, predicted 2, actual 2;
    # class 2: tp 3, predicted 4, actual 4; class 3: tp 0, predicted 0, actual 1
    np.testing.assert_allclose(m["precision"], [2 / 4, 1 / 2, 3 / 4, 0.0])
    np.testing.assert_allclose(m["recall"], [2 / 3, 1 / 2, 3 / 4, 0.0])
    f1 = [2 * (0.5 * 2 / 3) / (0.5 + 2 / 3), 0.5, 0.75, 0.0]
    np.testing.assert_allclose(m["f1"], f1)
    assert m["support"].tolist() == [3, 2, 4, 1]
    avg = averages(m)
    assert avg["macro"]["precision"] == pytest.approx((0.5 + 0.5 + 0.75 + 0) / 4)
    assert avg["weighted"]["recall"] == pytest.approx((3 * 2 / 3 + 2 * 0.5 + 4 * 0.75) / 10)  # = accuracy
    assert avg["weighted"]["f1"] == pytest.approx(sum(f * s for f, s in zip(f1, [3, 2, 4, 1])) / 10)
    assert avg["macro"]["support"] == 10


def test_per_class_metrics_match_sklearn():
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 6, 200), rng.integers(0, 6, 200)
    ours = per_class_metrics(confusion_matrix(y, p, 6))
    ref = precision_recall_fscore_support(y, p, labels=range(6), zero_division=0)
    for key, r in zip(("precision", "recall", "f1", "support"), ref):
        np.testing.assert_allclose(ours[key], r)


def test_row_normalise_and_topk():
    norm = row_normalise(HAND_CM)
    np.testing.assert_allclose(norm.sum(1), 1.0)
    assert norm[2, 2] == pytest.approx(0.75)
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [1.0, 3.0, 2.0]])
    labels = torch.tensor([1, 2, 2])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, labels, 2) == pytest.approx(1.0)


def test_compute_metrics_confident_wrong_order():
    logits = torch.tensor([[5.0, 0.0], [0.0, 1.0], [0.0, 4.0], [2.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1])
    m = compute_metrics(logits, labels, ["a", "b"], top_wrong=10)
    assert [w["index"] for w in m["confident_wrong"]] == [2, 3, 1]
    assert m["confident_wrong"][0]["pred"] == "b" and m["confident_wrong"][0]["true"] == "a"
    assert m["top1"] == pytest.approx(0.25)
    assert m["top5"] is None  # only two classes


# --------------------------------------------------------------------------- end to end

def test_eval_json_agrees_with_train(digits_run):
    summary = json.loads((digits_run / "summary.json").read_text())
    r = runner.invoke(app, ["eval", str(digits_run), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["n"] == summary["test_n"]
    assert d["top1"] == pytest.approx(summary["test_acc"], abs=1e-6)
    assert d["loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    assert d["top5"] >= d["top1"]
    assert len(d["per_class"]) == 10 and sum(c["support"] for c in d["per_class"]) == d["n"]
    cm = np.array(d["confusion_matrix"])
    assert cm.sum() == d["n"] and np.trace(cm) / d["n"] == pytest.approx(d["top1"])
    assert d["weighted_avg"]["recall"] == pytest.approx(d["top1"])
    out = digits_run / "eval"
    for name in ("metrics.json", "per_class.csv", "confusion.csv", "confusion_normalized.csv"):
        assert (out / name).is_file()
    for name in ("confusion.png", "confusion_normalized.png"):
        check_png(out / name, confusion_figsize(10))
    rows = (out / "confusion.csv").read_text().splitlines()
    assert rows[0].split(",")[1:] == [str(i) for i in range(10)] and len(rows) == 11
    if d["most_confident_wrong"]:
        check_png(out / "confident_wrong.png")
        conf = [w["confidence"] for w in d["most_confident_wrong"]]
        assert conf == sorted(conf, reverse=True)


def test_eval_human_output_and_out_dir(digits_run, tmp_path):
    r = runner.invoke(app, ["eval", str(digits_run / "best.pt"), "--split", "val", "--out", str(tmp_path / "e"),
                            "--no-plots"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "e" / "metrics.json").is_file()
    assert not (tmp_path / "e" / "confusion.png").exists()
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["split"] == "val"


def test_eval_uses_spec_class_order_not_folders(tmp_path):
    """Trained on folders a/b/c; evaluated on a tree holding only b/ and c/: folder order would make them
    classes 0 and 1, the spec says 1 and 2."""
    make_folder_dataset(tmp_path / "train", {"a": 20, "b": 128, "c": 235}, n=30)
    make_folder_dataset(tmp_path / "bc", {"b": 128, "c": 235}, n=12, seed=1)
    run = train_run(tmp_path / "runs", "folders", data=str(tmp_path / "train"), epochs=4, lr=0.01)
    r = runner.invoke(app, ["eval", str(run), "--data", str(tmp_path / "bc"), "--split", "train",
                            "--json", "--no-plots"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["class_names"] == ["a", "b", "c"]
    support = [c["support"] for c in d["per_class"]]
    assert support[0] == 0 and support[1] > 0 and support[2] > 0
    assert d["top1"] > 0.8


def test_eval_of_a_one_channel_model_on_a_folder_of_png_files(tmp_path, digits_run):
    """Folder images decode to the model's channels, as predict does: a digits model on grayscale PNGs gets
    the top-1 that predict's labels give on the same files."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (x, y) in enumerate(zip(d.images[:60], d.target)):
        (tmp_path / "pngs" / str(y)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((x * 15.9).astype(np.uint8)).save(tmp_path / "pngs" / str(y) / f"{i}.png")
    r = runner.invoke(app, ["eval", str(digits_run), "--data", str(tmp_path / "pngs"), "--json", "--no-plots"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["n"] == 60 and got["top1"] > 0.5
    preds = runner.invoke(app, ["predict", str(digits_run), str(tmp_path / "pngs"), "--json"])
    assert preds.exit_code == 0, preds.output
    rows = [json.loads(line) for line in preds.stdout.splitlines() if line.strip()]
    right = [Path(row["path"]).parent.name == row["label"] for row in rows]
    assert len(rows) == 60 and sum(right) / 60 == pytest.approx(got["top1"])


def test_eval_errors_are_one_line(tmp_path, digits_run):
    r = runner.invoke(app, ["eval", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "nope" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["eval", str(digits_run), "--split", "dev"])
    assert r.exit_code == 2 and "--split 'dev'" in r.output


@pytest.mark.parametrize("args, flag", [
    (["--batch-size", "0"], "--batch-size"),
    (["-b", "-3"], "--batch-size"),
    (["--top-wrong", "-1"], "--top-wrong"),
])
def test_eval_count_options_have_a_minimum(digits_run, args, flag):
    r = runner.invoke(app, ["eval", str(digits_run), *args])
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and flag in errors[0] and "range()" not in r.output
    assert "Traceback" not in r.output


def test_evaluate_run_rejects_batch_size_zero(digits_run):
    from cnntool.errors import ConfigError
    from cnntool.evaluation import evaluate_run

    with pytest.raises(ConfigError, match="--batch-size 0 must be >= 1"):
        evaluate_run(digits_run, batch_size=0, plots=False)


def test_eval_folder_is_scored_whole_even_with_one_class(tmp_path):
    """`eval RUN --data FOLDER`: every image of a flat folder (not its "test" part), a folder of one of the
    model's classes included; averages over the classes the folder holds; the mistakes figure names files."""
    from cnntool.metrics import averages, per_class_metrics

    make_folder_dataset(tmp_path / "train", {"a": 20, "b": 128, "c": 235}, n=30)
    make_folder_dataset(tmp_path / "bc", {"b": 128, "c": 235}, n=11, seed=1)
    make_folder_dataset(tmp_path / "only_c", {"c": 235}, n=7, seed=2)
    run = train_run(tmp_path / "runs", "folders_whole", data=str(tmp_path / "train"), epochs=3, lr=0.01)
    r = runner.invoke(app, ["eval", str(run), "--data", str(tmp_path / "bc"), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["split"] == "all" and d["n"] == 22  # the whole folder, not a split of it
    assert d["evaluated_classes"] == ["b", "c"]
    cm = np.array(d["confusion_matrix"])
    expected = averages(per_class_metrics(cm), [1, 2])
    assert d["macro_avg"]["recall"] == pytest.approx(expected["macro"]["recall"])
    assert Path(d["files"]["metrics_json"]).parent.name == "eval_bc"
    one = runner.invoke(app, ["eval", str(run), "--data", str(tmp_path / "only_c"), "--json", "--no-plots"])
    assert one.exit_code == 0, one.output
    d1 = json.loads(one.stdout)
    assert d1["n"] == 7 and d1["evaluated_classes"] == ["c"]
    assert [c["support"] for c in d1["per_class"]] == [0, 0, 7]
    assert d1["macro_avg"]["recall"] == pytest.approx(d1["top1"])  # one class: macro recall = accuracy
    test_only = runner.invoke(app, ["eval", str(run), "--data", str(tmp_path / "bc"), "--split", "test", "--json",
                                    "--no-plots"])
    assert test_only.exit_code == 0 and json.loads(test_only.stdout)["n"] < 22


def test_eval_writes_roc_pr_and_reliability(digits_run, tmp_path):
    r = runner.invoke(app, ["eval", str(digits_run), "--out", str(tmp_path / "e"), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    for key in ("roc_png", "pr_png", "reliability_png"):
        check_png(d["files"][key])
    assert len(d["roc_auc"]) == 10 and 0.5 < d["macro_roc_auc"] <= 1.0 and 0.0 <= d["ece"] <= 1.0
    assert d["macro_roc_auc"] == pytest.approx(np.mean(d["roc_auc"]))
