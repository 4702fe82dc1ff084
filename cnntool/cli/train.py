"""cnntool train."""

from __future__ import annotations

from cnntool.cli import options as o
from cnntool.cli.common import print_json, stderr_console

d = o.DEFAULTS


def train(
    data: o.Data = d["data"], data_dir: o.DataDir = None, download: o.Download = False, img_size: o.ImgSize = None,
    val_fraction: o.ValFraction = d["val_fraction"], test_fraction: o.TestFraction = d["test_fraction"],
    split_seed: o.SplitSeed = d["split_seed"], workers: o.Workers = d["workers"],
    augment: o.Augment = None, crop_pad: o.CropPad = 0, hflip: o.HFlip = False, rotate: o.Rotate = 0.0,
    color_jitter: o.ColorJitter = 0.0, rrc: o.RRC = 0.0, cutout: o.Cutout = 0, blur: o.Blur = 0.0,
    noise: o.Noise = 0.0,
    model: o.Model = d["model"], bn: o.BN = None, dropout: o.Dropout = d["dropout"], bias: o.Bias = True,
    activation: o.Activation = d["activation"], filters: o.Filters = None, kernels: o.Kernels = None,
    dense: o.Dense = None, conv_impl: o.ConvImpl = d["conv_impl"],
    epochs: o.Epochs = d["epochs"], batch_size: o.BatchSize = d["batch_size"], optimizer: o.Optimizer = d["optimizer"],
    lr: o.LR = d["lr"], weight_decay: o.WeightDecay = d["weight_decay"], momentum: o.Momentum = d["momentum"],
    scheduler: o.Scheduler = d["scheduler"], warmup_epochs: o.WarmupEpochs = d["warmup_epochs"],
    step_size: o.StepSize = d["step_size"], gamma: o.Gamma = d["gamma"],
    label_smoothing: o.LabelSmoothing = d["label_smoothing"], grad_clip: o.GradClip = d["grad_clip"],
    seed: o.Seed = d["seed"], eval_every: o.EvalEvery = d["eval_every"], monitor: o.Monitor = d["monitor"],
    patience: o.Patience = d["patience"], threads: o.Threads = None, device: o.Device = d["device"],
    amp: o.Amp = d["amp"], channels_last: o.ChannelsLast = False, compile: o.Compile = False,
    runs_root: o.RunsRoot = "runs", name: o.Name = None, out: o.Out = None, resume: o.Resume = None,
    list_models: bool = o.typer.Option(False, "--list-models", help="List the model names and exit.",
                                       rich_help_panel="Model"),
    json: o.Json = False, quiet: o.Quiet = False,
) -> None:
    """Train a CNN and write a run directory (config, spec, metrics, best.pt, last.pt).

    Example: [bold]cnntool train --bn --dropout 0.5[/bold]  (digits, no download)
    """
    options = {k: v for k, v in locals().items()
               if k not in ("runs_root", "name", "out", "resume", "list_models", "json", "quiet")}
    console = stderr_console()
    if list_models:
        _print_models(json)
        return
    from cnntool.cli.train_view import TrainView
    from cnntool.config import RunConfig
    from cnntool.training import Reporter, fit

    cfg = RunConfig.from_flat(options, runs_root=runs_root, name=name, out=out, resume=resume)
    view = Reporter() if quiet else TrainView(console)
    try:
        result = fit(cfg, view)
    finally:
        if isinstance(view, TrainView):
            view.close()
    if json:
        print_json(result)


def _print_models(as_json: bool) -> None:
    from rich.table import Table

    from cnntool.models import get_model_info, list_models

    own = list_models()
    tv = [n for n in list_models(include_torchvision=True) if n not in own]
    if as_json:
        print_json({"models": own, "torchvision": tv})
        return
    t = Table(title="cnntool models")
    for col in ("name", "min size", "description"):
        t.add_column(col)
    for n in own:
        info = get_model_info(n)
        t.add_row(n, str(info.min_size), info.description)
    console = stderr_console()
    console.print(t)
    console.print(f"torchvision ({len(tv)}): " + ", ".join(tv))
