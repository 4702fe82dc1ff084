"""Every option of the training commands declared once (flag, help, panel), keyed by its config field.

A command's option parameters are generated from the config dataclasses (``cnntool.config``): the field
gives the name, the type and the default (defined there, once); this table gives the flag and the help.
``with_options(DataConfig, ModelConfig, TrainConfig)`` adds them to a command function, which receives them
as one ``options`` mapping. train, finetune, summary and lr-find therefore cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Annotated, Any, Callable, Optional

import typer

from cnntool import config as C

_DATA, _AUG, _MODEL, _OPT, _RUN, _OUT, _FT = ("Data", "Augmentation", "Model", "Optimisation", "Run", "Output",
                                              "Fine-tuning")
_RECIPE, _SPEED = "Recipe (EMA, mixing, imbalance, budget)", "Speed"


def _names(values) -> str:
    return ", ".join(values)


@dataclasses.dataclass(frozen=True)
class Declared:
    flags: tuple[str, ...]
    help: str
    panel: str


def _d(panel: str, *flags: str, help: str) -> Declared:
    return Declared(flags, help, panel)


DATA_SETS = "digits, mnist, fashion-mnist, cifar10, cifar100, imagenette, inaturalist"  # cnntool.data.sources

DECLARED: dict[type, dict[str, Declared | None]] = {  # None: a config field with no flag
    C.DataConfig: {
        "data": _d(_DATA, "--data", help=f"Data set name ({DATA_SETS}) or a class-per-folder directory."),
        "data_dir": _d(_DATA, "--data-dir", help="Where named data sets live (default: $CNNTOOL_DATA_DIR or ./data)."),
        "download": _d(_DATA, "--download", help="Download a named data set if it is missing (needs internet)."),
        "img_size": _d(_DATA, "--img-size", help="Input side in pixels (default: the data's size, or the model's "
                                                 "minimum)."),
        "val_fraction": _d(_DATA, "--val-fraction", help="Fraction of train held out for validation when the data has "
                                                         "no val split."),
        "test_fraction": _d(_DATA, "--test-fraction", help="Fraction held out for test when the data has no test "
                                                           "split."),
        "split_seed": _d(_DATA, "--split-seed", help="Seed of the train/val/test split."),
        "workers": _d(_DATA, "--workers", help="DataLoader workers for large folder data sets."),
        "augment": _d(_AUG, "--augment", help=f"Preset: {_names(C.AUGMENT_PRESETS)}. The policies "
                                              f"({_names(C.AUGMENT_POLICIES)}: torchvision transforms.v2, plus a flip) "
                                              "draw one op per image on uint8: trivialaugment in batched "
                                              "kernels, the others image by image; every other op runs "
                                              "batch-at-a-time."),
        "random_erasing": _d(_AUG, "--random-erasing", help="Probability of erasing one random rectangle per image "
                                                            "(torchvision RandomErasing, batch-at-a-time)."),
        "crop_pad": _d(_AUG, "--crop-pad", help="Random crop after zero padding of N pixels."),
        "hflip": _d(_AUG, "--hflip", help="Random horizontal flip."),
        "rotate": _d(_AUG, "--rotate", help="Random rotation up to ± degrees."),
        "color_jitter": _d(_AUG, "--color-jitter", help="Brightness/contrast/saturation jitter strength."),
        "rrc": _d(_AUG, "--rrc", help="Random resized crop: smallest area fraction (0 = off)."),
        "cutout": _d(_AUG, "--cutout", help="Cutout square side in pixels (0 = off)."),
        "blur": _d(_AUG, "--blur", help="Probability of a Gaussian blur."),
        "noise": _d(_AUG, "--noise", help="Salt-and-pepper pixel probability."),
    },
    C.ModelConfig: {
        "model": _d(_MODEL, "--model", "-m", help="Model name (see --list-models) or tv:NAME."),
        "bn": _d(_MODEL, "--bn/--no-bn", help="BatchNorm after each conv (default: the model's own)."),
        "dropout": _d(_MODEL, "--dropout", help="Dropout probability (default: the model's own; 0 for simplecnn, "
                                                "0.5 for alexnet/vgg11/nin)."),
        "bias": _d(_MODEL, "--bias/--no-bias", help="Bias terms in conv and dense layers (default: the model's own)."),
        "activation": _d(_MODEL, "--activation", help=f"{_names(C.ACTIVATIONS)} (default: the model's own)."),
        "filters": _d(_MODEL, "--filters", help="cnn5 filters: list (16,32,...) or equalM / doublingM / halvingM."),
        "kernels": _d(_MODEL, "--kernels", help="cnn5 kernel sizes: list or constantK / increasing / decreasing."),
        "dense": _d(_MODEL, "--dense", help="cnn5 dense units."),
        "conv_impl": _d(_MODEL, "--conv-impl", help=f"{_names(C.CONV_IMPLS)} (numba: cnntool's own convolution)."),
    },
    C.TrainConfig: {
        "epochs": _d(_OPT, "--epochs", "-e", help="Epochs."),
        "batch_size": _d(_OPT, "--batch-size", "-b", help="Batch size."),
        "optimizer": _d(_OPT, "--optimizer", help=f"{_names(C.OPTIMIZERS)}."),
        "lr": _d(_OPT, "--lr", help="Peak learning rate."),
        "weight_decay": _d(_OPT, "--weight-decay", help="Weight decay."),
        "momentum": _d(_OPT, "--momentum", help="SGD momentum."),
        "scheduler": _d(_OPT, "--scheduler", help=f"{_names(C.SCHEDULERS)}."),
        "warmup_epochs": _d(_OPT, "--warmup-epochs", help="Linear warm-up epochs."),
        "step_size": _d(_OPT, "--step-size", help="step scheduler: epochs between decays (0 = epochs/3)."),
        "gamma": _d(_OPT, "--gamma", help="step scheduler: decay factor."),
        "label_smoothing": _d(_OPT, "--label-smoothing", help="Label smoothing."),
        "grad_clip": _d(_OPT, "--grad-clip", help="Clip the gradient norm (0 = off)."),
        "seed": _d(_OPT, "--seed", help="Seed of initialisation, shuffling and augmentation."),
        "eval_every": _d(_OPT, "--eval-every", help="Also evaluate every N steps (0 = each epoch only)."),
        "monitor": _d(_OPT, "--monitor", help=f"Metric that picks best.pt: {_names(C.MONITORS)}."),
        "patience": _d(_OPT, "--patience", help="Early stopping after N epochs without improvement (0 = off)."),
        "threads": _d(_OPT, "--threads", help="CPU threads (default: all cores)."),
        "device": _d(_OPT, "--device", help="auto, cpu, cuda, cuda:N."),
        "amp": _d(_SPEED, "--amp", help=f"Mixed precision: {_names(C.AMP_MODES)} (bf16 works on CPU too; refused on a "
                                        "CPU without bf16)."),
        "channels_last": _d(_SPEED, "--channels-last", help="channels_last memory format (CPU and CUDA)."),
        "compile": _d(_SPEED, "--compile", help="torch.compile the model."),
        "ema": _d(_RECIPE, "--ema", help="Keep an exponential moving average of the weights; it is evaluated, picks "
                                         "best.pt and is what eval/export use."),
        "ema_decay": _d(_RECIPE, "--ema-decay", help="EMA decay, reached after a timm-style warm-up "
                                                     "(decay_t = min(decay, 1 - (1 + t)^-2/3))."),
        "mixup": _d(_RECIPE, "--mixup", help="Mixup Beta(alpha, alpha) on whole batches (0 = off, e.g. 0.2)."),
        "cutmix": _d(_RECIPE, "--cutmix", help="CutMix Beta(alpha, alpha) on whole batches (0 = off, e.g. 1.0); with "
                                               "--mixup each batch gets one of the two."),
        "mix_prob": _d(_RECIPE, "--mix-prob", help="Probability that a batch is mixed."),
        "class_weights": _d(_RECIPE, "--class-weights", help="Loss weight per class: auto (inverse frequency, "
                                                             "n / (k * n_c)) or a JSON file (list, or {class: w})."),
        "sampler": _d(_RECIPE, "--sampler", help=f"{_names(C.SAMPLERS)}; balanced draws every class equally often "
                                                 "(with replacement)."),
        "accum_steps": _d(_RECIPE, "--accum-steps", help="Gradient accumulation: one optimizer step per N batches "
                                                         "(= an N× larger batch)."),
        "time": _d(_RECIPE, "--time", help="Wall-clock budget in minutes: stop cleanly, with a final evaluation "
                                           "(0 = none)."),
        "log": _d(_RUN, "--log", help=f"Track the run: a comma list of {_names(C.TRACKERS)} (each an extra: pip "
                                      "install 'cnntool\\[tensorboard]' ...). Per evaluation point losses, accuracies "
                                      "and lr; the options, final metrics and confusion matrix at the end."),
        "mlflow_uri": _d(_RUN, "--mlflow-uri", help="MLflow tracking URI for --log mlflow (default "
                                                    "$MLFLOW_TRACKING_URI, else sqlite:///RUNS_ROOT/mlflow.db)."),
        "log_group": None,  # set by sweeps (the study) and recipes, no flag
    },
    C.FinetuneOptions: {
        "model": _d(_MODEL, "--model", "-m", help="tv:NAME (or a cnntool model with a state_dict); default: the "
                                                  "--weights run's model, else tv:resnet18."),
        "weights": _d(_FT, "--weights", "-w", help="imagenet (torchvision weights, hub cache), a cnntool run "
                                                   "directory or checkpoint, a state_dict .pt file, or none."),
        "strategy": _d(_FT, "--strategy", "-s", help="full, linear (head only), bn (head + BatchNorm), last-k "
                                                     "(head + last --k blocks) or gradual."),
        "k": _d(_FT, "--k", help="last-k: number of backbone blocks that train."),
        "unfreeze_every": _d(_FT, "--unfreeze-every", help="gradual: epochs between unfreezing one more block."),
        "freeze_first": _d(_FT, "--freeze-first", help="Keep the first N backbone blocks frozen (any strategy)."),
        "head": _d(_FT, "--head", help=f"{C.HEADS}."),
        "head_dropout": _d(_FT, "--head-dropout", help="Dropout in the head."),
        "backbone_lr_mult": _d(_FT, "--backbone-lr-mult", help="Learning-rate factor of the pretrained blocks "
                                                               "(e.g. 0.1)."),
        "norm": _d(_FT, "--norm", help="Normalisation: auto (ImageNet weights: theirs; cnntool runs: the new data's), "
                                       "weights or data."),
    },
}

_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def _python_type(annotation: str) -> Any:
    """``"int | None"`` -> ``Optional[int]`` (the config modules use postponed annotations)."""
    parts = [p.strip() for p in annotation.split("|")]
    base = _TYPES[parts[0]]
    return Optional[base] if "None" in parts else base


def option_parameters(*groups: type, defaults: dict[str, Any] | None = None,
                      only: tuple[str, ...] | None = None) -> list[inspect.Parameter]:
    """The Typer parameters of every field of ``groups`` (``defaults`` overrides a field's default)."""
    defaults = defaults or {}
    params: list[inspect.Parameter] = []
    for group in groups:
        for f in dataclasses.fields(group):
            if only is not None and f.name not in only:
                continue
            decl = DECLARED[group][f.name]
            if decl is None:
                continue
            info = typer.Option(*decl.flags, help=decl.help, rich_help_panel=decl.panel, show_default=True)
            annotation = Annotated[_python_type(str(f.type)), info]
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                            default=defaults.get(f.name, f.default)))
    return params


