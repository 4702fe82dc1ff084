"""cnntool export: a run or checkpoint -> self-describing ONNX, checked against torch before it is kept."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnntool.cli.common import print_json, stderr_console

_OUT = "Output"


def export(
    target: Annotated[str, typer.Argument(help="Run directory (uses best.pt) or checkpoint file.",
                                          show_default=False)],
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="ONNX file to write (default: RUN/model.onnx, "
                                               "or NAME.onnx beside a checkpoint NAME.pt).")] = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset version.")] = 18,
    static_batch: Annotated[bool, typer.Option("--static-batch", help="Fix the batch axis to 1 (default: dynamic "
                                               "batch).")] = False,
    img_size: Annotated[Optional[int], typer.Option("--img-size", help="Export for another square input size "
                                                    "(models with global pooling; default: the trained size).")] = None,
    atol: Annotated[float, typer.Option("--atol", help="Largest |torch - onnxruntime| logit difference "
                                        "accepted by the parity check.")] = 1e-4,
    exporter: Annotated[str, typer.Option("--exporter", help="auto (dynamo, falling back to TorchScript), "
                                          "dynamo or torchscript.")] = "auto",
    json: Annotated[bool, typer.Option("--json", help="Print the export result (parity table included) as JSON "
                                       "on stdout.", rich_help_panel=_OUT)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No tables on stderr.", rich_help_panel=_OUT)] = False,
) -> None:
    """Export a trained model to ONNX with its spec (classes, input size, mean/std) in the file's metadata.

    torch and onnxruntime are compared on images from the run's data set and on random images
    (batch 1 and 7); the file is only written when they agree.

    Example: [bold]cnntool export runs/train -o digits.onnx[/bold]  then  [bold]cnntool predict digits.onnx img.png[/bold]
    """
    from cnntool.export.onnx_export import ParityError, export_onnx

    console = stderr_console()
    progress = None
    status = None
    if not quiet and console.is_terminal:
        status = console.status("exporting")
        status.start()
        progress = status.update
    try:
        result = export_onnx(target, out, opset=opset, static_batch=static_batch, img_size=img_size, atol=atol,
                             exporter=exporter, progress=progress)
    except ParityError as e:
        if status:
            status.stop()
        if not quiet:
            _show(console, e.result)
        if json:
            print_json(e.result.to_dict())
        raise
    finally:
        if status:
            status.stop()
    if not quiet:
        _show(console, result)
    if json:
        print_json(result.to_dict())


def _show(console, result) -> None:
    from rich.table import Table

    t = Table(title=f"parity: torch (eval) vs onnxruntime, tolerance {result.atol:g}")
    for col, just in (("inputs", "left"), ("batch", "right"), ("max |Δ logit|", "right"), ("top-1 agree", "right"),
                      ("", "left")):
        t.add_column(col, justify=just)
    for r in result.parity:
        ok = "[green]ok[/green]" if r.passed else "[bold red]FAIL[/bold red]"
        t.add_row(r.source, str(r.batch), f"{r.max_abs_diff:.2e}", f"{r.top1_agree}/{r.n}", ok)
    console.print(t)
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if result.passed:
        shape = "×".join(str(d) for d in result.input_shape)
        console.print(f"wrote [bold]{result.path}[/bold] ({result.size_bytes / 1e6:.1f} MB; {result.exporter} "
                      f"exporter, opset {result.opset}, IR {result.ir_version}; input {result.input_name} {shape}) "
                      f"in {result.seconds:.1f} s")
