"""cnntool eval model.onnx: onnxruntime + numpy only, the same split, numbers and files as `eval RUN`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from cnntool.cli.main import app


@pytest.fixture(scope="module")
def exported(digits_run, tmp_path_factory):
    from cnntool.export.onnx_export import export_onnx

    run_dir, _ = digits_run
    out = tmp_path_factory.mktemp("onnx_eval") / "digits.onnx"
    export_onnx(run_dir, out)
    return run_dir, out


def _eval(*args):
    res = CliRunner().invoke(app, ["eval", *map(str, args), "--json"])
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def test_eval_onnx_equals_eval_run_on_every_image(exported, tmp_path):
    from cnntool.config import RunConfig
    from cnntool.data import BatchPipeline, load_data
    from cnntool.export.onnx_eval import data_config, load_split, predict_split
    from cnntool.export.runtime import OnnxClassifier
    from cnntool.training import load_model
    from cnntool.training.evaluate import predict_logits

    run_dir, path = exported
    a = _eval(path, "-o", tmp_path / "onnx")
    b = _eval(run_dir, "-o", tmp_path / "run", "--no-plots")
    assert a["n"] == b["n"] > 0 and a["data"] == b["data"] == "digits"
    assert a["top1"] == b["top1"] and a["confusion_matrix"] == b["confusion_matrix"]
    assert a["per_class"] == b["per_class"] and a["macro_avg"] == b["macro_avg"]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["top5"] == pytest.approx(b["top5"])
    assert [w["index"] for w in a["most_confident_wrong"]] == [w["index"] for w in b["most_confident_wrong"]]
    for key in ("macro_roc_auc", "macro_ap", "ece"):  # the ranking metrics too, from the same probabilities
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-9), key
    for name in ("metrics.json", "per_class.csv", "confusion.csv", "confusion_normalized.csv", "confusion.png",
                 "confusion_normalized.png", "roc.png", "pr.png", "reliability.png", "confident_wrong.png"):
        assert (tmp_path / "onnx" / name).is_file(), name
    for name in ("per_class.csv", "confusion.csv", "confusion_normalized.csv"):
        assert (tmp_path / "onnx" / name).read_text() == (tmp_path / "run" / name).read_text(), name

    # image by image: the torch-free split is the eval split, and the argmax is torch's
    clf = OnnxClassifier(path)
    part = load_split(data_config(clf.props), clf.spec, "test")
    model, spec, ckpt = load_model(run_dir)
    ref = load_data(RunConfig.from_flat(ckpt["options"]).data, input_size=spec.input_size, mean=spec.mean,
                    std=spec.std, class_names=spec.class_names).split("test")
    assert np.array_equal(part.images, ref.images.numpy()) and np.array_equal(part.labels, ref.labels.numpy())
    logits, _ = predict_logits(model, ref, BatchPipeline(spec.mean, spec.std))
    onnx_pred = predict_split(clf, part, batch_size=50).argmax(1)
    assert np.array_equal(onnx_pred, logits.argmax(1).numpy())
    assert float((onnx_pred == part.labels).mean()) == a["top1"]


def test_onnx_eval_and_predict_import_no_torch(exported, tmp_path):
    _, path = exported
    from PIL import Image

    png = tmp_path / "one.png"
    Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(png)
    code = (
        "import sys\n"
        "from cnntool.cli.main import app\n"
        f"for args in (['eval', {str(path)!r}, '--json', '-o', {str(tmp_path / 'e')!r}],\n"
        f"             ['predict', {str(path)!r}, {str(png)!r}, '--json']):\n"
        "    try:\n        app(args)\n"
        "    except SystemExit as e:\n        assert not e.code, (args, e.code)\n"
        "print('HEAVY:' + ','.join(m for m in ('torch', 'torchvision') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "HEAVY:\n" in out.stdout or out.stdout.rstrip().endswith("HEAVY:"), out.stdout[-300:]
    for name in ("metrics.json", "confusion.png", "roc.png", "pr.png", "reliability.png", "confident_wrong.png"):
        assert (tmp_path / "e" / name).is_file(), name  # every figure of `eval RUN`, drawn without torch


def test_onnx_without_metadata_needs_the_spec_options(exported, tmp_path):
    _, path = exported
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    spec = json.loads(meta["cnntool.spec"])
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    res = CliRunner().invoke(app, ["eval", str(bare), "--data", "digits"])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.stderr
    assert f"{bare} has no cnntool metadata" in lines[0] and "pass --classes, --mean, --std" in lines[0]
    assert "--img-size" not in lines[0]  # the graph fixes the input size
    res = CliRunner().invoke(app, ["eval", str(bare), "--data", "digits", "--classes", "0,1,2", "--mean", "0.5"])
    assert res.exit_code == 2 and "pass --std" in res.stderr

    flags = ["--classes", ",".join(spec["class_names"]), "--mean", ",".join(map(str, spec["mean"])),
             "--std", ",".join(map(str, spec["std"]))]
    a = _eval(bare, "--data", "digits", *flags, "--no-plots", "-o", tmp_path / "bare")
    b = _eval(path, "--no-plots", "-o", tmp_path / "full")
    assert a["top1"] == b["top1"] and a["confusion_matrix"] == b["confusion_matrix"]
    # a file that has its own spec refuses the flags; a run refuses the ONNX-only flags
    res = CliRunner().invoke(app, ["eval", str(path), "--classes", "a,b"])
    assert res.exit_code == 2 and "carries its own spec" in res.stderr and "drop --classes" in res.stderr


@pytest.mark.parametrize("name,content,message", [
    ("text.onnx", b"hello", "onnxruntime cannot load it"),
    ("notes.txt", b"not a model", "onnxruntime cannot load it"),
])
def test_a_non_onnx_file_is_one_line(tmp_path, name, content, message):
    bad = tmp_path / name
    bad.write_bytes(content)
    res = CliRunner().invoke(app, ["eval", str(bad), "--data", "digits"])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and f"{bad}: {message}" in lines[0], res.stderr


def test_unrecorded_data_and_bad_split(exported, tmp_path):
    _, path = exported
    res = CliRunner().invoke(app, ["eval", str(path), "--split", "dev"])
    assert res.exit_code == 2 and "--split 'dev' must be one of train, val, test" in res.stderr
    res = CliRunner().invoke(app, ["eval", str(path), "--data", str(tmp_path / "nowhere")])
    assert res.exit_code == 1 and "neither a known data set" in res.stderr


def test_numpy_metrics_match_torch_and_sklearn():
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import confusion_matrix as sk_cm
    from sklearn.metrics import precision_recall_fscore_support

    from cnntool.metrics import averages, confusion_matrix, cross_entropy, per_class_metrics, topk_accuracy

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 7)).astype(np.float32) * 3
    labels = rng.integers(0, 7, 200)
    labels[:5] = 6  # class 6 present, class 5 maybe never predicted: zero_division paths
    t_logits, t_labels = torch.from_numpy(logits), torch.from_numpy(labels)
    assert cross_entropy(logits, labels) == pytest.approx(float(F.cross_entropy(t_logits, t_labels)), rel=1e-6)
    for k in (1, 3, 7):
        ref = float((t_logits.topk(k, 1).indices == t_labels[:, None]).any(1).double().mean())
        assert topk_accuracy(logits, labels, k) == pytest.approx(ref)
    preds = logits.argmax(1)
    cm = confusion_matrix(labels, preds, 7)
    assert np.array_equal(cm, sk_cm(labels, preds, labels=range(7)))
    per = per_class_metrics(cm)
    p, r, f, s = precision_recall_fscore_support(labels, preds, labels=range(7), zero_division=0)
    assert np.allclose(per["precision"], p) and np.allclose(per["recall"], r) and np.allclose(per["f1"], f)
    wp, wr, wf, _ = precision_recall_fscore_support(labels, preds, labels=range(7), zero_division=0,
                                                    average="weighted")
    avg = averages(per)
    assert avg["weighted"]["f1"] == pytest.approx(wf) and avg["macro"]["recall"] == pytest.approx(r.mean())
    assert np.isnan(cross_entropy(np.zeros((0, 3)), np.zeros(0, np.int64)))
