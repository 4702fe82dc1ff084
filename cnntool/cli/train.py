"""cnntool train."""

from __future__ import annotations

from typing import Annotated, Optional

from cnntool.cli import options as o
from cnntool.cli.common import print_json, stderr_console
from cnntool.tracking.names import TRACKERS

d = o.DEFAULTS

Seeds = Annotated[Optional[str], o.typer.Option(
    "--seeds", help="Run the same options under several seeds: 0-9, 0,3,7 or 0-2,5. Runs go to "
                    "RUNS_ROOT/<name or train>-seeds/seed<N>, plus seeds.json (mean, std, min, max) and seeds.png.",
    rich_help_panel="Run", show_default=False)]
Jobs = Annotated[int, o.typer.Option("--jobs", "-j", help="With --seeds: run this many seeds at once "
                                                          "(separate processes).", rich_help_panel="Run")]
Log = Annotated[Optional[str], o.typer.Option(
    "--log", help="Track the run: a comma list of " + ", ".join(TRACKERS) + " (each an extra: pip install "
                  "'cnntool[tensorboard]' ...). Per evaluation point losses, accuracies and lr; the options, final "
                  "metrics and confusion matrix at the end.", rich_help_panel="Run", show_default=False)]
MlflowUri = Annotated[Optional[str], o.typer.Option(
    "--mlflow-uri", help="MLflow tracking URI for --log mlflow (default $MLFLOW_TRACKING_URI, else "
                         "sqlite:///RUNS_ROOT/mlflow.db beside the run).", rich_help_panel="Run", show_default=False)]
ConfigFile = Annotated[Optional[str], o.typer.Option(
    "--config", help="YAML/JSON file of options (keys = option names), or a run's config.json to reproduce it; "
                     "flags on the command line override it.", rich_help_panel="Run", show_default=False)]


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
    seeds: Seeds = None, jobs: Jobs = 1, config: ConfigFile = None, log: Log = d["log"],
    mlflow_uri: MlflowUri = d["mlflow_uri"],
    list_models: bool = o.typer.Option(False, "--list-models", help="List the model names and exit.",
                                       rich_help_panel="Model"),
    json: o.Json = False, quiet: o.Quiet = False,
) -> None:
    """Train a CNN and write a run directory (config, spec, metrics, best.pt, last.pt).

    Example: [bold]cnntool train --bn --dropout 0.5[/bold]  (digits, no download)
    """
    options = {k: v for k, v in locals().items()
               if k not in ("runs_root", "name", "out", "resume", "list_models", "json", "quiet", "seeds", "jobs",
                            "config")}
    from cnntool.configfile import blame_config_file

    from_file: set[str] = set()
    if config is not None:
        from cnntool.configfile import merge_config

        options = merge_config(options, config, "train", taken=from_file)  # flags given on the command line win
    console = stderr_console()
    if list_models:
        _print_models(json)
        return
    from cnntool.cli.train_view import TrainView
    from cnntool.config import RunConfig
    from cnntool.training import Reporter, fit
    from cnntool.training.distributed import is_main_process

    with blame_config_file(config, from_file):
        cfg = RunConfig.from_flat(options, runs_root=runs_root, name=name, out=out, resume=resume)
        if from_file:
            cfg.validate()  # now, so that a bad value from the file is reported with the file's name
    if seeds is not None:
        _train_seeds(cfg, seeds, jobs, console, json, quiet)
        return
    main = is_main_process()  # under torchrun only rank 0 shows progress and prints JSON
    view = Reporter() if quiet or not main else TrainView(console)
    try:
        result = fit(cfg, view)
    finally:
        if isinstance(view, TrainView):
            view.close()
    if json and main:
        print_json(result)


def _train_seeds(cfg, seeds: str, jobs: int, console, as_json: bool, quiet: bool) -> None:
    """--seeds: the same run under each seed, then the aggregate table (library: cnntool.experiments.seeds)."""
    from rich.table import Table

    from cnntool.cli.train_view import TrainView
    from cnntool.experiments.seeds import parse_seeds, run_seeds
    from cnntool.training import Reporter

    seed_list = parse_seeds(seeds)
    views: list[TrainView] = []

    def reporter(seed: int):
        if quiet or jobs > 1:
            return Reporter()
        views.append(TrainView(console, title=f"seed {seed}"))
        return views[-1]

    def on_run(seed: int, result: dict) -> None:
        if not quiet and jobs > 1:
            console.print(f"seed {seed}: test acc {result['test_acc']:.4f} → {result['run_dir']}")

    if not quiet:
        console.print(f"[bold]{len(seed_list)} seeds[/bold] ({', '.join(map(str, seed_list))}), "
                      f"{jobs} at a time")
    try:
        result = run_seeds(cfg, seed_list, jobs=jobs, reporter=reporter, on_run=on_run)
    finally:
        for v in views:
            v.close()
    if not quiet:
        t = Table(title=f"{len(seed_list)} seeds: {result['dir']}", title_justify="left")
        t.add_column("metric")
        for col in ("mean", "std", "min", "max"):
            t.add_column(col, justify="right")
        for metric, agg in result["aggregate"].items():
            t.add_row(metric, *(f"{agg[k]:.4f}" for k in ("mean", "std", "min", "max")))
        console.print(t)
        console.print(f"  aggregate → {result['seeds_json']}" +
                      (f" · band plot → {result['plot']}" if result.get("plot") else ""))
    if as_json:
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
