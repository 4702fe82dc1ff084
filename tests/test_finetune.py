"""cnntool finetune: weights sources, strategies (what is frozen stays bit-for-bit), heads, run contract."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch import nn
from typer.testing import CliRunner

from cnntool.cli.main import app
from cnntool.config import DataConfig, RunConfig, TrainConfig
from cnntool.finetune import FinetuneOptions, Plan, block_params, blocks, prepare_finetune
from cnntool.finetune.weights import OFFLINE_ENV
from cnntool.models import create_model
from cnntool.models.heads import adapt_conv_weight, head_name
from cnntool.training import Reporter, Trainer, load_checkpoint, load_model

runner = CliRunner()
RESNET18_FILE = "resnet18-f37072fd.pth"
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- data and source runs


def _shapes(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """Coloured circles / squares / triangles on dark noise, 32x32 PNGs."""
    rng = np.random.default_rng(seed)
    colours = {"circle": (220, 40, 40), "square": (40, 200, 60), "triangle": (40, 60, 220)}
    for cls, col in colours.items():
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            im = Image.new("RGB", (32, 32), tuple(int(v) for v in rng.integers(0, 70, 3)))
            d = ImageDraw.Draw(im)
            x, y, s = (int(v) for v in (rng.integers(3, 11), rng.integers(3, 11), rng.integers(11, 19)))
            c = tuple(int(np.clip(v + rng.integers(-30, 30), 0, 255)) for v in col)
            if cls == "circle":
                d.ellipse([x, y, x + s, y + s], fill=c)
            elif cls == "square":
                d.rectangle([x, y, x + s, y + s], fill=c)
            else:
                d.polygon([(x, y + s), (x + s, y + s), (x + s // 2, y)], fill=c)
            im.save(root / cls / f"{i}.png")
    return root


def _stripes(root: Path, per_class: int = 16, seed: int = 1) -> Path:
    """A different photo-like folder set: horizontal vs vertical stripes in random colours."""
    rng = np.random.default_rng(seed)
    for cls in ("horizontal", "vertical"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            period = int(rng.integers(3, 7))
            a, b = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
            idx = np.arange(32) // period % 2
            mask = idx[:, None] if cls == "horizontal" else idx[None, :]
            mask = np.broadcast_to(mask, (32, 32))[..., None]
            arr = np.where(mask == 1, a, b) + rng.integers(-20, 20, (32, 32, 3))
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(root / cls / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("finetune")


@pytest.fixture(scope="module")
def shapes(work):
    return _shapes(work / "shapes")


@pytest.fixture(scope="module")
def stripes(work):
    return _stripes(work / "stripes")


def _invoke(args: list[str], env: dict[str, str] | None = None):
    return runner.invoke(app, args, env=env)


@pytest.fixture(scope="module")
def tv_source(work, shapes):
    """A tv:resnet18 pretrained with `cnntool train` on the shapes folder."""
    out = work / "src_resnet"
    r = _invoke(["train", "--data", str(shapes), "--model", "tv:resnet18", "--img-size", "32", "--epochs", "1",
                 "--batch-size", "8", "--threads", "1", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def digits_source(work):
    """simplecnn on the bundled 8x8 digits: 10 classes, 1 channel."""
    out = work / "src_digits"
    r = _invoke(["train", "--epochs", "1", "--threads", "1", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    return out


def _cfg(data: Path, runs: Path, epochs: int = 2, **train) -> RunConfig:
    return RunConfig(data=DataConfig(data=str(data)),
                     train=TrainConfig(epochs=epochs, batch_size=8, threads=1, **train), runs_root=str(runs))


class Recorder(Reporter):
    """At each epoch start (after the epoch hook and train_mode): which blocks train, and the BN modes."""

    def __init__(self, setup):
        self.setup = setup
        self.plan: Plan = setup.plan
        self.trainable: list[list[str]] = []
        self.bn_training: list[dict[str, bool]] = []
        self.states: list[dict[str, torch.Tensor]] = []

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        self.trainable.append([b.name for b in self.plan.blocks if any(p.requires_grad for p in b.params)])
        self.bn_training.append({n: m.training for n, m in self.setup.model.named_modules()
                                 if isinstance(m, nn.BatchNorm2d)})
        self.states.append({k: v.clone() for k, v in self.setup.model.state_dict().items()})


def _train(setup):
    before = {k: v.clone() for k, v in setup.model.state_dict().items()}
    rec = Recorder(setup)
    result = Trainer(setup, rec).run()
    after = load_checkpoint(Path(result["run_dir"]) / "last.pt")["model"]
    return before, after, rec, result


def _resnet_block(key: str) -> str:
    top = key.split(".")[0]
    return "conv1+bn1" if top in ("conv1", "bn1") else top


def _is_bn_key(model: nn.Module, key: str) -> bool:
    return isinstance(model.get_submodule(key.rpartition(".")[0]), nn.BatchNorm2d)


# ---------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("arch,kwargs,expected", [
    ("tv:resnet18", {}, ["conv1+bn1", "layer1", "layer2", "layer3", "layer4", "fc"]),
    ("tv:efficientnet_v2_s", {}, [f"features.{i}" for i in range(8)] + ["classifier"]),
    ("simplecnn", {}, ["0", "2", "4", "8", "10"]),
    ("simplecnn", {"bn": True}, ["0+1", "3+4", "6+7", "11", "13"]),
    ("cnn5", {}, ["features.0", "features.3", "features.6", "features.9", "features.12", "classifier.1",
                  "classifier.3"]),
    ("resnet18", {}, ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]),
    ("tv:resnet18", {"head": "mlp:16,8", "head_dropout": 0.3}, ["conv1+bn1", "layer1", "layer2", "layer3",
                                                                 "layer4", "fc"]),
])
def test_blocks_cover_every_parameter_once(arch, kwargs, expected):
    model = create_model(arch, 3, 3, input_size=[32, 32], **kwargs)
    assert [n for n, _ in blocks(model)] == expected
    per_block = block_params(model)
    ids = [id(p) for _, ps in per_block for p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    head = model.get_submodule(head_name(model))
    assert {id(p) for p in per_block[-1][1]} == {id(p) for p in head.parameters()}
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


def test_plan_schedule_and_param_groups():
    model = create_model("tv:resnet18", 3, 3)
    plan = Plan(model, "fc", "gradual", unfreeze_every=2, freeze_first=1)
    names = [b.name for b in plan.blocks]
    opened = [sorted(names[i] for i in plan.open_blocks(e)) for e in range(12)]
    assert opened[0] == opened[1] == ["fc"]
    assert opened[2] == opened[3] == ["fc", "layer4"]
    assert opened[4] == ["fc", "layer3", "layer4"]
    assert opened[11] == ["fc", "layer1", "layer2", "layer3", "layer4"]  # conv1+bn1 never (freeze_first 1)
    groups = plan.param_groups(1e-3, backbone_lr_mult=0.1)
    assert groups[0]["name"] == "fc" and groups[0]["lr"] == 1e-3
    assert all(g["lr"] == pytest.approx(1e-4) for g in groups[1:])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


# ---------------------------------------------------------------------------- strategies, bit for bit


@pytest.mark.parametrize("ft,trains", [
    ({"strategy": "full"}, {"conv1+bn1", "layer1", "layer2", "layer3", "layer4", "fc"}),
    ({"strategy": "linear"}, {"fc"}),
    ({"strategy": "last-k", "k": 2}, {"layer3", "layer4", "fc"}),
    ({"strategy": "full", "freeze_first": 2}, {"layer2", "layer3", "layer4", "fc"}),
    ({"strategy": "linear", "head": "mlp:16", "head_dropout": 0.2, "backbone_lr_mult": 0.1}, {"fc"}),
])
def test_frozen_blocks_unchanged_trainable_changed(work, tv_source, stripes, ft, trains):
    setup = prepare_finetune(_cfg(stripes, work / "runs"), FinetuneOptions(weights=str(tv_source), **ft))
    before, after, rec, _ = _train(setup)
    assert set(before) == set(after)
    for key in before:
        block = _resnet_block(key)
        if block in trains:
            if before[key].is_floating_point():
                assert not torch.equal(before[key], after[key]), f"{key} should have trained"
        else:
            assert torch.equal(before[key], after[key]), f"{key} is frozen but changed"
    # frozen BatchNorm layers were in eval mode in every epoch, trained ones in train mode
    for modes in rec.bn_training:
        for name, training in modes.items():
            assert training == (_resnet_block(name) in trains), name


def test_bn_strategy_trains_only_batchnorm_and_head(work, tv_source, stripes):
    setup = prepare_finetune(_cfg(stripes, work / "runs"), FinetuneOptions(weights=str(tv_source), strategy="bn"))
    model = setup.model
    before, after, rec, _ = _train(setup)
    for key in before:
        trains = key.startswith("fc.") or _is_bn_key(model, key)
        if trains:
            assert not torch.equal(before[key], after[key]), f"{key} should have trained"
        else:
            assert torch.equal(before[key], after[key]), f"{key} is frozen but changed"
    assert all(all(modes.values()) for modes in rec.bn_training)  # every BN adapts its statistics


def test_gradual_unfreezes_on_schedule(work, tv_source, stripes):
    setup = prepare_finetune(_cfg(stripes, work / "runs", epochs=3),
                             FinetuneOptions(weights=str(tv_source), strategy="gradual", unfreeze_every=1))
    before, after, rec, result = _train(setup)
    assert rec.trainable == [["fc"], ["layer4", "fc"], ["layer3", "layer4", "fc"]]
    # layer4 did not move in epoch 1 (frozen), moved by the end; layer3 only trained in epoch 3
    l4 = [k for k in before if k.startswith("layer4.") and before[k].is_floating_point()]
    assert all(torch.equal(rec.states[1][k], before[k]) for k in l4)
    assert all(not torch.equal(after[k], before[k]) for k in l4)
    l3 = [k for k in before if k.startswith("layer3.") and before[k].is_floating_point()]
    assert all(torch.equal(rec.states[2][k], before[k]) for k in l3)
    assert all(not torch.equal(after[k], before[k]) for k in l3)
    for k in before:
        if _resnet_block(k) in ("conv1+bn1", "layer1", "layer2"):
            assert torch.equal(after[k], before[k]), k
    assert rec.bn_training[0]["layer4.0.bn1"] is False and rec.bn_training[1]["layer4.0.bn1"] is True
    assert setup.plan.trainable() == sum(p.numel() for k, p in setup.model.named_parameters()
                                         if k.split(".")[0] in ("layer3", "layer4", "fc"))
    config = json.loads((Path(result["run_dir"]) / "config.json").read_text())
    assert config["command"] == "finetune" and config["options"]["strategy"] == "gradual"
    assert Path(result["run_dir"]).name.startswith("finetune")


# ---------------------------------------------------------------------------- weights sources


def test_cnntool_run_source_loads_backbone_and_adapts_channels(work, digits_source, stripes):
    src_ckpt = load_checkpoint(digits_source / "best.pt")
    src = src_ckpt["model"]
    setup = prepare_finetune(_cfg(stripes, work / "runs"), FinetuneOptions(weights=str(digits_source)))
    state = setup.model.state_dict()
    assert setup.spec.arch == "simplecnn" and setup.spec.in_channels == 3 and setup.spec.num_classes == 2
    assert setup.spec.input_size == src_ckpt["spec"]["input_size"]  # the source run's input size
    assert len(setup.spec.mean) == 3  # the new data's own statistics
    assert torch.equal(state["0.weight"], adapt_conv_weight(src["0.weight"], 3))
    for key in src:
        if key.startswith("10."):  # the head: new classes
            assert state[key].shape[0] == 2
        elif key != "0.weight":
            assert torch.equal(state[key], src[key]), key


def test_state_dict_file_source(work, stripes):
    torch.manual_seed(1)
    ref = create_model("tv:resnet18", 1000, 3)
    path = work / "tv_resnet18_state.pt"
    torch.save(ref.state_dict(), path)
    setup = prepare_finetune(_cfg(stripes, work / "runs"),
                             FinetuneOptions(weights=str(path), model="tv:resnet18", strategy="linear"))
    state = setup.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ref.state_dict().items() if not k.startswith("fc."))
    assert setup.spec.input_size == [224, 224] and setup.spec.mean == [0.485, 0.456, 0.406]


def test_mismatched_keys_are_one_clear_line(work, stripes, digits_source):
    path = work / "wrong_state.pt"
    torch.save(create_model("simplecnn", 10, 3).state_dict(), path)
    r = _invoke(["finetune", "--weights", str(path), "--model", "tv:resnet18", "--data", str(stripes),
                 "--runs-root", str(work / "runs_bad")])
    assert r.exit_code == 1
    lines = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "does not fit" in lines[0] and "missing" in lines[0] and "unexpected" in lines[0]
    assert "Traceback" not in r.output
    assert not (work / "runs_bad" / "finetune").exists()


@pytest.mark.parametrize("args,needle", [
    (["--strategy", "last-k", "--k", "9"], "--k 9"),
    (["--strategy", "sideways"], "--strategy"),
    (["--head", "mlp:x"], "--head"),
    (["--model", "tv:resnet50"], "does not match"),
])
def test_bad_options_are_usage_errors(work, stripes, digits_source, tv_source, args, needle):
    src = tv_source if "--model" not in args else digits_source
    r = _invoke(["finetune", "--weights", str(src), "--data", str(stripes), "--threads", "1", *args])
    assert r.exit_code == 2, r.output  # bad option values are usage errors
    assert needle in r.output


def test_imagenet_offline_one_line(work, stripes, tmp_path):
    env = {"TORCH_HOME": str(tmp_path / "torch"), OFFLINE_ENV: "1"}
    r = _invoke(["finetune", "--weights", "imagenet", "--model", "tv:resnet18", "--data", str(stripes)], env=env)
    assert r.exit_code == 1
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1, r.output
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / RESNET18_FILE) in lines[0].replace("\n", "")


def test_imagenet_download_failure_one_line(work, stripes, tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    r = _invoke(["finetune", "--data", str(stripes)], env={"TORCH_HOME": str(tmp_path / "torch")})
    assert r.exit_code == 1 and RESNET18_FILE in r.output and "place it there" in r.output


def test_imagenet_from_hub_cache_mlp_head_rebuilds_from_spec(work, stripes, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(OFFLINE_ENV, "1")
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(3)
    ref = create_model("tv:resnet18", 1000, 3).state_dict()
    torch.save(ref, cache / RESNET18_FILE)

    # weights' own transforms: 224 crop of 256, ImageNet statistics
    default = prepare_finetune(_cfg(stripes, work / "runs"), FinetuneOptions(weights="imagenet", strategy="linear"))
    assert default.spec.input_size == [224, 224] and default.spec.crop_pct == pytest.approx(224 / 256)
    assert default.spec.std == [0.229, 0.224, 0.225]
    assert all(torch.equal(default.model.state_dict()[k], v) for k, v in ref.items() if not k.startswith("fc."))

    cfg = RunConfig(data=DataConfig(data=str(stripes), img_size=32),
                    train=TrainConfig(epochs=1, batch_size=8, threads=1), runs_root=str(work / "runs"))
    setup = prepare_finetune(cfg, FinetuneOptions(weights="imagenet", model="tv:resnet18", strategy="last-k", k=1,
                                                  head="mlp:16,8", head_dropout=0.3))
    result = Trainer(setup).run()
    model, spec, _ = load_model(result["run_dir"])
    assert spec.arch == "tv:resnet18" and spec.model_kwargs == {"head": "mlp:16,8", "head_dropout": 0.3}
    assert spec.input_size == [32, 32]
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), setup.model.eval()(x))


# ---------------------------------------------------------------------------- CLI end to end, run contract


def test_cli_finetune_run_contract_eval_export(work, digits_source, stripes):
    out = work / "ft_cli"
    r = _invoke(["finetune", "--weights", str(digits_source), "--data", str(stripes), "--strategy", "linear",
                 "--head", "mlp:16", "--head-dropout", "0.3", "--epochs", "1", "--threads", "1", "--out", str(out),
                 "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["strategy"] == "linear" and result["trainable_params"] < result["params"]
    for name in ("config.json", "spec.json", "metrics.csv", "best.pt", "last.pt", "summary.json"):
        assert (out / name).is_file(), name
    model, spec, ckpt = load_model(out)
    assert spec.arch == "finetuned" and spec.model_kwargs["base"] == "simplecnn"
    assert ckpt["command"] == "finetune"
    r = _invoke(["eval", str(out), "--no-plots", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["acc"] == pytest.approx(result["test_acc"], abs=1e-6)
    r = _invoke(["export", str(out), "--json", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["passed"]


@pytest.mark.slow
def test_eval_and_export_accept_finetuned_tv_run(work, tv_source, stripes):
    out = work / "ft_tv"
    r = _invoke(["finetune", "--weights", str(tv_source), "--data", str(stripes), "--strategy", "bn",
                 "--head", "mlp:16", "--epochs", "1", "--threads", "1", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["arch"] == "tv:resnet18"
    r = _invoke(["eval", str(out), "--no-plots", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["acc"] == pytest.approx(result["test_acc"], abs=1e-6)
    r = _invoke(["export", str(out), "--json", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["passed"]


def test_weights_none_full_equals_train(work, stripes):
    """Same Trainer, same model, same data: finetune --weights none --strategy full reproduces train exactly."""
    common = ["--data", str(stripes), "--model", "tv:resnet18", "--img-size", "32", "--epochs", "1",
              "--batch-size", "8", "--lr", "1e-3", "--threads", "1", "--json", "-q"]
    a = _invoke(["train", *common, "--out", str(work / "same_train")])
    b = _invoke(["finetune", "--weights", "none", "--strategy", "full", *common, "--out", str(work / "same_ft")])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    assert (ra["val_loss"], ra["test_loss"]) == (rb["val_loss"], rb["test_loss"])


class _StopAtEpoch(Reporter):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_resume_finetune_run_matches_uninterrupted(work, digits_source, stripes):
    from cnntool.runner import finetune

    ft = FinetuneOptions(weights=str(digits_source), strategy="gradual", unfreeze_every=1, backbone_lr_mult=0.5)
    full = finetune(_cfg(stripes, work / "runs_resume", epochs=3), ft)
    cut = RunConfig(data=DataConfig(data=str(stripes)), train=TrainConfig(epochs=3, batch_size=8, threads=1),
                    out=str(work / "resumed"))
    with pytest.raises(KeyboardInterrupt):
        finetune(cut, ft, _StopAtEpoch(2))
    assert (work / "resumed" / "last.pt").is_file()
    r = _invoke(["finetune", "--resume", str(work / "resumed"), "--json"])
    assert r.exit_code == 0, r.output
    a = load_checkpoint(Path(full["run_dir"]) / "last.pt")["model"]
    b = load_checkpoint(work / "resumed" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads(r.stdout)["val_acc"] == full["val_acc"]


def test_compare_strategies_table_and_plot(work, digits_source, stripes):
    out = work / "compare"
    r = _invoke(["finetune", "--weights", str(digits_source), "--data", str(stripes), "--compare", "linear,gradual",
                 "--epochs", "2", "--threads", "1", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert [s["strategy"] for s in summary["strategies"]] == ["linear", "gradual"]
    lin, grad = summary["strategies"]
    assert grad["trainable_end"] > grad["trainable_start"] == lin["trainable_end"]
    assert (out / "curves.png").stat().st_size > 0 and (out / "strategies.csv").is_file()
    assert (out / "linear" / "best.pt").is_file() and (out / "gradual" / "spec.json").is_file()
    assert "best val acc" in r.output


def test_strategies_script(work, digits_source, stripes, monkeypatch, capsys):
    out = work / "script"
    monkeypatch.setattr(sys, "argv", ["finetune_strategies.py", "--weights", str(digits_source), "--data",
                                      str(stripes), "--compare", "full,linear", "--epochs", "1", "--threads", "1",
                                      "--out", str(out), "-q", "--json"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "scripts" / "finetune_strategies.py"), run_name="__main__")
    assert e.value.code in (0, None)
    assert json.loads(capsys.readouterr().out)["strategies"][1]["strategy"] == "linear"
