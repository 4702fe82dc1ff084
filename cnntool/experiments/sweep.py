"""Hyper-parameter sweeps on Optuna: each trial is an ordinary run directory.

- Storage: a journal file by default (``RUNS_ROOT/sweep-<study>/optuna.journal``; safe for several
  processes on one machine), another journal file path, or any RDB URL (``postgresql://...``,
  ``mysql://...``; several machines). The same command started again — here or elsewhere — joins the
  study (``load_if_exists``).
- ``trials`` is the total for the study, shared by every process that joins it: a process stops when the
  study holds that many trials. With a journal file the check-and-create is done under a file lock,
  so several local processes never overshoot; with an RDB URL, processes on several machines may
  overshoot by at most one trial per extra process.
- Trial ``N`` trains into ``RUNS_ROOT/sweep-<study>/trialN``; its options are the space's ``base``, the
  sampled values and ``monitor``; the objective is the best value of the monitored metric.
- Median pruning: at the end of every epoch the monitored validation metric is reported; a trial
  worse than the median of earlier trials at that epoch stops (its run directory keeps what it wrote).
- A trial that fails with a cnntool error (a bad combination of options, a diverging loss) is recorded
  as FAIL and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
from pathlib import Path
from typing import Any

from cnntool.config import OPTION_GROUPS
from cnntool.errors import CnnToolError, ConfigError, first_line
from cnntool.experiments.space import SweepSpace
from cnntool.tracking import check_log
from cnntool.training.events import Reporter

SAMPLERS = ("tpe", "random", "grid")


class SweepReporter:
    """Do-nothing base for sweep progress; the CLI renders it with rich."""

    def on_start(self, info: dict[str, Any]) -> None: ...

    def on_trial_start(self, number: int, params: dict[str, Any]) -> None: ...

    def on_trial_epoch(self, number: int, row: dict[str, Any]) -> None: ...

    def on_trial_end(self, trial: dict[str, Any], best: dict[str, Any] | None) -> None: ...


class _PruningReporter(Reporter):
    """Reports the monitored metric to Optuna at each epoch end and stops a trial the pruner rejects."""

    def __init__(self, trial, monitor: str, pruning: bool, sweep: SweepReporter):
        self.trial, self.monitor, self.pruning, self.sweep = trial, monitor, pruning, sweep
        self.last_value: float | None = None

    def on_eval(self, row: dict[str, Any], is_best: bool) -> None:
        epoch = float(row["epoch"])
        if not epoch.is_integer():
            return  # --eval-every points inside an epoch are not pruning steps
        import optuna

        value = float(row[self.monitor])
        self.last_value = value
        self.sweep.on_trial_epoch(self.trial.number, row)
        self.trial.report(value, int(epoch))
        if self.pruning and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {int(epoch)} ({self.monitor} {value:.4f})")


def command_line(command: str, options: dict[str, Any]) -> str:
    """A ready-to-run ``cnntool COMMAND ...`` line for a flat option mapping (every option spelled out)."""
    defaults = {f.name: f.default for cls in OPTION_GROUPS.values() for f in dataclasses.fields(cls)}
    words = ["cnntool", command]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                words.append(flag)
            elif defaults.get(key, True) is not False:  # --bn/--no-bn, --bias/--no-bias, unknown flags
                words.append("--no-" + key.replace("_", "-"))
            continue
        words += [flag, shlex.quote(repr(value) if isinstance(value, float) else str(value))]
    return " ".join(words)


def default_study_name(space_path: str | Path) -> str:
    return Path(space_path).stem


HEARTBEAT_SECONDS = 30  # a running trial says it is alive this often
STALE_SECONDS = 300  # a RUNNING trial silent for this long (or whose process on this host is gone) is dead


def _storage(url: str | None, sweep_dir: Path):
    """(storage for optuna, printable url, lock path or None).

    RDB URLs use Optuna's own heartbeat: a trial whose process died is marked FAIL after the grace period and
    retried once (``RetryFailedTrialCallback``). The journal file has no heartbeat in Optuna, so cnntool keeps
    one (``_Liveness``)."""
    if url and "://" in url:
        import optuna

        try:
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=STALE_SECONDS,
                failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1))
        except ImportError as e:
            driver = {"postgresql": "psycopg2-binary", "mysql": "pymysql"}.get(url.split(":")[0].split("+")[0])
            hint = f"pip install {driver}" if driver else "install the database driver"
            raise ConfigError(f"--storage {url.split('://')[0]}://…: the database driver is missing "
                              f"({first_line(e)}); {hint}") from None
        return storage, url, None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(url) if url else sweep_dir / "optuna.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path))), str(path), path.with_name(path.name + ".trials-lock")  # not ".lock": optuna's own journal lock


@contextlib.contextmanager
def _file_lock(path: Path | None):
    if path is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no lock, the count is best effort
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sampler(name: str, space: SweepSpace, seed: int | None):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        class _Grid(optuna.samplers.GridSampler):
            def after_trial(self, study, trial, state, values):  # we stop on the grid size ourselves
                return None

        return _Grid({d.name: d.grid_values() for d in space.params}, seed=seed)
    raise ConfigError(f"--sampler {name!r} must be one of {', '.join(SAMPLERS)}")


def run_trial(space: SweepSpace, options: dict[str, Any], runs_root: Path, name: str,
              reporter: Reporter | None = None, tracking: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one trial exactly as ``cnntool <command>`` with these options would, into runs_root/name;
    ``tracking`` ({"log", "mlflow_uri", "log_group"}) makes it one tracked run in the study's group."""
    from cnntool.runner import preparer as preparer_for
    from cnntool.runner import run_setup
    from cnntool.training.engine import set_threads

    preparer = preparer_for(space.command)
    reporter = reporter or Reporter()
    set_threads(options.get("threads"))
    setup = preparer(options, reporter)
    setup.cfg = dataclasses.replace(setup.cfg, runs_root=str(runs_root), name=name, out=None, resume=None)
    if tracking and (tracking.get("log") or setup.cfg.train.log):
        given = {k: v for k, v in tracking.items() if v is not None}
        setup.cfg = dataclasses.replace(setup.cfg, train=dataclasses.replace(setup.cfg.train, **given))
    return run_setup(setup, reporter)


