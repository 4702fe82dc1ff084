"""cnntool viz: figures from runs, checkpoints and data sets (each command calls one cnntool.viz function)."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from cnntool.cli.common import ErrorHandlingGroup, print_json, stderr_console

app = typer.Typer(cls=ErrorHandlingGroup, help="Draw figures (PNG) from runs, checkpoints and data sets; "
                  "prints the paths of the files it writes.", no_args_is_help=True)

Run = Annotated[str, typer.Argument(help="Run directory or checkpoint file.", show_default=False)]
Data = Annotated[str, typer.Argument(help="Data set name (digits, mnist, cifar10, ...) or a class-per-folder "
                                          "directory.", show_default=False)]
Images = Annotated[Optional[List[str]], typer.Argument(help="Image files (or use --from-split).",
                                                       show_default=False)]
Out = Annotated[Optional[str], typer.Option("--out", "-o", help="Folder for the PNG files "
                                            "(default: RUN/plots, or ./plots for data sets and several runs).")]
Which = Annotated[str, typer.Option("--which", help="Checkpoint of a run directory: best or last.")]
DataOpt = Annotated[Optional[str], typer.Option("--data", help="Data set for the images (default: the run's own).")]
DataDir = Annotated[Optional[str], typer.Option("--data-dir", help="Where named data sets live.")]
Download = Annotated[bool, typer.Option("--download", help="Download a named data set if it is missing "
                                        "(needs internet).")]
ImgSize = Annotated[Optional[int], typer.Option("--img-size", help="Resize images to this side (default: native).")]
Split = Annotated[str, typer.Option("--split", help="test, val or train.")]
FromSplit = Annotated[Optional[str], typer.Option("--from-split", help="Take images from this split of the run's "
                                                  "data (test, val, train) instead of files.")]
N = Annotated[int, typer.Option("--n", help="How many images with --from-split.")]
Wrong = Annotated[Optional[bool], typer.Option("--wrong/--right", help="Only misclassified / only correctly "
                                               "classified images (default: both).", show_default=False)]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing file of the same name in the default "
                                     "folder (default: keep it and write NAME-2.png; an explicit --out "
                                     "always replaces).")]
Json = Annotated[bool, typer.Option("--json", help="Print {\"files\": [...]} on stdout instead of one path a line.")]


def _done(paths, as_json: bool) -> None:
    paths = [str(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    if as_json:
        print_json({"files": paths})
    else:
        for p in paths:
            typer.echo(p)
    stderr_console().print(f"wrote {len(paths)} file{'s' if len(paths) != 1 else ''}")


@app.command("curves")
def curves(
    runs: Annotated[List[str], typer.Argument(help="Run directories, globs, or folders of runs (seeds, recipe, "
                                                   "sweep).", show_default=False)],
    x: Annotated[str, typer.Option("--x", help="Horizontal axis: epoch or step.")] = "epoch",
    title: Annotated[Optional[str], typer.Option("--title", help="Figure title.")] = None,
    out: Out = None, force: Force = False, json: Json = False,
) -> None:
    """Train/val loss and accuracy per epoch; several runs overlaid, labelled by the options that differ;
    runs that differ only in --seed drawn as mean ± std.

    Example: [bold]cnntool viz curves runs/base runs/bn runs/dropout --out plots[/bold]
    """
    from cnntool.viz.curves import plot_run_curves

    path, skipped = plot_run_curves(runs, out, x=x, title=title, force=force)
    if skipped:
        stderr_console().print(f"skipped {len(skipped)} path(s) that are not runs: {', '.join(skipped)}")
    _done(path, json)


@app.command("confusion")
def confusion(run: Run, split: Split = "test", data: DataOpt = None, which: Which = "best", out: Out = None,
              json: Json = False) -> None:
    """Confusion matrix of a split, counts and row-normalised.

    Example: [bold]cnntool viz confusion runs/train[/bold]
    """
    from cnntool.viz.confusion import plot_run_confusion

    _done(plot_run_confusion(run, split, data, out, which), json)


@app.command("predictions")
def predictions(
    run: Run,
    rows: Annotated[int, typer.Option("--rows", help="Grid rows.")] = 10,
    cols: Annotated[int, typer.Option("--cols", help="Grid columns.")] = 3,
    split: Split = "test", wrong: Wrong = None, data: DataOpt = None, which: Which = "best", out: Out = None,
    force: Force = False, json: Json = False,
) -> None:
    """A grid of images with true and predicted class; wrong ones in red with a red frame.

    Example: [bold]cnntool viz predictions runs/train --rows 10 --cols 3[/bold]
    """
    from cnntool.viz.predictions import plot_predictions

    _done(plot_predictions(run, rows, cols, split, wrong, data, out, which, force=force), json)


@app.command("dataset")
def dataset(data: Data, data_dir: DataDir = None, download: Download = False, img_size: ImgSize = None,
            out: Out = None, json: Json = False) -> None:
    """One sample image per class, and the images per class in train, val and test.

    Example: [bold]cnntool viz dataset digits[/bold]
    """
    from cnntool.viz.dataset import plot_dataset

    _done(plot_dataset(data, out, data_dir, img_size, download=download), json)


@app.command("augment")
def augment(
    data: Data,
    ops: Annotated[Optional[str], typer.Option("--ops", help="Comma list such as 'crop_pad=2,hflip,rotate=15,"
                                               "cutout=3', a preset (light, standard, strong, digits), or 'all'.")
                   ] = None,
    rows: Annotated[int, typer.Option("--rows", help="How many images (of different classes).")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random augmentations.")] = 0,
    data_dir: DataDir = None, download: Download = False, img_size: ImgSize = None, out: Out = None,
    json: Json = False,
) -> None:
    """One image under each augmentation alone, side by side with the original.

    Example: [bold]cnntool viz augment digits --ops crop_pad=2,rotate=15,noise=0.05 --rows 3[/bold]
    """
    from cnntool.viz.dataset import plot_augmentations

    _done(plot_augmentations(data, ops, out, rows, seed, data_dir, img_size, download), json)


@app.command("filters")
def filters(
    run: Run,
    layer: Annotated[Optional[str], typer.Option("--layer", help="Conv layer: dotted module name, else index "
                                                 "among the conv layers (default: the first).")] = None,
    max_filters: Annotated[Optional[int], typer.Option("--max-filters", help="Show at most this many filters "
                                                       "(default: 64 tiles, 16 rows for deeper layers).")] = None,
    which: Which = "best", out: Out = None, json: Json = False,
) -> None:
    """The learned kernels of a conv layer as an image grid (first layer in colour for RGB input).

    Example: [bold]cnntool viz filters runs/train --layer 2[/bold]
    """
    from cnntool.viz.filters import plot_filters

    _done(plot_filters(run, layer, out, max_filters=max_filters, which=which), json)


@app.command("features")
def features(
    run: Run, images: Images = None,
    layers: Annotated[int, typer.Option("--layers", help="Feature maps of the first N conv layers.")] = 3,
    max_channels: Annotated[int, typer.Option("--max-channels", help="Show at most this many channels per "
                                              "layer.")] = 64,
    from_split: FromSplit = None, n: N = 1, wrong: Wrong = None, data: DataOpt = None, which: Which = "best",
    out: Out = None, json: Json = False,
) -> None:
    """Feature maps of the first N conv layers for an image, one subplot per channel (one PNG per layer).

    Example: [bold]cnntool viz features runs/train --from-split test --layers 2[/bold]
    """
    from cnntool.viz.features import plot_feature_maps

    _done(plot_feature_maps(run, images, layers, from_split, n, wrong, out, max_channels, which, data),
          json)


@app.command("cam")
def cam(
    run: Run, images: Images = None,
    method: Annotated[str, typer.Option("--method", help="auto (CAM where the model ends in global average "
                                        "pooling + one linear layer, and Grad-CAM), cam, gradcam, gradcampp "
                                        "(Grad-CAM++), scorecam (Score-CAM) or both (cam and gradcam).")
                      ] = "auto",
    layer: Annotated[Optional[str], typer.Option("--layer", help="Grad-CAM target module (dotted name; default: "
                                                 "the last feature map larger than 1×1).")] = None,
    from_split: FromSplit = None, n: N = 8, wrong: Wrong = None, data: DataOpt = None, which: Which = "best",
    out: Out = None, json: Json = False,
) -> None:
    """Class Activation Map, Grad-CAM, Grad-CAM++ and Score-CAM heat maps over images, with true and predicted
    class.

    Example: [bold]cnntool viz cam runs/train --from-split test --n 6 --wrong[/bold]
    """
    from cnntool.viz.cam import plot_cam

    _done(plot_cam(run, images, method, layer, from_split, n, wrong, out, which, data), json)


@app.command("saliency")
def saliency(
    run: Run, images: Images = None,
    method: Annotated[str, typer.Option("--method", help="guided (guided backpropagation), gradient (vanilla "
                                        "gradient), smoothgrad or integrated (integrated gradients; both "
                                        "by Captum: pip install 'cnntool[explain]').")] = "guided",
    from_split: FromSplit = None, n: N = 8, wrong: Wrong = None, data: DataOpt = None, which: Which = "best",
    out: Out = None, json: Json = False,
) -> None:
    """Guided-backpropagation, vanilla-gradient, SmoothGrad or integrated-gradients saliency of the predicted
    class.

    Example: [bold]cnntool viz saliency runs/train cat.png dog.png --method guided[/bold]
    """
    from cnntool.viz.saliency import plot_saliency

    _done(plot_saliency(run, images, method, from_split, n, wrong, out, which, data), json)

