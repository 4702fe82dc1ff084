"""cnntool predict: onnxruntime without torch, the same numbers as torch/eval, bad files reported by name."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnntool.cli.main import app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A digits run (BN + dropout, 1 epoch), its ONNX export, and the test split written as PNG files."""
    from cnntool.config import ModelConfig, RunConfig, TrainConfig
    from cnntool.data import BatchPipeline, load_data
    from cnntool.export.onnx_export import export_onnx
    from cnntool.training import load_model
    from cnntool.runner import fit
    from cnntool.training.evaluate import predict_logits

    base = tmp_path_factory.mktemp("predict")
    run = base / "run"
    fit(RunConfig(model=ModelConfig(bn=True, dropout=0.5), train=TrainConfig(epochs=1, seed=0), out=str(run)))
    onnx_path = base / "digits.onnx"
    export_onnx(run, onnx_path)

    model, spec, ckpt = load_model(run)
    cfg = RunConfig.from_flat(ckpt["options"]).data
    test = load_data(cfg, input_size=spec.input_size, mean=spec.mean, std=spec.std,
                     class_names=spec.class_names).split("test")
    logits, _ = predict_logits(model, test, BatchPipeline(spec.mean, spec.std))  # what `cnntool eval` computes
    png_dir = base / "pngs"
    png_dir.mkdir()
    paths = []
    for i, img in enumerate(test.images.numpy()):
        p = png_dir / f"{i:04d}.png"
        Image.fromarray(img[0], "L").save(p)
        paths.append(str(p))
    return {"run": run, "onnx": onnx_path, "spec": spec, "paths": paths, "dir": png_dir,
            "torch_logits": logits.numpy(), "base": base}


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_predictions_equal_torch_eval_on_test_pngs(setup):
    from cnntool.export.runtime import OnnxClassifier, predict_files

    result = CliRunner().invoke(app, ["predict", str(setup["onnx"]), str(setup["dir"]), "--json", "-q"])
    assert result.exit_code == 0, result.output
    rows = _json_lines(result.stdout)
    assert [r["path"] for r in rows] == setup["paths"]
    want = setup["torch_logits"].argmax(1)
    assert [r["index"] for r in rows] == want.tolist()
    assert [r["label"] for r in rows] == [setup["spec"].class_names[i] for i in want]

    preds = list(predict_files(OnnxClassifier(setup["onnx"]), setup["paths"], batch_size=50))
    got = np.stack([p.logits for p in preds])
    assert np.abs(got - setup["torch_logits"]).max() <= 1e-4


def test_reference_evaluator_agrees_with_onnxruntime(setup):
    import onnx
    from onnx.reference import ReferenceEvaluator

    from cnntool.data.preprocess import load_for_model, normalize
    from cnntool.export.runtime import OnnxClassifier

    spec = setup["spec"]
    batch = np.stack([load_for_model(p, 1, spec.input_size) for p in setup["paths"][:32]])
    x = normalize(batch, spec.mean, spec.std)
    ours = OnnxClassifier(setup["onnx"]).run(x)
    ref = ReferenceEvaluator(onnx.load(str(setup["onnx"]))).run(None, {"input": x})[0]
    assert np.abs(ours - ref).max() <= 1e-4


def test_torch_path_gives_the_same_labels(setup):
    runner = CliRunner()
    a = runner.invoke(app, ["predict", str(setup["onnx"]), *setup["paths"][:40], "--json", "-q"])
    b = runner.invoke(app, ["predict", str(setup["run"]), *setup["paths"][:40], "--json", "-q"])
    assert a.exit_code == b.exit_code == 0, b.output
    assert [r["label"] for r in _json_lines(a.stdout)] == [r["label"] for r in _json_lines(b.stdout)]


