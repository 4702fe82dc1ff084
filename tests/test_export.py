"""cnntool export: valid, self-describing ONNX; parity with torch; nothing left behind on failure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cnntool.cli.main import app


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A digits run with BatchNorm and dropout (1 epoch)."""
    from cnntool.config import ModelConfig, RunConfig, TrainConfig
    from cnntool.runner import fit

    out = tmp_path_factory.mktemp("export") / "run"
    fit(RunConfig(model=ModelConfig(bn=True, dropout=0.5), train=TrainConfig(epochs=1, seed=0), out=str(out)))
    return out


@pytest.fixture(scope="module")
def exported(run_dir):
    out = run_dir.parent / "model.onnx"
    result = CliRunner().invoke(app, ["export", str(run_dir), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout), result.stderr


def test_export_is_valid_and_self_describing(run_dir, exported):
    import onnx
    import onnxruntime as ort

    path, info, _ = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version <= 10
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # the installed onnxruntime loads it

    props = {p.key: p.value for p in proto.metadata_props}
    spec = json.loads((run_dir / "spec.json").read_text())
    assert json.loads(props["cnntool.spec"]) == spec
    assert json.loads(props["class_names"]) == spec["class_names"]
    size = spec["input_size"]
    assert json.loads(props["input_size"]) == size
    assert json.loads(props["mean"]) == spec["mean"] and json.loads(props["std"]) == spec["std"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")  # dynamic batch axis
    assert [d.dim_value for d in dims[1:]] == [1, *size]
    assert info["input_shape"] == ["N", 1, *size] and info["opset"] == 18


def test_parity_table_on_data_and_random_inputs(exported):
    _, info, stderr = exported
    assert info["passed"] and info["real_inputs"]
    rows = {(r["source"], r["batch"]): r for r in info["parity"]}
    assert set(rows) == {("data", 1), ("data", 7), ("random", 1), ("random", 7)}
    for r in rows.values():
        assert r["passed"] and r["max_abs_diff"] <= 1e-4 and r["top1_agree"] == r["n"]
    assert "parity" in stderr and "top-1 agree" in stderr


def test_bn_and_dropout_export_is_deterministic_and_equals_torch_eval(run_dir, exported):
    import torch

    from cnntool.data.pipeline import normalize_uint8
    from cnntool.export.runtime import OnnxClassifier
    from cnntool.training.checkpoint import load_model

    model, spec, _ = load_model(run_dir)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"BatchNorm2d", "Dropout"} <= kinds
    images = np.random.default_rng(1).integers(0, 256, (16, 1, *spec.input_size), dtype=np.uint8)
    x = normalize_uint8(torch.from_numpy(images), spec.mean, spec.std)
    with torch.no_grad():
        ref = model(x).numpy()
    clf = OnnxClassifier(exported[0])
    a, b = clf.run(x.numpy()), clf.run(x.numpy())
    assert np.array_equal(a, b)
    assert np.abs(a - ref).max() <= 1e-4


def test_failed_parity_exits_1_and_leaves_no_file(run_dir, tmp_path, monkeypatch):
    import torch

    from cnntool.export import onnx_export

    real = onnx_export.to_onnx

    def export_then_drift(model, *args, **kwargs):
        out = real(model, *args, **kwargs)
        with torch.no_grad():  # the torch model now differs from what was exported
            next(model.parameters()).add_(0.05)
        return out

    monkeypatch.setattr(onnx_export, "to_onnx", export_then_drift)
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", str(run_dir), "-o", str(out), "--exporter", "torchscript"])
    assert result.exit_code == 1
    assert "FAIL" in result.stderr
    assert "onnxruntime disagrees with torch" in result.stderr and str(out) in result.stderr
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temp file


def test_checkpoint_static_batch_img_size_torchscript(run_dir, tmp_path):
    import onnx

    from cnntool.export.runtime import OnnxClassifier

    size = 2 * json.loads((run_dir / "spec.json").read_text())["input_size"][0]  # simplecnn pools globally
    out = tmp_path / "s.onnx"
    result = CliRunner().invoke(app, ["export", str(run_dir / "best.pt"), "-o", str(out), "--static-batch",
                                      "--img-size", str(size), "--exporter", "torchscript", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["exporter"] == "torchscript" and info["input_shape"] == [1, 1, size, size] and info["passed"]
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert json.loads({p.key: p.value for p in proto.metadata_props}["input_size"]) == [size, size]
    clf = OnnxClassifier(out)
    assert clf.batch_dim == 1
    assert clf.logits(np.zeros((5, 1, size, size), np.uint8)).shape == (5, 10)  # fed one image at a time


def test_default_output_beside_the_run(run_dir):
    from cnntool.export.onnx_export import default_output

    assert default_output(run_dir) == run_dir / "model.onnx"
    assert default_output(run_dir / "best.pt") == run_dir / "best.onnx"


@pytest.mark.parametrize("args, message", [
    (["{run}/../no-such-run"], "no such run directory or checkpoint"),
    (["{run}", "--opset", "5"], "--opset 5"),
    (["{run}", "-o", "{run}/missing/m.onnx"], "does not exist"),
])
def test_export_errors_are_one_line(run_dir, args, message):
    result = CliRunner().invoke(app, ["export", *[a.format(run=run_dir) for a in args]])
    assert result.exit_code == (2 if "--opset" in args else 1)  # 2: a bad option value
    assert message in result.stderr and "Traceback" not in result.output


def test_export_refuses_to_overwrite_a_file_that_is_not_onnx(run_dir, exported, tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    result = CliRunner().invoke(app, ["export", str(run_dir), "-o", str(precious)])
    assert result.exit_code != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and str(precious) in lines[0] and "not an .onnx" in lines[0]
    assert precious.read_text() == "keep me\n"
    # re-exporting over an earlier .onnx export is allowed
    again = tmp_path / "again.onnx"
    again.write_bytes(exported[0].read_bytes())
    result = CliRunner().invoke(app, ["export", str(run_dir), "-o", str(again)])
    assert result.exit_code == 0, result.output


def test_parity_samples_are_preprocessed_with_the_spec_crop_and_interpolation():
    """The export parity check resizes in-memory images exactly as training and eval do (crop_pct, interpolation)."""
    import numpy as np

    from cnntool.data.sources import load_raw
    from cnntool.data.splits import resize_array
    from cnntool.export.onnx_export import sample_run_images
    from cnntool.spec import ModelSpec

    spec = ModelSpec(arch="simplecnn", num_classes=10, class_names=[str(i) for i in range(10)], in_channels=1,
                     input_size=[16, 16], mean=[0.5], std=[0.25], crop_pct=0.75, interpolation="bicubic")
    images, why = sample_run_images({"options": {"data": "digits"}}, spec, n=5)
    assert why is None and images.shape == (5, 1, 16, 16)
    raw = load_raw("digits", None, False)
    part = next(p for p in (raw.test, raw.val, raw.train) if p is not None)
    idx = sorted(set(np.linspace(0, len(part.labels) - 1, 5).round().astype(int).tolist()))
    expected = resize_array(part.images[idx], [16, 16], 0.75, "bicubic")
    assert np.array_equal(images, expected)
    plain = resize_array(part.images[idx], [16, 16])
    assert not np.array_equal(images, plain)  # the crop really changes the pixels
