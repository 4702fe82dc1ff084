"""cnntool sweep: Optuna hyper-parameter search where every trial is a run directory."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from cnntool.cli import options as o
from cnntool.cli.common import print_json, stderr_console


def sweep(
    space: Annotated[str, typer.Argument(help="Sweep space YAML (command, monitor, base options, params), or "
                                              "the name of a shipped example space: small, grid, cnn5.",
                                         show_default=False)],
    trials: Annotated[int, typer.Option("--trials", "-n", help="Total trials in the study (shared by every "
                                                               "process that joins it).")] = 20,
    storage: Annotated[Optional[str], typer.Option(
        "--storage", help="Journal file path (default RUNS_ROOT/sweep-STUDY/optuna.journal; several processes "
                          "on one machine) or an RDB URL such as postgresql://... (several machines).")] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="Study name (default: the space file's "
                                                                 "name). The same name joins the same study.")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="tpe, random or grid.")] = "tpe",
    sampler_seed: Annotated[Optional[int], typer.Option(
        "--sampler-seed", help="Seed of the sampler (leave unset when several processes share a study).")] = None,
    runs_root: Annotated[str, typer.Option("--runs-root", help="Folder that holds run directories.")] = "runs",
    log: o.Log = None, mlflow_uri: o.MlflowUri = None,  # every run tracked, grouped by the study
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Skip the PNG plots.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the study summary as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or tables on stderr.")] = False,
) -> None:
    """Search hyper-parameters with Optuna (TPE, median pruning per epoch); every trial is a run directory.

    Example: [bold]cnntool sweep small --trials 6[/bold]
    (start the same command in a second terminal to run two trials at a time)
    """
    from cnntool.experiments.space import load_space
    from cnntool.experiments.sweep import run_sweep

    console = stderr_console()
    view = _SweepView(console) if not quiet else None
    result = run_sweep(load_space(space), trials, storage=storage, study=study, sampler=sampler,
                       runs_root=runs_root, sampler_seed=sampler_seed, reporter=view, plots=not no_plots,
                       log=log, mlflow_uri=mlflow_uri)
    if not quiet:
        _render_summary(console, result)
    if json:
        print_json(result)


def _fmt(v: Any) -> str:
    from cnntool.numfmt import fmt_num

    return fmt_num(v)


class _SweepView:
    """One line per trial as it finishes (a live table that also reads well in a log)."""

    def __init__(self, console):  # duck-types cnntool.experiments.sweep.SweepReporter (keeps --help torch-free)
        self.console = console

    def on_start(self, info: dict[str, Any]) -> None:
        c = self.console
        c.print(f"[bold]sweep[/bold] {info['study']} ({info['command']}, {info['sampler']}, "
                f"{info['monitor']}) → [cyan]{info['sweep_dir']}[/cyan]")
        c.print(f"  storage {info['storage']} · {info['trials']} trials in all · {info['existing']} already there")
        for name, desc in info["params"].items():
            c.print(f"  {name}: {desc}")
        c.print(f"{'trial':>6} {'state':>9} {'value':>8} {'best':>8} {'epochs':>6} {'sec':>6}  params",
                style="bold")

    def on_trial_start(self, number: int, params: dict[str, Any]) -> None: ...

    def on_trial_epoch(self, number: int, row: dict[str, Any]) -> None: ...

    def on_trial_end(self, trial: dict[str, Any], best: dict[str, Any] | None) -> None:
        params = " ".join(f"{k}={_fmt(v)}" for k, v in trial["params"].items())
        is_best = best is not None and best["number"] == trial["number"]
        value = trial["value"] if trial["value"] is not None else trial["last_value"]
        line = (f"{trial['number']:>6} {trial['state'].lower():>9} {_fmt(value):>8} "
                f"{_fmt(best['value'] if best else None):>8} {_fmt(trial['epochs']):>6} "
                f"{_fmt(trial['seconds']):>6}  {params}")
        if trial.get("error"):
            line += f"  ({trial['error']})"
        self.console.print(f"[green]{line}[/green]" if is_best else line, markup=True, highlight=False)


def _render_summary(console, result: dict[str, Any]) -> None:
    from cnntool.cli.tables import build_table
    from cnntool.numfmt import fmt_option

    states = ", ".join(f"{n} {s.lower()}" for s, n in result["states"].items())
    best = result["best"]
    rows = []
    for tr in result["trials"]:
        value = tr["value"] if tr["value"] is not None else tr["last_value"]
        mark = "*" if best and tr["number"] == best["number"] else ""
        rows.append([f"{tr['number']}{mark}", tr["state"].lower(), value, tr["test_acc"], tr["epochs"],
                     " ".join(fmt_option(k, v, sig=3) for k, v in tr["params"].items())])
    console.print(build_table(f"study {result['study']}: {len(result['trials'])} trials ({states}), * = best",
                              [("trial", "key"), ("state", "key"), (result["monitor"], "num"), ("test acc", "num"),
                               ("epochs", "num"), ("params", "text")], rows))
    if best is None:
        console.print("[yellow]no trial completed yet[/yellow]")
        return
    console.print(f"[bold]best[/bold] trial {best['number']}: {result['monitor']} {best['value']:.4f}, "
                  f"test acc {_fmt(best['test_acc'])} → {best['run_dir']}")
    console.print("  reproduce with:")
    console.print(f"  {best['command']}", markup=False, highlight=False, soft_wrap=True)
    if result["importances"]:
        console.print("  importances: " + ", ".join(f"{k} {v:.2f}" for k, v in result["importances"].items()))
    for name, path in result["plots"].items():
        console.print(f"  {name} plot → {path}")
