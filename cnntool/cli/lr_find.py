"""cnntool lr-find: the learning-rate finder on the same options as train."""

from __future__ import annotations

from typing import Annotated, Any, Optional

from cnntool.cli import options as o
from cnntool.cli.common import given_on_command_line, print_json, stderr_console
from cnntool.config import DataConfig, ModelConfig, TrainConfig
from cnntool.lrfind import END_LR, START_LR, STEPS

_LR = "lr-find"


@o.with_options(DataConfig, ModelConfig, TrainConfig)
def lr_find(
    options: dict[str, Any],
    start_lr: Annotated[float, o.typer.Option("--start-lr", help="First learning rate of the sweep.",
                                              rich_help_panel=_LR)] = START_LR,
    end_lr: Annotated[float, o.typer.Option("--end-lr", help="Last learning rate of the sweep.",
                                            rich_help_panel=_LR)] = END_LR,
    steps: Annotated[int, o.typer.Option("--steps", help="Optimizer steps of the sweep (geometric lr).",
                                         rich_help_panel=_LR)] = STEPS,
    plot: Annotated[Optional[str], o.typer.Option("--plot", help="PNG of loss vs lr with the suggestion "
                                                  "marked (default: lr_find.png; 'none' for no file).",
                                                  rich_help_panel=_LR)] = "lr_find.png",
    config: o.ConfigFile = None, json: o.Json = False, quiet: o.Quiet = False,
) -> None:
    """Find a learning rate: an exponential sweep (fastai/Lightning), loss vs lr, the steepest descent suggested.

    Takes every train option (model, data, augmentation, optimizer); writes no run directory. The suggestion is
    printed on stdout (with --json: the whole curve).

    Example: [bold]cnntool lr-find --model simplecnn --steps 60 --plot lr.png[/bold]
    """
    from cnntool.config import RunConfig
    from cnntool.configfile import resolve_options
    from cnntool.lrfind import lr_find as find, plot_lr_find

    with resolve_options(options, config, "train", given_on_command_line()) as merged:
        cfg = RunConfig.from_flat(merged)
    console = stderr_console()
    if not quiet:
        console.print(f"lr-find: {steps} steps from {start_lr:g} to {end_lr:g}")
    result = find(cfg, start_lr=start_lr, end_lr=end_lr, steps=steps)
    if plot and plot.lower() != "none":
        result["plot"] = str(plot_lr_find(result, plot))
    if json:
        print_json(result)
        return
    s = result["suggestion"]
    if not quiet:
        console.print(f"{result['steps_run']} steps" + (" (stopped: the loss diverged)" if result["stopped_early"]
                                                        else "") + (f" · plot → {result['plot']}"
                                                                    if "plot" in result else ""))
    o.typer.echo("no suggestion (the sweep stopped too early)" if s is None else f"{s:.3g}")
