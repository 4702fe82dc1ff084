"""cnntool export: a run or checkpoint -> self-describing ONNX, checked against torch before it is kept."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cnntool.cli.common import print_json, stderr_console
from cnntool.export.choices import CALIB_METHODS, DEFAULT_CALIB, DEFAULT_CALIB_METHOD, DEFAULT_MAX_DROP

_OUT = "Output"
_QUANT = "INT8 / FP16"


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
    int8: Annotated[bool, typer.Option("--int8", help="Also write NAME-int8.onnx: static INT8 (QDQ, per-channel "
                                       "weights), kept only if it passes the accuracy gate.",
                                       rich_help_panel=_QUANT)] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="Also write NAME-fp16.onnx (float16 weights and "
                                       "activations), same accuracy gate.", rich_help_panel=_QUANT)] = False,
    calib: Annotated[int, typer.Option("--calib", help="INT8: calibration images drawn from the run's "
                                       "training split.", rich_help_panel=_QUANT)] = DEFAULT_CALIB,
    calib_method: Annotated[str, typer.Option("--calib-method", help="INT8 activation ranges: "
                                              f"{', '.join(CALIB_METHODS)}.",
                                              rich_help_panel=_QUANT)] = DEFAULT_CALIB_METHOD,
    calib_data: Annotated[Optional[str], typer.Option("--calib-data", help="INT8: calibrate on this .npy file "
                                                      "instead (uint8 N×C×H×W at the model's input size).",
                                                      rich_help_panel=_QUANT)] = None,
    max_drop: Annotated[float, typer.Option("--max-drop", help="Largest test-accuracy drop (percentage points) "
                                            "vs the FP32 file; beyond it the INT8/FP16 file is not written.",
                                            rich_help_panel=_QUANT)] = DEFAULT_MAX_DROP,
    json: Annotated[bool, typer.Option("--json", help="Print the export result (parity table included) as JSON "
                                       "on stdout.", rich_help_panel=_OUT)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No tables on stderr.", rich_help_panel=_OUT)] = False,
) -> None:
    """Export a trained model to ONNX with its spec (classes, input size, mean/std) in the file's metadata.

    torch and onnxruntime are compared on images from the run's data set and on random images
    (batch 1 and 7); the file is only written when they agree.

    With --int8 / --fp16 the smaller file is written beside the FP32 one only when its accuracy on the run's
    test split is within --max-drop points of the FP32 file's; its top-1 agreement with FP32 is printed.

    Example: [bold]cnntool export runs/train -o digits.onnx[/bold]  then  [bold]cnntool predict digits.onnx img.png[/bold]
    Example: [bold]cnntool export runs/train --int8 --calib 256 --max-drop 1[/bold]
    """
    from cnntool.export.onnx_export import ParityError, export_onnx
    from cnntool.export.quantize import AccuracyGateError

    console = stderr_console()
    progress = None
    status = None
    if not quiet and console.is_terminal:
        status = console.status("exporting")
        status.start()
        progress = status.update
    try:
        precisions = tuple(p for p, on in (("int8", int8), ("fp16", fp16)) if on)
        result = export_onnx(target, out, opset=opset, static_batch=static_batch, img_size=img_size, atol=atol,
                             exporter=exporter, precisions=precisions, calib=calib, calib_method=calib_method,
                             calib_data=calib_data, max_drop=max_drop, progress=progress)
    except AccuracyGateError as e:
        if status:
            status.stop()
        if not quiet:
            _show(console, e.export)
        if json:
            print_json(e.export.to_dict())
        raise
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
    if result.variants:
        _show_variants(console, result.variants)


def _show_variants(console, variants) -> None:
    from pathlib import Path

    from rich.table import Table

    t = Table(title="accuracy gate: each file vs FP32 on the run's test split")
    for col in ("file", "MB", "test acc", "FP32 acc", "drop (pts)", "top-1 agree", "gate"):
        t.add_column(col, justify="left" if col in ("file", "gate") else "right")
    for v in variants:
        ok = "[green]ok[/green]" if v.passed else "[bold red]REFUSED[/bold red]"
        t.add_row(Path(v.path).name, f"{v.size_bytes / 1e6:.2f}", f"{v.acc:.2%}", f"{v.fp32_acc:.2%}",
                  f"{v.drop:+.2f} (max {v.max_drop:g})", f"{v.agreement:.2%}", ok)
    console.print(t)
    for v in variants:
        if v.calib_n:
            console.print(f"{v.precision}: {v.calib_method} calibration on {v.calib_n} images")
        if v.passed:
            console.print(f"wrote [bold]{v.path}[/bold] ({v.precision})")
