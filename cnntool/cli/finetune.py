"""cnntool finetune: transfer learning from pretrained weights with a choice of strategy."""

from __future__ import annotations

from typing import Annotated, Any, Optional

from cnntool.cli import options as o
from cnntool.cli.common import given_on_command_line, print_json, stderr_console
from cnntool.config import FINETUNE_TRAIN_DEFAULTS, DataConfig, FinetuneOptions, TrainConfig

Compare = Annotated[Optional[str], o.typer.Option(
    "--compare", help="Run several strategies (all, or e.g. full,linear,bn) and print a comparison table and "
                      "curves plot.", rich_help_panel="Fine-tuning")]


@o.with_options(DataConfig, FinetuneOptions, TrainConfig, defaults=FINETUNE_TRAIN_DEFAULTS)
def finetune(
    options: dict[str, Any],
    compare: Compare = None,
    runs_root: o.RunsRoot = o.RUNS_ROOT_DEFAULT, name: o.Name = None, out: o.Out = None, resume: o.Resume = None,
    config: o.ConfigFile = None, json: o.Json = False, quiet: o.Quiet = False,
) -> None:
    """Fine-tune a pretrained network on new data; writes a run directory like train (runs/finetune, ...).

    Example: [bold]cnntool finetune --model tv:resnet18 --weights imagenet --data path/to/folder --strategy linear[/bold]
    """
    from cnntool.cli.train_view import training_view
    from cnntool.config import RunConfig
    from cnntool.configfile import resolve_options
    from cnntool.runner import finetune as run_finetune

    with resolve_options(options, config, "finetune", given_on_command_line()) as merged:
        cfg = RunConfig.from_flat(merged, runs_root=runs_root, name=name, out=out, resume=resume)
        ft = FinetuneOptions.from_flat(merged)
        ft.validate()
    if compare:
        _compare(cfg, ft, compare, json, quiet)
        return
    with training_view(quiet, title="finetune") as view:
        result = run_finetune(cfg, ft, view)
    if json:
        print_json(result)


def _compare(cfg, ft, which: str, as_json: bool, quiet: bool) -> None:
    from cnntool.cli.train_view import training_views
    from cnntool.experiments.finetune_compare import compare_strategies, parse_strategies

    strategies = parse_strategies(which)
    console = stderr_console()
    with training_views(quiet, console) as view:
        summary = compare_strategies(cfg, ft, strategies, lambda strategy: view(f"finetune --strategy {strategy}"))
    if not quiet:
        console.print(_strategies_table(summary))
        console.print(f"  curves: {summary['plot']}")
    if as_json:
        print_json({k: v if k != "strategies" else [{c: r[c] for c in r if c != "curves"} for r in v]
                    for k, v in summary.items()})


def _strategies_table(summary: dict[str, Any]):
    from rich.table import Table

    t = Table(title=f"fine-tuning strategies → {summary['out']}", title_justify="left")
    for col, just in (("strategy", "left"), ("best val acc", "right"), ("test acc", "right"),
                      ("trainable params", "right"), ("s / epoch", "right")):
        t.add_column(col, justify=just)
    best = max(r["best_val_acc"] for r in summary["strategies"])
    for r in summary["strategies"]:
        tp = f"{r['trainable_end']:,}" if r["trainable_start"] == r["trainable_end"] else \
            f"{r['trainable_start']:,} → {r['trainable_end']:,}"
        acc = f"{r['best_val_acc']:.4f}"
        t.add_row(r["strategy"], f"[bold]{acc}[/bold]" if r["best_val_acc"] == best else acc,
                  f"{r['test_acc']:.4f}", tp, f"{r['sec_per_epoch']:.2f}")
    return t
