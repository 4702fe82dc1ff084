"""cnntool finetune: transfer learning from pretrained weights with a choice of strategy."""

from __future__ import annotations

from typing import Annotated, Optional

from cnntool.cli import options as o
from cnntool.cli.common import print_json, stderr_console
from cnntool.cli.train import ConfigFile, Log, MlflowUri

d = o.DEFAULTS
_FT = "Fine-tuning"
# Fine-tuning starts from good weights: fewer epochs and a smaller peak learning rate than `train`.
FINETUNE_DEFAULTS = {"epochs": 10, "lr": 1e-3}


def _opt(*names: str, help: str):
    return o.typer.Option(*names, help=help, rich_help_panel=_FT, show_default=True)


Model = Annotated[Optional[str], o.typer.Option(
    "--model", "-m", help="tv:NAME (or a cnntool model with a state_dict); default: the --weights run's "
                          "model, else tv:resnet18.", rich_help_panel="Model")]
Weights = Annotated[str, _opt("--weights", "-w", help="imagenet (torchvision weights, hub cache), a cnntool run "
                                                      "directory or checkpoint, a state_dict .pt file, or none.")]
Strategy = Annotated[str, _opt("--strategy", "-s", help="full, linear (head only), bn (head + BatchNorm), last-k "
                                                        "(head + last --k blocks) or gradual.")]
K = Annotated[int, _opt("--k", help="last-k: number of backbone blocks that train.")]
UnfreezeEvery = Annotated[int, _opt("--unfreeze-every", help="gradual: epochs between unfreezing one more block.")]
FreezeFirst = Annotated[int, _opt("--freeze-first", help="Keep the first N backbone blocks frozen (any strategy).")]
Head = Annotated[str, _opt("--head", help="linear, or mlp:W1,W2,... (hidden widths).")]
HeadDropout = Annotated[float, _opt("--head-dropout", help="Dropout in the head.")]
BackboneLrMult = Annotated[float, _opt("--backbone-lr-mult", help="Learning-rate factor of the pretrained blocks "
                                                                  "(e.g. 0.1).")]
Norm = Annotated[str, _opt("--norm", help="Normalisation: auto (ImageNet weights: theirs; cnntool runs: the new "
                                          "data's), weights or data.")]
Compare = Annotated[Optional[str], _opt("--compare", help="Run several strategies (all, or e.g. full,linear,bn) "
                                                          "and print a comparison table and curves plot.")]


def finetune(
    data: o.Data = d["data"], data_dir: o.DataDir = None, download: o.Download = False, img_size: o.ImgSize = None,
    val_fraction: o.ValFraction = d["val_fraction"], test_fraction: o.TestFraction = d["test_fraction"],
    split_seed: o.SplitSeed = d["split_seed"], workers: o.Workers = d["workers"],
    augment: o.Augment = None, crop_pad: o.CropPad = 0, hflip: o.HFlip = False, rotate: o.Rotate = 0.0,
    color_jitter: o.ColorJitter = 0.0, rrc: o.RRC = 0.0, cutout: o.Cutout = 0, blur: o.Blur = 0.0,
    noise: o.Noise = 0.0,
    model: Model = None,
    weights: Weights = "imagenet", strategy: Strategy = "full", k: K = 1, unfreeze_every: UnfreezeEvery = 1,
    freeze_first: FreezeFirst = 0, head: Head = "linear", head_dropout: HeadDropout = 0.0,
    backbone_lr_mult: BackboneLrMult = 1.0, norm: Norm = "auto", compare: Compare = None,
    epochs: o.Epochs = FINETUNE_DEFAULTS["epochs"], batch_size: o.BatchSize = d["batch_size"],
    optimizer: o.Optimizer = d["optimizer"], lr: o.LR = FINETUNE_DEFAULTS["lr"],
    weight_decay: o.WeightDecay = d["weight_decay"], momentum: o.Momentum = d["momentum"],
    scheduler: o.Scheduler = d["scheduler"], warmup_epochs: o.WarmupEpochs = d["warmup_epochs"],
    step_size: o.StepSize = d["step_size"], gamma: o.Gamma = d["gamma"],
    label_smoothing: o.LabelSmoothing = d["label_smoothing"], grad_clip: o.GradClip = d["grad_clip"],
    seed: o.Seed = d["seed"], eval_every: o.EvalEvery = d["eval_every"], monitor: o.Monitor = d["monitor"],
    patience: o.Patience = d["patience"], threads: o.Threads = None, device: o.Device = d["device"],
    amp: o.Amp = d["amp"], channels_last: o.ChannelsLast = False, compile: o.Compile = False,
    runs_root: o.RunsRoot = "runs", name: o.Name = None, out: o.Out = None, resume: o.Resume = None,
    config: ConfigFile = None, log: Log = d["log"], mlflow_uri: MlflowUri = d["mlflow_uri"],
    json: o.Json = False, quiet: o.Quiet = False,
) -> None:
    """Fine-tune a pretrained network on new data; writes a run directory like train (runs/finetune, ...).

    Example: [bold]cnntool finetune --model tv:resnet18 --weights imagenet --data path/to/folder --strategy linear[/bold]
    """
    given = dict(locals())
    from cnntool.configfile import blame_config_file

    from_file: set[str] = set()
    if config is not None:
        from cnntool.configfile import merge_config

        given = merge_config(given, config, "finetune", taken=from_file)  # flags given on the command line win
    ft_names = ("model", "weights", "strategy", "k", "unfreeze_every", "freeze_first", "head", "head_dropout",
                "backbone_lr_mult", "norm")
    skip = ("runs_root", "name", "out", "resume", "json", "quiet", "compare", "config") + ft_names
    options = {key: v for key, v in given.items() if key not in skip}
    ft_values = {key: given[key] for key in ft_names}
    console = stderr_console()
    from cnntool.cli.train_view import TrainView
    from cnntool.config import RunConfig
    from cnntool.finetune import FinetuneOptions
    from cnntool.finetune import finetune as run_finetune
    from cnntool.training import Reporter

    with blame_config_file(config, from_file):
        cfg = RunConfig.from_flat(options, runs_root=runs_root, name=name, out=out, resume=resume)
        ft = FinetuneOptions(**ft_values)
        if from_file:
            cfg.validate()  # now, so that a bad value from the file is reported with the file's name
            ft.validate()
    if compare:
        _compare(cfg, ft, compare, console, json, quiet)
        return
    view = Reporter() if quiet else TrainView(console, title="finetune")
    try:
        result = run_finetune(cfg, ft, view)
    finally:
        if isinstance(view, TrainView):
            view.close()
    if json:
        print_json(result)


def _compare(cfg, ft, which: str, console, as_json: bool, quiet: bool) -> None:
    from cnntool.cli.train_view import TrainView
    from cnntool.finetune.compare import compare_strategies, parse_strategies, table
    from cnntool.training import Reporter

    strategies = parse_strategies(which)
    views: list[TrainView] = []

    def reporter(strategy: str) -> Reporter:
        if quiet:
            return Reporter()
        views.append(TrainView(console, title=f"finetune --strategy {strategy}"))
        return views[-1]

    try:
        summary = compare_strategies(cfg, ft, strategies, reporter)
    finally:
        for v in views:
            v.close()
    if not quiet:
        console.print(table(summary))
        console.print(f"  curves: {summary['plot']}")
    if as_json:
        print_json({k: v if k != "strategies" else [{c: r[c] for c in r if c != "curves"} for r in v]
                    for k, v in summary.items()})