def _trial_info(t) -> dict[str, Any]:
    attrs = t.user_attrs
    seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
        if t.datetime_complete and t.datetime_start else None
    last = max(t.intermediate_values) if t.intermediate_values else None
    return {"number": t.number, "state": t.state.name, "value": t.value if t.values else None,
            "params": dict(t.params), "run_dir": attrs.get("run_dir"), "test_acc": attrs.get("test_acc"),
            "last_value": t.intermediate_values[last] if last is not None else None,
            "epochs": last, "seconds": seconds, "error": attrs.get("error")}


def _best(study, space: SweepSpace) -> dict[str, Any] | None:
    import optuna

    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not done:
        return None
    b = max(done, key=lambda t: t.value) if space.maximize else min(done, key=lambda t: t.value)
    options = dict(b.user_attrs.get("options") or space.trial_options(b.params))
    options.setdefault("seed", OPTION_GROUPS["train"].seed)
    return {**_trial_info(b), "options": options, "command": command_line(space.command, options)}


def run_sweep(space: SweepSpace, trials: int, storage: str | None = None, study: str | None = None,
              sampler: str = "tpe", runs_root: str | Path = "runs", sampler_seed: int | None = None,
              reporter: SweepReporter | None = None, plots: bool = True, log: str | None = None,
              mlflow_uri: str | None = None) -> dict[str, Any]:
    """Run (or join) a study until it holds ``trials`` trials; return the study's summary.

    Returns ``{"study", "storage", "sweep_dir", "monitor", "direction", "trials": [...], "best": {...,
    "command": "cnntool train ..."}, "importances": {...}, "plots": {...}, "ran_here": N}``.
    ``log`` (``--log``) tracks every trial as one run, grouped by the study's name.
    """
    import optuna

    from cnntool.training.distributed import env_world_size
    from cnntool.training.rundir import write_json

    if trials < 1:
        raise ConfigError(f"--trials {trials} must be >= 1")
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {sampler!r} must be one of {', '.join(SAMPLERS)}")
    if env_world_size() > 1:
        raise ConfigError("cnntool sweep runs trials one process each; start it several times instead of torchrun")
    from cnntool.runner import preparer

    preparer(space.command)  # fails now, not after the study is created
    check_log(log)
    reporter = reporter or SweepReporter()
    study_name = study or (Path(space.source).stem if space.source else "sweep")
    if "/" in study_name or study_name in ("", ".", ".."):
        raise ConfigError(f"--study {study_name!r} must be a plain name")
    sweep_dir = Path(runs_root) / f"sweep-{study_name}"
    sweep_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store, store_url, lock = _storage(storage, sweep_dir)
    the_sampler = _sampler(sampler, space, sampler_seed)
    if sampler == "grid":
        size = 1
        for d in space.params:
            size *= len(d.grid_values())
        trials = min(trials, size)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=space.pruner["startup_trials"],
                                         n_warmup_steps=space.pruner["warmup_epochs"]) \
        if space.pruner else optuna.pruners.NopPruner()
    try:
        with _file_lock(lock):
            st = optuna.create_study(storage=store, study_name=study_name, sampler=the_sampler, pruner=pruner,
                                     direction="maximize" if space.maximize else "minimize", load_if_exists=True)
    except ValueError as e:  # e.g. the study exists with the other direction
        raise ConfigError(f"study {study_name!r} in {store_url}: {e}") from None
    reporter.on_start({"study": study_name, "storage": store_url, "sweep_dir": str(sweep_dir), "trials": trials,
                       "sampler": sampler, "monitor": space.monitor, "command": space.command,
                       "params": {d.name: d.describe() for d in space.params},
                       "existing": len(st.get_trials(deepcopy=False))})
    ran = 0
    live = _Liveness(st) if lock is not None else None
    while True:
        with _file_lock(lock):
            if live is not None:
                live.fail_dead_trials()
            if _counted(st) >= trials:
                break
            trial = st.ask()
            if live is not None:
                live.claim(trial)
        sampled = {d.name: d.suggest(trial) for d in space.params}
        options = space.trial_options(sampled)
        trial.set_user_attr("options", options)
        trial.set_user_attr("run_dir", str(sweep_dir / f"trial{trial.number}"))
        reporter.on_trial_start(trial.number, sampled)
        hook = _PruningReporter(trial, space.monitor, space.pruner is not None, reporter)
        try:
            with live.beating(trial) if live is not None else contextlib.nullcontext():
                result = run_trial(space, options, sweep_dir, f"trial{trial.number}", hook,
                                   {"log": log, "mlflow_uri": mlflow_uri, "log_group": study_name})
        except optuna.TrialPruned:
            st.tell(trial, state=optuna.trial.TrialState.PRUNED)
        except CnnToolError as e:
            trial.set_user_attr("error", str(e))
            st.tell(trial, state=optuna.trial.TrialState.FAIL)
        except BaseException:
            st.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        else:
            trial.set_user_attr("test_acc", result.get("test_acc"))
            st.tell(trial, float(result[space.monitor]))
        ran += 1
        done = next(t for t in st.get_trials(deepcopy=False) if t.number == trial.number)
        reporter.on_trial_end(_trial_info(done), _best(st, space))
    return summarize(st, space, store_url, sweep_dir, ran=ran, plots=plots, write=write_json)