def test_onnx_predict_does_not_import_torch(setup):
    code = (
        "import sys\n"
        "from cnntool.cli.main import app\n"
        f"try:\n    app(['predict', {str(setup['onnx'])!r}, {setup['paths'][0]!r}, '--json', '-q'])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = [m for m in ('torch', 'torchvision', 'rich', 'pydantic') if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))\n"
        "print('CNNTOOL:' + ','.join(sorted(m for m in sys.modules if m.startswith('cnntool'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(":", 1) for line in out.stdout.splitlines() if line[:6] in ("HEAVY:", "CNNTOO"))
    assert lines["HEAVY"] == "", f"predict imported {lines['HEAVY']} (cnntool modules loaded: {lines['CNNTOOL']})"
    # the other commands' modules are not imported either: start-up pays for predict alone
    assert {m for m in lines["CNNTOOL"].split(",") if m.startswith("cnntool.cli.")} == {
        "cnntool.cli.main", "cnntool.cli.common", "cnntool.cli.predict"}, lines["CNNTOOL"]
    assert json.loads(out.stdout.splitlines()[0])["path"] == setup["paths"][0]


def _mode_images(folder: Path) -> list[str]:
    """The same picture saved in many modes: RGB, palette (with and without transparency), RGBA, LA, CMYK, L, 16-bit."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)
    rgb[4:14, 5:15] = [250, 30, 30]
    base = Image.fromarray(rgb, "RGB")
    alpha = Image.fromarray(rng.integers(0, 256, (20, 26), dtype=np.uint8), "L")
    rgba = base.copy()
    rgba.putalpha(alpha)
    la = base.convert("L")
    la.putalpha(alpha)
    pal_t = base.convert("P", palette=Image.ADAPTIVE, colors=32)
    pal_t.info["transparency"] = 0
    images = {
        "rgb.png": base, "rgb.jpg": base, "palette.png": base.convert("P", palette=Image.ADAPTIVE, colors=32),
        "palette_t.png": pal_t, "rgba.png": rgba, "la.png": la, "cmyk.jpg": base.convert("CMYK"),
        "gray.png": base.convert("L"),
        "gray16.png": Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257),
    }
    paths = []
    for name, im in images.items():
        p = folder / name
        im.save(p, transparency=0) if name == "palette_t.png" else im.save(p)
        paths.append(str(p))
    return paths


@pytest.fixture(scope="module")
def rgb_model(setup):
    """An untrained 3-channel model with resize + centre crop (crop_pct 0.875), exported from a checkpoint."""
    import torch

    from cnntool.export.onnx_export import export_onnx
    from cnntool.spec import ModelSpec
    from cnntool.training.checkpoint import build_from_spec, save_checkpoint

    base = setup["base"] / "rgb"
    base.mkdir()
    spec = ModelSpec(arch="simplecnn", num_classes=3, class_names=["red", "green", "blue"], in_channels=3,
                     input_size=[12, 12], mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3], crop_pct=0.875,
                     interpolation="bicubic")
    torch.manual_seed(0)
    ckpt = base / "rgb.pt"
    save_checkpoint(ckpt, {"spec": spec.to_dict(), "model": build_from_spec(spec).state_dict()})
    result = export_onnx(ckpt)
    assert not result.real_inputs and result.notes  # no data set: random inputs only, and it says so
    return ckpt, base / "rgb.onnx", _mode_images(base)


def test_numpy_preprocessing_equals_torch_for_every_image_mode(setup, rgb_model):
    from cnntool.export.runtime import OnnxClassifier, predict_files
    from cnntool.export.torch_runtime import TorchClassifier

    ckpt, onnx_path, paths = rgb_model
    for model_ort, model_torch in ((OnnxClassifier(onnx_path), TorchClassifier(ckpt)),
                                   (OnnxClassifier(setup["onnx"]), TorchClassifier(setup["run"]))):
        a = list(predict_files(model_ort, paths))
        b = list(predict_files(model_torch, paths))
        assert [type(p).__name__ for p in a] == ["Prediction"] * len(paths), a
        assert [p.label for p in a] == [p.label for p in b]
        assert np.abs(np.stack([p.logits for p in a]) - np.stack([p.logits for p in b])).max() <= 1e-4


def test_numpy_and_torch_normalisation_agree():
    import torch

    from cnntool.data.pipeline import normalize_uint8
    from cnntool.data.preprocess import normalize

    x = np.random.default_rng(0).integers(0, 256, (4, 3, 5, 7), dtype=np.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    assert np.abs(normalize(x, mean, std) - normalize_uint8(torch.from_numpy(x), mean, std).numpy()).max() <= 1e-6


def test_standalone_script_matches_cnntool_predict(rgb_model):
    _, onnx_path, paths = rgb_model
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "onnx_predict.py"), str(onnx_path), *paths,
                          "--top-k", "2"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    script = {line.split("\t")[0]: line.split("\t")[1].split(":")[0] for line in out.stdout.splitlines()}
    ours = CliRunner().invoke(app, ["predict", str(onnx_path), *paths, "--json", "-q"])
    assert ours.exit_code == 0, ours.output
    assert {r["path"]: r["label"] for r in _json_lines(ours.stdout)} == script


def test_bad_files_are_named_and_skipped(setup, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    good = tmp_path / "good.png"
    shutil.copy(setup["paths"][0], good)
    jpg = tmp_path / "photo.jpg"
    Image.open(good).convert("RGB").resize((64, 64)).save(jpg, quality=95)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    missing = tmp_path / "missing.png"
    result = CliRunner().invoke(app, ["predict", str(setup["onnx"]), str(text), str(good), str(truncated),
                                      str(missing), "--json"])
    assert result.exit_code == 1
    assert [r["path"] for r in _json_lines(result.stdout)] == [str(good)]
    err = result.stderr
    assert f"{text}: not an image" in err
    assert f"{truncated}: cannot decode image (truncated or corrupt image data)" in err
    assert f"{missing}: no such file" in err
    assert "1 image(s) predicted, 3 failed" in err


def test_wrong_input_shape_or_missing_metadata_is_one_clear_line(setup, tmp_path):
    import onnx

    proto = onnx.load(str(setup["onnx"]))
    for p in proto.metadata_props:
        if p.key == "cnntool.spec":
            spec = json.loads(p.value)
            p.value = json.dumps({**spec, "input_size": [28, 28]})
    wrong = tmp_path / "wrong.onnx"
    onnx.save(proto, str(wrong))
    result = CliRunner().invoke(app, ["predict", str(wrong), setup["paths"][0]])
    assert result.exit_code == 1
    h, w = setup["spec"].input_size
    assert f"{wrong}: the network takes N×1×{h}×{w} input but its metadata says 1×28×28" in result.stderr

    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    result = CliRunner().invoke(app, ["predict", str(bare), setup["paths"][0]])
    assert result.exit_code == 1 and f"{bare}: no cnntool metadata" in result.stderr

    not_onnx = tmp_path / "text.onnx"
    not_onnx.write_text("hello")
    result = CliRunner().invoke(app, ["predict", str(not_onnx), setup["paths"][0]])
    assert result.exit_code == 1 and f"{not_onnx}: onnxruntime cannot load it" in result.stderr


def test_globs_directories_stdin_and_csv(setup):
    runner = CliRunner()
    pattern = str(setup["dir"] / "00[0-4]?.png")
    result = runner.invoke(app, ["predict", str(setup["onnx"]), pattern, "--csv", "-k", "2", "-q"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "path,label,index,prob,label_2,prob_2" and len(lines) == 1 + 50

    stdin = "\n".join(setup["paths"][:5]) + "\n"
    result = runner.invoke(app, ["predict", str(setup["onnx"]), "-", "--json", "-q", "-b", "2"], input=stdin)
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in _json_lines(result.stdout)] == setup["paths"][:5]

    assert runner.invoke(app, ["predict", str(setup["onnx"]), setup["paths"][0], "--json", "--csv"]).exit_code == 2
    result = runner.invoke(app, ["predict", str(setup["onnx"]), str(setup["dir"] / "*.gif")])
    assert result.exit_code == 1 and "no image files match" in result.stderr


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "emptydir", "directory holds no image files"),
    (lambda d: d / "nope.png", "no such file or directory"),
    (lambda d: d / "*.xyz", "no image files match"),
])
def test_a_bad_input_gives_exactly_one_error_line(setup, tmp_path, make, message):
    (tmp_path / "emptydir").mkdir()
    arg = str(make(tmp_path))
    result = CliRunner().invoke(app, ["predict", str(setup["onnx"]), arg])
    assert result.exit_code == 1
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: {arg}: {message}"], result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name, data", [
    ("random.pt", bytes(range(256)) * 4),
    ("truncated.pth", b"PK\x03\x04" + b"\x00" * 40),
    ("empty.ckpt", b""),
])
def test_torch_suffixes_go_to_the_checkpoint_loader(setup, tmp_path, name, data):
    from cnntool.export.runtime import is_onnx_path

    bad = tmp_path / name
    bad.write_bytes(data)
    assert not is_onnx_path(bad)
    assert is_onnx_path(setup["onnx"])
    result = CliRunner().invoke(app, ["predict", str(bad), setup["paths"][0]])
    assert result.exit_code == 1
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"{bad}: not a readable checkpoint" in errors[0], result.stderr
    assert "protobuf" not in result.stderr.lower()


def test_directory_expansion_skips_hidden_files_and_folders(setup, tmp_path):
    from cnntool.export.runtime import expand_inputs

    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / ".cache").mkdir()
    for rel in ("a.png", "sub/b.png", "._a.png", "sub/.b.png", ".cache/c.png"):
        shutil.copy(setup["paths"][0], root / rel)
    paths, failures = expand_inputs([str(root)])
    assert failures == []
    assert paths == [str(root / "a.png"), str(root / "sub" / "b.png")]
    paths, _ = expand_inputs([str(root / ".cache")])  # a hidden folder named explicitly is still searched
    assert paths == [str(root / ".cache" / "c.png")]


def test_threads_and_batch_size_never_change_the_output(setup, tmp_path):
    """--threads 2 (a decode pool) == --threads 1 (decoded inline) == batch size 1, bad files mixed in."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    bad = {3: b"not a picture\n", 17: b"", 40: None, 41: b"\x89PNG\r\n\x1a\n" + b"\x00" * 30}
    for i, src in enumerate(setup["paths"][:75]):
        dst = folder / f"{i:03d}.png"
        if i in bad:
            data = bad[i] if bad[i] is not None else Path(src).read_bytes()[:60]  # truncated PNG
            dst.write_bytes(data)
        else:
            shutil.copy(src, dst)
    runs = {}
    for threads, batch in (("1", "32"), ("2", "32"), ("1", "1"), ("2", "1"), ("2", "7")):
        r = CliRunner().invoke(app, ["predict", str(setup["onnx"]), str(folder), "--json", "-q",
                                     "--threads", threads, "-b", batch])
        assert r.exit_code == 1, r.output
        assert "Traceback" not in r.output
        runs[threads, batch] = (r.stdout, [ln for ln in r.stderr.splitlines() if ln.startswith("error:")])
    first_out, first_err = runs["1", "32"]
    for key, (out, err) in runs.items():
        assert out == first_out, key
        assert err == first_err, key
    rows = _json_lines(first_out)
    assert [r["path"] for r in rows] == [str(folder / f"{i:03d}.png") for i in range(75) if i not in bad]
    assert [e.split(": ")[1] for e in first_err] == [str(folder / f"{i:03d}.png") for i in sorted(bad)]
    # the same numbers as the images predicted one at a time through the library
    from cnntool.export.runtime import OnnxClassifier, predict_files

    clf = OnnxClassifier(setup["onnx"], threads=1)
    one_by_one = [p.to_dict() for p in predict_files(clf, [r["path"] for r in rows], batch_size=1)]
    assert rows == json.loads(json.dumps(one_by_one))


def test_decode_pool_keeps_order_and_stops_early(setup):
    from cnntool.export.runtime import Failure, decoded_batches, load_image

    spec = setup["spec"]
    paths = setup["paths"][:50] + ["/nonexistent/x.png"] + setup["paths"][50:60]
    got = list(decoded_batches(paths, spec, batch_size=8, threads=3))
    assert [p for chunk, _ in got for p in chunk] == paths
    images = [im for _, ims in got for im in ims]
    assert isinstance(images[50], Failure) and "/nonexistent/x.png: no such file" in images[50].error
    for path, im in zip(paths[:50], images[:50]):
        assert np.array_equal(im, load_image(path, spec))
    gen = decoded_batches(paths, spec, batch_size=4, threads=2)
    next(gen)
    gen.close()  # the pool shuts down, cancelling batches not started; nothing hangs


def test_open_classifier_picks_the_backend(setup):
    from cnntool.export.runtime import OnnxClassifier, open_classifier
    from cnntool.export.torch_runtime import TorchClassifier

    assert isinstance(open_classifier(setup["onnx"], threads=1), OnnxClassifier)
    clf = open_classifier(setup["run"], threads=None)
    assert isinstance(clf, TorchClassifier) and clf.spec.class_names == setup["spec"].class_names