def with_options(*groups: type, defaults: dict[str, Any] | None = None, only: tuple[str, ...] | None = None):
    """Decorator: add the option parameters of ``groups`` to a command; it receives them as ``options``."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "options"]
        generated = option_parameters(*groups, defaults=defaults, only=only)
        names = {p.name for p in generated}
        clash = names & {p.name for p in own}
        if clash:
            raise TypeError(f"{fn.__name__}: parameters {sorted(clash)} are generated from the config")
        positional = [p for p in own if p.default is inspect.Parameter.empty]
        keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p not in positional]

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            options = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            return fn(*args, options=options, **kwargs)

        params = positional + generated + keyword
        del command.__wrapped__  # Typer must see the generated signature, not fn's
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command
    return deco


# Options of the run itself (not stored as training options): where it goes, how it is shown.
RunsRoot = Annotated[str, typer.Option("--runs-root", help="Folder that holds run directories.",
                                       rich_help_panel=_RUN, show_default=True)]
Name = Annotated[Optional[str], typer.Option("--name", help="Run name under --runs-root (default: train, train2, "
                                                            "...).", rich_help_panel=_RUN)]
Out = Annotated[Optional[str], typer.Option("--out", "-o", help="Exact run directory (must not exist or be empty).",
                                            rich_help_panel=_RUN)]
Resume = Annotated[Optional[str], typer.Option("--resume", help="Continue the run in this directory from its "
                                                                "last.pt.", rich_help_panel=_RUN)]
ConfigFile = Annotated[Optional[str], typer.Option(
    "--config", help="YAML/JSON file of options (keys = option names), or a run's config.json to reproduce it; "
                     "flags on the command line override it.", rich_help_panel=_RUN, show_default=False)]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object with the results on stdout.",
                                    rich_help_panel=_OUT)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or tables on stderr.", rich_help_panel=_OUT)]
RUNS_ROOT_DEFAULT = C.RunConfig.runs_root


def _declared(group: type, name: str) -> Any:
    """The Annotated type of one declared option, for commands that take it without its whole group."""
    (param,) = option_parameters(group, only=(name,))
    return param.annotation


# sweep and recipe track every run they train with the same two options as train
Log = _declared(C.TrainConfig, "log")
MlflowUri = _declared(C.TrainConfig, "mlflow_uri")
