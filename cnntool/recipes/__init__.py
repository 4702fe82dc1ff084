"""Recipes: each coursework experiment as one reproducible function (``cnntool recipe run NAME``).

A recipe is a function ``fn(ctx: Context) -> dict`` registered with ``@recipe("name", ...)``. It trains and
plots through the library (fit, run_seeds, run_sweep, finetune, the viz functions, the conv suite) and returns
``{"headline", "tables": [{"title", "columns", "rows"}], "plots", "runs", "notes"}``; :func:`run_recipe` adds
where and how it ran and writes ``results.md`` and ``results.json`` into the output folder.

Importing this package imports no torch: ``cnntool recipe list`` stays fast.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cnntool.errors import ConfigError


@dataclass(frozen=True)
class RecipeInfo:
    name: str
    fn: Callable[..., dict[str, Any]]
    title: str
    description: str
    quick: str  # what --quick shrinks
    online: str  # the data set the coursework used


RECIPES: dict[str, RecipeInfo] = {}
_MODULES = ("flops", "conv", "ablation", "seeds", "augment_dropout", "architectures", "progression", "finetune",
            "sweep", "resnet")


def recipe(name: str, *, title: str, quick: str, online: str = "cifar10"):
    """Register ``fn(ctx) -> result`` as a recipe; its docstring's first paragraph is the description."""
    def deco(fn):
        doc = " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())
        RECIPES[name] = RecipeInfo(name, fn, title, doc, quick, online)
        return fn
    return deco


def _load_all() -> None:
    for mod in _MODULES:
        importlib.import_module(f"cnntool.recipes.{mod}")


def list_recipes() -> list[RecipeInfo]:
    _load_all()
    order = {m.replace("_", "-"): i for i, m in enumerate(_MODULES)}
    order["cifar-progression"] = order.pop("progression")
    order["resnet18"] = order.pop("resnet")
    return sorted(RECIPES.values(), key=lambda r: order.get(r.name, 99))


def get_recipe(name: str) -> RecipeInfo:
    _load_all()
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(r.name for r in list_recipes())} "
                          f"(cnntool recipe list)")
    return RECIPES[name]


def run_recipe(name: str, data: str = "digits", quick: bool = False, out: str | Path | None = None,
               runs_root: str | Path = "runs", data_dir: str | None = None, download: bool = False,
               threads: int | None = None, reporter: Callable[[str], Any] | None = None,
               log: Callable[[str], None] | None = None, track: str | None = None,
               mlflow_uri: str | None = None) -> dict[str, Any]:
    """Run recipe ``name`` into ``out`` (default ``RUNS_ROOT/recipes/<name>``, never overwritten: ``<name>2``, ...).

    ``reporter(label)`` gives the training Reporter of each run (default: silent); ``log(text)`` receives
    progress lines; ``track`` (``--log``) names the trackers of every run. Returns the result dict (also written to ``OUT/results.json`` and ``OUT/results.md``).
    """
    from cnntool.recipes.base import Context
    from cnntool.recipes.report import write_results
    from cnntool.training.rundir import allocate_run_dir

    from cnntool.tracking import check_log

    info = get_recipe(name)
    check_log(track)
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads {threads} must be >= 1")
    existed = out is not None and Path(out).exists()
    folder = allocate_run_dir(Path(runs_root) / "recipes", name, None, out)
    ctx = Context(name=name, out=folder, data=data, data_dir=data_dir, download=download, quick=quick,
                  threads=threads, reporter=reporter, log=log or (lambda text: None), track=track,
                  mlflow_uri=mlflow_uri)
    t0 = time.perf_counter()
    try:
        result = info.fn(ctx)
    except BaseException:
        if not existed:  # a recipe that fails (offline, interrupted) leaves no half-filled folder behind
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        raise
    seconds = round(time.perf_counter() - t0, 1)
    full = {"recipe": name, "title": info.title, "description": info.description, "data": data, "quick": quick,
            "out": str(folder), "seconds": seconds, "threads": ctx.thread_count(), **result}
    full.setdefault("notes", [])
    full.setdefault("plots", [])
    full.setdefault("runs", [])
    full["results_md"] = str(folder / "results.md")
    full["results_json"] = str(folder / "results.json")
    write_results(full, folder)
    return full