def _counted(st) -> int:
    """Trials toward --trials: complete, pruned, running, and failed by their options (an invalid value fails
    the same way every time); a trial whose process was killed does not count (it is run again)."""
    import optuna

    return sum(1 for t in st.get_trials(deepcopy=False)
               if t.state != optuna.trial.TrialState.FAIL or not t.user_attrs.get("killed"))


class _Liveness:
    """Heartbeats for the journal storage: each running trial records its host, pid and a timestamp refreshed
    every HEARTBEAT_SECONDS; a RUNNING trial whose process is gone (same host) or whose heartbeat is older than
    STALE_SECONDS is marked FAIL, so a killed process never leaves a trial RUNNING forever."""

    def __init__(self, study):
        import os
        import socket

        self.study = study
        self.me = f"{socket.gethostname()}:{os.getpid()}"

    def claim(self, trial) -> None:
        import time

        trial.set_user_attr("worker", self.me)
        trial.set_user_attr("heartbeat", time.time())

    @contextlib.contextmanager
    def beating(self, trial):
        import threading
        import time

        stop = threading.Event()

        def beat():
            while not stop.wait(HEARTBEAT_SECONDS):
                with contextlib.suppress(Exception):  # a missed beat is not worth failing the trial
                    self.study._storage.set_trial_user_attr(trial._trial_id, "heartbeat", time.time())

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def fail_dead_trials(self) -> list[int]:
        import socket
        import time

        import optuna

        host = socket.gethostname()
        failed = []
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            worker = str(t.user_attrs.get("worker", ""))
            w_host, _, w_pid = worker.rpartition(":")
            beat = t.user_attrs.get("heartbeat")
            dead = w_host == host and w_pid.isdigit() and not _alive(int(w_pid))
            stale = isinstance(beat, (int, float)) and time.time() - beat > STALE_SECONDS
            if worker != self.me and (dead or stale or not worker):
                self.study._storage.set_trial_user_attr(t._trial_id, "error", "its process stopped (killed?)")
                self.study._storage.set_trial_user_attr(t._trial_id, "killed", True)
                self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
                if "retry_of" not in t.user_attrs and t.params:  # a killed trial is run once more, same values
                    self.study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
                failed.append(t.number)
        return failed


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def summarize(st, space: SweepSpace, store_url: str, sweep_dir: Path, ran: int = 0, plots: bool = True,
              write=None) -> dict[str, Any]:
    all_trials = [_trial_info(t) for t in st.get_trials(deepcopy=False)]
    best = _best(st, space)
    result: dict[str, Any] = {
        "study": st.study_name, "storage": store_url, "sweep_dir": str(sweep_dir), "command": space.command,
        "monitor": space.monitor, "direction": "maximize" if space.maximize else "minimize",
        "params": [d.name for d in space.params], "axes": {d.name: d.axis() for d in space.params},
        "ran_here": ran,
        "states": {s: sum(t["state"] == s for t in all_trials) for s in sorted({t["state"] for t in all_trials})},
        "trials": all_trials, "best": best, "importances": importances(st), "plots": {},
    }
    if plots and best is not None:
        from cnntool.experiments.plots import history_figure, parallel_figure

        result["plots"] = {
            "history": history_figure(all_trials, space.monitor, space.maximize, sweep_dir / "history.png"),
            "parallel": parallel_figure(all_trials, [d.name for d in space.params], space.monitor, space.maximize,
                                        sweep_dir / "parallel.png", result["axes"]),
        }
    if write is not None:
        write(sweep_dir / "sweep.json", result)
    return result


def importances(st) -> dict[str, float]:
    """Optuna's hyper-parameter importances (empty when too few complete trials differ)."""
    import warnings

    import optuna

    done = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 2:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {k: float(v) for k, v in optuna.importance.get_param_importances(st).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}
