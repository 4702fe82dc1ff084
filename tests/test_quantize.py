"""export --int8 / --fp16: onnxruntime's static INT8 (QDQ, per-channel) and FP16 files, kept only when they
pass the accuracy gate on the run's test split; bad calibration data and options are one line."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from cnntool.cli.main import app


@pytest.fixture(scope="module")
def exported(digits_run, tmp_path_factory):
    run_dir, _ = digits_run
    out = tmp_path_factory.mktemp("quant") / "digits.onnx"
    res = CliRunner().invoke(app, ["export", str(run_dir), "-o", str(out), "--int8", "--calib", "128", "--json",
                                   "-q"])
    assert res.exit_code == 0, res.stderr
    return run_dir, out, json.loads(res.stdout)


def _props(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_int8_export_passes_its_gate_and_carries_the_spec(exported):
    from cnntool.export.onnx_eval import evaluate_onnx, load_split, data_config, predict_split
    from cnntool.export.runtime import OnnxClassifier

    run_dir, fp32, result = exported
    int8 = fp32.with_name("digits-int8.onnx")
    (v,) = result["variants"]
    assert v["path"] == str(int8) and int8.is_file() and v["passed"] and v["calib_n"] == 128
    assert v["drop"] <= 1.0 and v["agreement"] >= 0.97
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size  # int8 weights
    props, ref = _props(int8), _props(fp32)
    assert props["cnntool.spec"] == ref["cnntool.spec"] and props["cnntool.data"] == ref["cnntool.data"]
    assert props["cnntool.precision"] == "int8"
    assert json.loads(props["cnntool.calibration"]) == {"n": 128, "method": "minmax"}

    graph = onnx.load(str(int8)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    inits = {i.name: i for i in graph.initializer}
    conv_weights = {n.input[1] for n in graph.node if n.op_type == "Conv"}
    per_channel = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] in conv_weights]
    assert per_channel and all(np.prod(inits[n.input[1]].dims) > 1 for n in per_channel)  # one scale per channel

    # the gate's numbers, recomputed independently from the two files
    clf8, clf32 = OnnxClassifier(int8), OnnxClassifier(fp32)
    test = load_split(data_config(clf32.props), clf32.spec, "test")
    p8, p32 = predict_split(clf8, test).argmax(1), predict_split(clf32, test).argmax(1)
    assert v["n"] == len(test) and v["agreement"] == pytest.approx(float((p8 == p32).mean()))
    assert v["acc"] == pytest.approx(float((p8 == test.labels).mean()))
    assert evaluate_onnx(int8, plots=False, out=fp32.parent / "e8").top1 == pytest.approx(v["acc"])
    assert v["drop"] == pytest.approx((v["fp32_acc"] - v["acc"]) * 100)


def test_impossible_gate_refuses_and_leaves_no_file(exported, tmp_path):
    run_dir, _, _ = exported
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(app, ["export", str(run_dir), "-o", str(out), "--int8", "--calib", "32",
                                   "--max-drop", "-1", "-q"])
    assert res.exit_code == 1
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "int8 model refused" in lines[0] and "> --max-drop -1" in lines[0], res.stderr
    assert not (tmp_path / "m-int8.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temp file left; FP32 passed its parity


def test_fp16_variant_has_float16_weights_and_passes(exported, tmp_path):
    from cnntool.export.onnx_eval import data_config, load_split
    from cnntool.export.quantize import make_variant
    from cnntool.export.runtime import OnnxClassifier

    _, fp32, _ = exported
    clf = OnnxClassifier(fp32)
    test = load_split(data_config(clf.props), clf.spec, "test")
    v = make_variant("fp16", fp32, test, out=tmp_path / "h.onnx")
    assert v.passed and v.agreement >= 0.99 and abs(v.drop) <= 1.0
    inits = onnx.load(str(tmp_path / "h.onnx")).graph.initializer
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in inits)
    assert _props(tmp_path / "h.onnx")["cnntool.precision"] == "fp16"


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods_pass_the_gate(exported, tmp_path, method):
    from cnntool.export.onnx_eval import data_config, load_split
    from cnntool.export.quantize import make_variant, pick_calibration
    from cnntool.export.runtime import OnnxClassifier

    _, fp32, _ = exported
    clf = OnnxClassifier(fp32)
    cfg = data_config(clf.props)
    calib = pick_calibration(load_split(cfg, clf.spec, "train"), 64)
    assert len(calib) == 64 and calib.dtype == np.uint8
    v = make_variant("int8", fp32, load_split(cfg, clf.spec, "test"), out=tmp_path / "q.onnx", calib_images=calib,
                     calib_method=method)
    assert v.passed and v.calib_method == method and (tmp_path / "q.onnx").is_file()
    assert json.loads(_props(tmp_path / "q.onnx")["cnntool.calibration"])["method"] == method


@pytest.mark.parametrize("shape,dtype,message", [
    ((4, 3, 16, 16), np.uint8, "calibration images have shape 4×3×16×16; the model takes N×1×16×16"),
    ((4, 1, 16, 16), np.float32, "calibration images are float32; expected uint8"),
])
def test_calibration_data_of_the_wrong_shape_is_one_line(exported, tmp_path, shape, dtype, message):
    run_dir, _, _ = exported
    bad = tmp_path / "calib.npy"
    np.save(bad, np.zeros(shape, dtype))
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(app, ["export", str(run_dir), "-o", str(out), "--int8", "--calib-data", str(bad)])
    assert res.exit_code == 1
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{bad}: {message}" in lines[0], res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npy"]  # nothing written


@pytest.mark.parametrize("args,message", [
    (["--calib-method", "mean"], "--calib-method 'mean' must be one of minmax, entropy, percentile"),
    (["--calib", "0"], "--calib 0 must be >= 1"),
    (["--max-drop", "nan"], "--max-drop nan must be a finite number"),
])
def test_bad_quantization_options_exit_2(exported, tmp_path, args, message):
    run_dir, _, _ = exported
    res = CliRunner().invoke(app, ["export", str(run_dir), "-o", str(tmp_path / "m.onnx"), "--int8", *args])
    assert res.exit_code == 2 and message in res.stderr, res.stderr
    assert not list(tmp_path.iterdir())


def test_calibration_batches_fit_a_fixed_batch_graph(exported):
    from cnntool.data.preprocess import normalize
    from cnntool.export.quantize import CALIB_BATCH, _Reader
    from cnntool.export.runtime import OnnxClassifier

    spec = OnnxClassifier(exported[1]).spec
    images = np.random.default_rng(0).integers(0, 256, (10, 1, *spec.input_size), dtype=np.uint8)
    fixed = _Reader(images, spec, "input", batch=4)
    got = [fixed.get_next() for _ in range(3)]
    assert [b["input"].shape[0] for b in got[:2]] == [4, 4] and got[2] is None  # whole batches only
    np.testing.assert_array_equal(got[1]["input"], normalize(images[4:8], spec.mean, spec.std))
    dynamic = _Reader(images, spec, "input")
    assert dynamic.get_next()["input"].shape[0] == min(10, CALIB_BATCH)
