"""Option declarations shared by train and finetune (defaults come from cnntool.config, defined once)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnntool.config import DataConfig as D
from cnntool.config import ModelConfig as M
from cnntool.config import TrainConfig as T

_DATA, _AUG, _MODEL, _OPT, _RUN, _OUT = "Data", "Augmentation", "Model", "Optimisation", "Run", "Output"


def _opt(*names: str, help: str, panel: str, **kw):
    return typer.Option(*names, help=help, rich_help_panel=panel, show_default=True, **kw)


# data
Data = Annotated[str, _opt("--data", help="Data set name (digits, mnist, fashion-mnist, cifar10, cifar100, "
                                         "imagenette, inaturalist) or a class-per-folder directory.", panel=_DATA)]
DataDir = Annotated[Optional[str], _opt("--data-dir", help="Where named data sets live (default: $CNNTOOL_DATA_DIR "
                                                           "or ./data).", panel=_DATA)]
Download = Annotated[bool, _opt("--download", help="Download a named data set if it is missing (needs internet).",
                                panel=_DATA)]
ImgSize = Annotated[Optional[int], _opt("--img-size", help="Input side in pixels (default: the data's size, "
                                                           "or the model's minimum).", panel=_DATA)]
ValFraction = Annotated[float, _opt("--val-fraction", help="Fraction of train held out for validation when the "
                                                           "data has no val split.", panel=_DATA)]
TestFraction = Annotated[float, _opt("--test-fraction", help="Fraction held out for test when the data has no test "
                                                             "split.", panel=_DATA)]
SplitSeed = Annotated[int, _opt("--split-seed", help="Seed of the train/val/test split.", panel=_DATA)]
Workers = Annotated[int, _opt("--workers", help="DataLoader workers for large folder data sets.", panel=_DATA)]
# augmentation
Augment = Annotated[Optional[str], _opt("--augment", help="Preset: none, light, standard, strong, digits.",
                                        panel=_AUG)]
CropPad = Annotated[int, _opt("--crop-pad", help="Random crop after zero padding of N pixels.", panel=_AUG)]
HFlip = Annotated[bool, _opt("--hflip", help="Random horizontal flip.", panel=_AUG)]
Rotate = Annotated[float, _opt("--rotate", help="Random rotation up to ± degrees.", panel=_AUG)]
ColorJitter = Annotated[float, _opt("--color-jitter", help="Brightness/contrast/saturation jitter strength.",
                                    panel=_AUG)]
RRC = Annotated[float, _opt("--rrc", help="Random resized crop: smallest area fraction (0 = off).", panel=_AUG)]
Cutout = Annotated[int, _opt("--cutout", help="Cutout square side in pixels (0 = off).", panel=_AUG)]
Blur = Annotated[float, _opt("--blur", help="Probability of a Gaussian blur.", panel=_AUG)]
Noise = Annotated[float, _opt("--noise", help="Salt-and-pepper pixel probability.", panel=_AUG)]
# model
Model = Annotated[str, _opt("--model", "-m", help="Model name (see --list-models) or tv:NAME.", panel=_MODEL)]
BN = Annotated[Optional[bool], _opt("--bn/--no-bn", help="BatchNorm after each conv (default: the model's own).",
                                    panel=_MODEL)]
Dropout = Annotated[float, _opt("--dropout", help="Dropout probability.", panel=_MODEL)]
Bias = Annotated[bool, _opt("--bias/--no-bias", help="Bias terms in conv and dense layers.", panel=_MODEL)]
Activation = Annotated[str, _opt("--activation", help="relu, leaky_relu, prelu, gelu, silu or mish.", panel=_MODEL)]
Filters = Annotated[Optional[str], _opt("--filters", help="cnn5 filters: list (16,32,...) or equalM / doublingM / "
                                                          "halvingM.", panel=_MODEL)]
Kernels = Annotated[Optional[str], _opt("--kernels", help="cnn5 kernel sizes: list or constantK / increasing / "
                                                          "decreasing.", panel=_MODEL)]
Dense = Annotated[Optional[int], _opt("--dense", help="cnn5 dense units.", panel=_MODEL)]
ConvImpl = Annotated[str, _opt("--conv-impl", help="torch, or numba (cnntool's own Numba convolution).",
                               panel=_MODEL)]
# optimisation
Epochs = Annotated[int, _opt("--epochs", "-e", help="Epochs.", panel=_OPT)]
BatchSize = Annotated[int, _opt("--batch-size", "-b", help="Batch size.", panel=_OPT)]
Optimizer = Annotated[str, _opt("--optimizer", help="sgd, adam or adamw.", panel=_OPT)]
LR = Annotated[float, _opt("--lr", help="Peak learning rate.", panel=_OPT)]
WeightDecay = Annotated[float, _opt("--weight-decay", help="Weight decay.", panel=_OPT)]
Momentum = Annotated[float, _opt("--momentum", help="SGD momentum.", panel=_OPT)]
Scheduler = Annotated[str, _opt("--scheduler", help="none, cosine, step or onecycle.", panel=_OPT)]
WarmupEpochs = Annotated[float, _opt("--warmup-epochs", help="Linear warm-up epochs.", panel=_OPT)]
StepSize = Annotated[int, _opt("--step-size", help="step scheduler: epochs between decays (0 = epochs/3).",
                               panel=_OPT)]
Gamma = Annotated[float, _opt("--gamma", help="step scheduler: decay factor.", panel=_OPT)]
LabelSmoothing = Annotated[float, _opt("--label-smoothing", help="Label smoothing.", panel=_OPT)]
GradClip = Annotated[float, _opt("--grad-clip", help="Clip the gradient norm (0 = off).", panel=_OPT)]
Seed = Annotated[int, _opt("--seed", help="Seed of initialisation, shuffling and augmentation.", panel=_OPT)]
EvalEvery = Annotated[int, _opt("--eval-every", help="Also evaluate every N steps (0 = each epoch only).",
                                panel=_OPT)]
Monitor = Annotated[str, _opt("--monitor", help="Metric that picks best.pt: val_acc or val_loss.", panel=_OPT)]
Patience = Annotated[int, _opt("--patience", help="Early stopping after N epochs without improvement (0 = off).",
                               panel=_OPT)]
Threads = Annotated[Optional[int], _opt("--threads", help="CPU threads (default: all cores).", panel=_OPT)]
Device = Annotated[str, _opt("--device", help="auto, cpu, cuda, cuda:N.", panel=_OPT)]
Amp = Annotated[str, _opt("--amp", help="Mixed precision on GPU: none, bf16 or fp16.", panel=_OPT)]
ChannelsLast = Annotated[bool, _opt("--channels-last", help="channels_last memory format (GPU).", panel=_OPT)]
Compile = Annotated[bool, _opt("--compile", help="torch.compile the model.", panel=_OPT)]
# run
RunsRoot = Annotated[str, _opt("--runs-root", help="Folder that holds run directories.", panel=_RUN)]
Name = Annotated[Optional[str], _opt("--name", help="Run name under --runs-root (default: train, train2, ...).",
                                     panel=_RUN)]
Out = Annotated[Optional[str], _opt("--out", "-o", help="Exact run directory (must not exist or be empty).",
                                    panel=_RUN)]
Resume = Annotated[Optional[str], _opt("--resume", help="Continue the run in this directory from its last.pt.",
                                       panel=_RUN)]
# output
Json = Annotated[bool, _opt("--json", help="Print one JSON object with the results on stdout.", panel=_OUT)]
Quiet = Annotated[bool, _opt("--quiet", "-q", help="No progress or tables on stderr.", panel=_OUT)]

DEFAULTS = {**{k: getattr(D, k) for k in D.__dataclass_fields__},
            **{k: getattr(M, k) for k in M.__dataclass_fields__},
            **{k: getattr(T, k) for k in T.__dataclass_fields__}}
