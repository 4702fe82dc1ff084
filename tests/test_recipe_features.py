"""The modern recipe (issue 16): EMA, mixup/cutmix, policies, class weights, sampler, accumulation, time budget,
bf16 on the CPU — each checked against a hand computation or a reference run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnntool.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from cnntool.errors import ConfigError, DataError
from cnntool.runner import fit, resume
from cnntool.training import load_checkpoint
from cnntool.training.ema import WeightEMA, ema_decay
from cnntool.training.engine import loss_fn
from cnntool.training.mixing import BatchMixer, balanced_order, class_weights
from cnntool.training.rundir import read_metrics
from cnntool.data import augment


def cfg(tmp_path: Path, data: dict | None = None, model: dict | None = None, **train) -> RunConfig:
    return RunConfig(data=DataConfig(**(data or {})), model=ModelConfig(**(model or {})),
                     train=TrainConfig(**{"epochs": 2, "threads": 1, **train}), runs_root=str(tmp_path / "runs"))


# ------------------------------------------------------------------ EMA

def test_ema_equals_hand_computed_average_after_three_steps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = WeightEMA(model, decay=0.9)
    snapshots = []
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()
        model(torch.randn(4, 3))  # moves the BatchNorm running statistics too
        ema.update(model)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
    # by hand: the first update copies, then ema = d_t * ema + (1 - d_t) * w with d_t = min(0.9, 1 - (1 + t)^-2/3)
    d1, d2 = min(0.9, 1 - 2 ** (-2 / 3)), min(0.9, 1 - 3 ** (-2 / 3))
    assert (d1, d2) == (ema_decay(0.9, 1), ema_decay(0.9, 2))
    for key in ("0.weight", "0.bias", "1.weight", "1.running_mean", "1.running_var"):
        w0, w1, w2 = (s[key] for s in snapshots)
        expect = d2 * (d1 * w0 + (1 - d1) * w1) + (1 - d2) * w2
        torch.testing.assert_close(ema.module.state_dict()[key], expect, rtol=1e-6, atol=1e-6)
        assert not torch.allclose(ema.module.state_dict()[key], w2)  # the EMA is not the raw weights
    assert int(ema.module.state_dict()["1.num_batches_tracked"]) == 3


def test_train_with_ema_checkpoints_ema_weights_beside_the_raw_ones(tmp_path):
    result = fit(cfg(tmp_path, ema=True, ema_decay=0.9))
    best = load_checkpoint(Path(result["run_dir"]) / "best.pt")
    assert best["spec"]["weights"] == "ema" and result["weights"] == "ema"
    diffs = [not torch.equal(best["model"][k], best["raw_model"][k]) for k in best["model"]
             if best["model"][k].is_floating_point()]
    assert any(diffs)
    assert best["ema_updates"] == best["step"]


# ------------------------------------------------------------------ mixup / cutmix

def test_mixup_mixes_images_and_loss_as_computed_by_hand():
    torch.manual_seed(0)
    x = torch.randn(6, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    mixed, target = BatchMixer(3, mixup=0.4, cutmix=0.0)(x, y, torch.Generator().manual_seed(3))
    lam = float(target[0, 0])  # sample 0 is class 0, its rolled partner (sample 5) class 2
    assert 0 < lam < 1
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x.roll(1, 0))
    out = torch.randn(6, 3)
    hand = lam * F.cross_entropy(out, y) + (1 - lam) * F.cross_entropy(out, y.roll(1, 0))
    torch.testing.assert_close(loss_fn(out, target), hand)
    # the same generator seed gives the same lambda (reproducible, resumable)
    again, _ = BatchMixer(3, mixup=0.4, cutmix=0.0)(x, y, torch.Generator().manual_seed(3))
    assert torch.equal(mixed, again)


def test_cutmix_pastes_a_box_and_targets_sum_to_one():
    x = torch.zeros(4, 3, 16, 16)
    x[1] = 1.0
    y = torch.tensor([0, 1, 2, 3])
    mixed, target = BatchMixer(4, mixup=0.0, cutmix=1.0)(x, y, torch.Generator().manual_seed(1))
    torch.testing.assert_close(target.sum(1), torch.ones(4))
    lam = float(target[2, 2])  # sample 2 receives a box of sample 1 (all ones)
    assert math.isclose(float(mixed[2].mean()), 1 - lam, abs_tol=1e-6)


def test_mix_prob_zero_gives_one_hot_targets():
    x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 1, 0])
    mixed, target = BatchMixer(2, mixup=1.0, cutmix=1.0, prob=0.0)(x, y, torch.Generator())
    assert torch.equal(mixed, x) and torch.equal(target, F.one_hot(y, 2).float())


# ------------------------------------------------------------------ policies, random erasing

@pytest.mark.parametrize("policy", ["trivialaugment", "randaugment", "autoaugment", "augmix"])
def test_policy_changes_pixels_and_is_reproducible_from_the_seed(policy):
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    a = augment.apply_policy(x, policy, torch.Generator().manual_seed(5))
    b = augment.apply_policy(x, policy, torch.Generator().manual_seed(5))
    c = augment.apply_policy(x, policy, torch.Generator().manual_seed(6))
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, x) and not torch.equal(a, c)


def test_policy_on_grey_images_and_preset_resolution():
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    assert augment.apply_policy(x, "trivialaugment", torch.Generator()).shape == x.shape
    assert DataConfig(augment="trivialaugment").augmentations() == {"policy": "trivialaugment", "hflip": True}


def test_random_erasing_blanks_one_rectangle_per_hit_image():
    x = torch.zeros(64, 1, 20, 20)
    out = augment.random_erasing(x, 1.0, torch.Generator().manual_seed(0), fill=1.0)
    area = out.sum(dim=(1, 2, 3)) / 400
    assert bool((area > 0).all()) and bool((area <= 0.34 * 1.2).all())
    none = augment.random_erasing(x, 0.0, torch.Generator().manual_seed(0), fill=1.0)
    assert torch.equal(none, x)


# ------------------------------------------------------------------ imbalance

def test_class_weights_auto_and_file_and_the_weighted_loss_by_hand(tmp_path):
    labels = torch.tensor([0, 0, 0, 1])
    w = class_weights("auto", labels, ["a", "b"])
    torch.testing.assert_close(w, torch.tensor([4 / (2 * 3), 4 / (2 * 1)]))
    f = tmp_path / "w.json"
    f.write_text('{"b": 3}')
    torch.testing.assert_close(class_weights(str(f), labels, ["a", "b"]), torch.tensor([1.0, 3.0]))
    out = torch.tensor([[2.0, 0.0], [0.5, 0.1], [0.0, 1.0], [1.0, 1.0]])
    ce = -F.log_softmax(out, 1)[torch.arange(4), labels]
    hand = (w[labels] * ce).sum() / w[labels].sum()
    torch.testing.assert_close(loss_fn(out, labels, weight=w), hand)
    assert not torch.isclose(loss_fn(out, labels, weight=w), loss_fn(out, labels))
    for text, words in (('[1, 2, 3]', "3 weights for 2 classes"), ('{"zebra": 1}', "unknown class"),
                        ('[0, 0]', "not all 0")):
        f.write_text(text)
        with pytest.raises(DataError, match=words):
            class_weights(str(f), labels, ["a", "b"])
    with pytest.raises(DataError, match="no such file"):
        class_weights(str(tmp_path / "nope.json"), labels, ["a", "b"])


def test_balanced_sampler_draws_classes_equally_often():
    labels = torch.tensor([0] * 900 + [1] * 100)
    order = balanced_order(labels, 2, torch.Generator().manual_seed(0))
    share = float((labels[order] == 1).float().mean())
    assert len(order) == 1000 and 0.45 < share < 0.55


# ------------------------------------------------------------------ accumulation, time budget

def test_accumulation_equals_an_n_times_larger_batch(tmp_path):
    common = dict(epochs=1, optimizer="sgd", lr=0.05, momentum=0.0, weight_decay=0.0, scheduler="none")
    model = {"bn": False, "dropout": 0.0}
    big = fit(cfg(tmp_path, model=model, batch_size=64, **common))
    acc = fit(cfg(tmp_path, model=model, batch_size=16, accum_steps=4, **common))
    a = load_checkpoint(Path(big["run_dir"]) / "last.pt")["model"]
    b = load_checkpoint(Path(acc["run_dir"]) / "last.pt")["model"]
    assert load_checkpoint(Path(acc["run_dir"]) / "last.pt")["step"] == load_checkpoint(
        Path(big["run_dir"]) / "last.pt")["step"]
    start = fit(cfg(tmp_path, model=model, batch_size=64, **{**common, "lr": 1e-12}))
    s = load_checkpoint(Path(start["run_dir"]) / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
        assert not torch.allclose(a[k], s[k])  # training moved the weights: the comparison means something
    with pytest.raises(ConfigError, match="--accum-steps"):
        fit(cfg(tmp_path, batch_size=512, accum_steps=64))


def test_time_budget_ends_cleanly_with_a_final_evaluation(tmp_path):
    result = fit(cfg(tmp_path, epochs=50, time=1e-6))
    assert result["stopped_by_time"] is True
    assert result["epochs_run"] < 1 and result["test_n"] > 0
    rows = read_metrics(result["run_dir"])
    assert len(rows) == 1 and rows[0]["step"] == 1


# ------------------------------------------------------------------ resume with every option on

class KillAt:
    from cnntool.training import Reporter as _R

    def __init__(self, epoch: int):
        self.epoch = epoch

    def __getattr__(self, name):
        return lambda *a, **k: None

    def on_step(self, epoch, step, steps, loss):
        if epoch == self.epoch and step == 2:
            raise KeyboardInterrupt


def test_resume_is_exact_with_every_recipe_option_on(tmp_path):
    opts = dict(epochs=3, ema=True, ema_decay=0.9, mixup=0.2, cutmix=1.0, mix_prob=0.8, class_weights="auto",
                sampler="balanced", accum_steps=2, label_smoothing=0.1)
    data = {"augment": "trivialaugment", "random_erasing": 0.25}
    full = fit(cfg(tmp_path, data=data, **opts))
    with pytest.raises(KeyboardInterrupt):
        fit(cfg(tmp_path, data=data, **opts), KillAt(2))
    killed = tmp_path / "runs" / "train2"
    assert load_checkpoint(killed / "last.pt")["epoch"] == 1
    resumed = resume(killed)
    for key in ("test_loss", "test_acc", "val_loss", "val_acc", "best_epoch"):
        assert resumed[key] == full[key], key
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(read_metrics(killed)) == strip(read_metrics(full["run_dir"]))


# ------------------------------------------------------------------ bf16 on the CPU

def test_bf16_is_refused_on_a_cpu_without_it(tmp_path, monkeypatch):
    from cnntool.training import evaluate

    monkeypatch.setattr(evaluate, "cpu_supports_bf16", lambda: False)
    with pytest.raises(ConfigError, match="bf16"):
        fit(cfg(tmp_path, amp="bf16", device="cpu"))
    assert not (tmp_path / "runs" / "train").exists()
    with pytest.raises(ConfigError, match="fp16"):
        fit(cfg(tmp_path, amp="fp16", device="cpu"))


@pytest.mark.skipif(not __import__("cnntool.training.evaluate", fromlist=["x"]).cpu_supports_bf16(),
                    reason="this CPU has no bf16")
def test_bf16_digits_accuracy_within_half_a_point_of_fp32(tmp_path):
    model = {"bn": True}
    fp32 = fit(cfg(tmp_path, model=model, epochs=4, device="cpu"))
    bf16 = fit(cfg(tmp_path, model=model, epochs=4, device="cpu", amp="bf16", channels_last=True))
    assert fp32["test_acc"] > 0.9
    assert abs(bf16["test_acc"] - fp32["test_acc"]) <= 0.005, (fp32["test_acc"], bf16["test_acc"])


# ------------------------------------------------------------------ test-time augmentation

def test_tta_flip_of_a_flip_symmetric_model_equals_no_tta_and_changes_an_asymmetric_one(tmp_path):
    from cnntool.data.bundle import TensorSplit
    from cnntool.data.pipeline import BatchPipeline
    from cnntool.training.evaluate import predict_logits

    torch.manual_seed(0)
    split = TensorSplit(torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8), torch.arange(10) % 3)
    pipe = BatchPipeline([0.5], [0.25])
    symmetric = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    plain, _ = predict_logits(symmetric, split, pipe)
    flip, _ = predict_logits(symmetric, split, pipe, tta="flip")
    torch.testing.assert_close(flip.softmax(1), plain.softmax(1), rtol=1e-5, atol=1e-6)
    asymmetric = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    a, _ = predict_logits(asymmetric, split, pipe)
    b, _ = predict_logits(asymmetric, split, pipe, tta="flip")
    mirrored, _ = predict_logits(asymmetric, TensorSplit(split.images.flip(3), split.labels), pipe)
    torch.testing.assert_close(b.softmax(1), (a.softmax(1) + mirrored.softmax(1)) / 2)  # the mean of softmax
    c, _ = predict_logits(asymmetric, split, pipe, tta="flip-crop")
    assert not torch.allclose(a, b) and not torch.allclose(b, c)


def test_eval_cli_tta_on_a_run(tmp_path):
    import json as _json

    from typer.testing import CliRunner

    from cnntool.cli.main import app

    run = fit(cfg(tmp_path, epochs=1))["run_dir"]
    res = CliRunner().invoke(app, ["eval", run, "--tta", "flip", "--json", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert 0 <= _json.loads(res.stdout)["top1"] <= 1
    bad = CliRunner().invoke(app, ["eval", run, "--tta", "mirror"])
    assert bad.exit_code != 0 and "--tta" in bad.output


# ------------------------------------------------------------------ lr-find

def test_lr_find_curve_has_the_documented_shape_and_leaves_no_run(tmp_path, monkeypatch):
    from cnntool.lrfind import lr_find, suggest

    monkeypatch.chdir(tmp_path)
    r = lr_find(cfg(tmp_path, batch_size=32), start_lr=1e-6, end_lr=10.0, steps=60)
    lrs, losses = r["lrs"], r["losses"]
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert max(ratios) - min(ratios) < 1e-9 and ratios[0] > 1  # a geometric sweep
    assert abs(losses[0] - math.log(10)) < 0.3  # flat at the initial loss (10 classes) ...
    assert min(losses) < losses[0] - 0.02  # ... a descent ...
    assert r["stopped_early"] and losses[-1] > 4 * min(losses) * 0.999  # ... then it blows up and stops
    assert 1e-6 < r["suggestion"] < lrs[-1]
    assert r["suggestion"] < r["min_loss_lr"] * 1.0001  # steepest descent comes before the minimum
    assert not (tmp_path / "runs").exists()
    # the rule on a hand-made curve: the steepest drop is between lr 1e-3 and 1e-2
    toy_lrs = [10.0 ** e for e in range(-6, 2)]
    assert suggest(toy_lrs, [2.3, 2.3, 2.29, 2.0, 1.0, 0.9, 0.95, 5.0]) in (1e-3, 1e-2)


def test_lr_find_cli_prints_the_suggestion_and_writes_the_plot(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cnntool.cli.main import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["lr-find", "--steps", "30", "--threads", "1", "--plot", "lr.png", "-q"])
    assert res.exit_code == 0, res.output
    assert float(res.stdout.strip()) > 0 and (tmp_path / "lr.png").stat().st_size > 1000
    assert not (tmp_path / "runs").exists()
    bad = CliRunner().invoke(app, ["lr-find", "--start-lr", "1", "--end-lr", "0.1"])
    assert bad.exit_code == 2 and "--start-lr" in bad.output


# ------------------------------------------------------------------ timm models

def test_timm_models_build_list_and_split_into_stages():
    from cnntool.finetune.blocks import blocks
    from cnntool.models import create_model, get_model_info, list_models

    assert "timm:resnet18" in list_models(include_namespaces=True)
    info = get_model_info("timm:convnext_atto")
    assert info.default_size == 288 or info.default_size == 224
    model = create_model("timm:convnext_atto", 7, 1)
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 7)
    names = [n for n, _ in blocks(model)]
    assert names[1:4] == ["stages.0", "stages.1", "stages.2"] and names[-1] == "head.fc"
    with pytest.raises(ConfigError, match="not a timm model"):
        get_model_info("timm:no_such_net")


def test_timm_imagenet_weights_offline_name_what_to_fetch_and_cfg_goes_into_the_spec(monkeypatch, tmp_path):
    from cnntool.errors import CheckpointError
    from cnntool.finetune import weights as W
    from cnntool.models.timm import pretrained_cfg

    monkeypatch.setenv("CNNTOOL_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(W, "_hf_cached", lambda repo, f: None)
    with pytest.raises(CheckpointError) as e:
        W.resolve_source("imagenet", "timm:resnet18")
    msg = str(e.value)
    assert "timm/resnet18.a1_in1k" in msg and "model.safetensors" in msg and "\n" not in msg
    pre = W.timm_preprocessing(pretrained_cfg("resnet18"))
    assert pre.input_size == [224, 224] and pre.crop_pct == 0.95 and pre.interpolation == "bicubic"
    assert pre.mean == [0.485, 0.456, 0.406]
    # a cached safetensors file is read (no pickle) into a Source with timm's preprocessing
    from safetensors.torch import save_file

    from cnntool.models import create_model

    f = tmp_path / "model.safetensors"
    save_file(create_model("timm:resnet18", 1000, 3).state_dict(), str(f))
    monkeypatch.setattr(W, "_hf_cached", lambda repo, name: f)
    src = W.resolve_source("imagenet", "timm:resnet18")
    assert src.kind == "imagenet" and "fc.weight" in src.state and src.preprocessing.crop_pct == 0.95
