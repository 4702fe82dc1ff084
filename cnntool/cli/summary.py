"""cnntool summary."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from cnntool.cli import options as o
from cnntool.cli.common import print_json, stderr_console
from cnntool.config import ModelConfig

# The architecture options of train apply to a model name here (cnntool summary cnn5 --filters equal64 ...).
MODEL_OPTIONS = ("bn", "dropout", "bias", "activation", "filters", "kernels", "dense")


@o.with_options(ModelConfig, only=MODEL_OPTIONS)
def summary(
    options: dict[str, Any],
    target: Annotated[str, typer.Argument(help="Model name (cnntool train --list-models) or run directory / "
                                                "checkpoint.", show_default=False)],
    img_size: Annotated[Optional[int], typer.Option("--img-size", help="Input side in pixels (default: the run's "
                                                    "input size, or the model's default).")] = None,
    in_channels: Annotated[Optional[int], typer.Option("--in-channels", help="Input channels for a model name "
                                                       "(default 3).")] = None,
    num_classes: Annotated[Optional[int], typer.Option("--num-classes", help="Classes for a model name "
                                                       "(default 10).")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the table and totals as JSON on stdout.")] = False,
) -> None:
    """Per-layer table (output shape, parameters, MACs) and totals for one image.

    Counted with torch.utils.flop_counter: MACs are multiply-accumulates of convolutions and matrix
    multiplications, FLOPs = 2 × MACs; element-wise ops (BN, activations, pooling) are not counted.

    Example: [bold]cnntool summary cnn5 --filters equal64 --kernels constant3 --dense 2048 --img-size 224[/bold]
    or [bold]cnntool summary runs/train[/bold]
    """
    from cnntool.viz.summary import summarise

    s = summarise(target, img_size, in_channels, num_classes, options)
    if json:
        print_json(s.to_dict())
        return
    from rich.table import Table

    t = Table(title=f"{s.arch}, input {'×'.join(map(str, s.input_shape))}")
    for col in ("layer", "type", "output shape", "params", "MACs"):
        t.add_column(col, justify="right" if col in ("params", "MACs") else "left")
    for r in s.layers:
        shape = "×".join(map(str, r.output_shape)) if r.output_shape else "-"
        name = r.name + (f" (×{r.calls})" if r.calls > 1 else "")
        t.add_row(name, r.type, shape, f"{r.params:,}", f"{r.macs:,}")
    t.add_section()
    t.add_row("total", "", "", f"{s.total_params:,}", f"{s.macs:,}")
    console = stderr_console()
    console.print(t)
    console.print(f"parameters: {s.total_params:,} ({s.trainable_params:,} trainable)\n"
                  f"MACs (multiply-accumulates, one image): {_human(s.macs)}\n"
                  f"FLOPs (= 2 × MACs): {_human(s.flops)}\n"
                  "[dim]counted by torch.utils.flop_counter: convolutions and matrix multiplications only[/dim]")


def _human(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g} {unit} ({n:,})"
    return f"{n:,}"
