"""cnntool train."""

from __future__ import annotations

from typing import Annotated, Any, Optional

from cnntool.cli import options as o
from cnntool.cli.common import given_on_command_line, print_json, stderr_console
from cnntool.config import DataConfig, ModelConfig, TrainConfig

Seeds = Annotated[Optional[str], o.typer.Option(
    "--seeds", help="Run the same options under several seeds: 0-9, 0,3,7 or 0-2,5. Runs go to "
                    "RUNS_ROOT/<name or train>-seeds/seed<N>, plus seeds.json (mean, std, min, max) and seeds.png.",
    rich_help_panel="Run", show_default=False)]
Jobs = Annotated[int, o.typer.Option("--jobs", "-j", help="With --seeds: run this many seeds at once "
                                                          "(separate processes).", rich_help_panel="Run")]
ListModels = Annotated[bool, o.typer.Option("--list-models", help="List the model names and exit.",
                                            rich_help_panel="Model")]


@o.with_options(DataConfig, ModelConfig, TrainConfig)
def train(
    options: dict[str, Any],
    runs_root: o.RunsRoot = o.RUNS_ROOT_DEFAULT, name: o.Name = None, out: o.Out = None, resume: o.Resume = None,
    seeds: Seeds = None, jobs: Jobs = 1, config: o.ConfigFile = None, list_models: ListModels = False,
    json: o.Json = False, quiet: o.Quiet = False,
) -> None:
    """Train a CNN and write a run directory (config, spec, metrics, best.pt, last.pt).

    Example: [bold]cnntool train --bn --dropout 0.5[/bold]  (digits, no download)
    """
    if list_models:
        _print_models(json)
        return
    from cnntool.cli.train_view import training_view
    from cnntool.configfile import resolve_options
    from cnntool.config import RunConfig
    from cnntool.runner import fit
    from cnntool.training.distributed import is_main_process

    with resolve_options(options, config, "train", given_on_command_line()) as merged:
        cfg = RunConfig.from_flat(merged, runs_root=runs_root, name=name, out=out, resume=resume)
    if seeds is not None:
        _train_seeds(cfg, seeds, jobs, stderr_console(), json, quiet)
        return
    main = is_main_process()  # under torchrun only rank 0 shows progress and prints JSON
    with training_view(quiet or not main) as view:
        result = fit(cfg, view)
    if json and main:
        print_json(result)


def _train_seeds(cfg, seeds: str, jobs: int, console, as_json: bool, quiet: bool) -> None:
    """--seeds: the same run under each seed, then the aggregate table (library: cnntool.experiments.seeds)."""
    from rich.table import Table

    from cnntool.cli.train_view import training_views
    from cnntool.experiments.seeds import parse_seeds, run_seeds

    seed_list = parse_seeds(seeds)

    def on_run(seed: int, result: dict) -> None:
        if not quiet and jobs > 1:
            console.print(f"seed {seed}: test acc {result['test_acc']:.4f} → {result['run_dir']}")

    if not quiet:
        console.print(f"[bold]{len(seed_list)} seeds[/bold] ({', '.join(map(str, seed_list))}), "
                      f"{jobs} at a time")
    with training_views(quiet or jobs > 1, console) as view:
        result = run_seeds(cfg, seed_list, jobs=jobs, reporter=lambda seed: view(f"seed {seed}"), on_run=on_run)
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
    tv = [n for n in list_models(include_namespaces=True) if n not in own]
    if as_json:
        print_json({"models": own, "torchvision": tv})
        return
    t = Table(title="cnntool models")
    t.add_column("name", no_wrap=True)
    t.add_column("min size", justify="right", no_wrap=True)
    t.add_column("description", overflow="fold")  # wraps onto more lines, never cut mid-sentence
    for n in own:
        info = get_model_info(n)
        t.add_row(n, str(info.min_size), info.description)
    console = stderr_console()
    console.print(t)
    console.print(f"torchvision ({len(tv)}): " + ", ".join(tv))
