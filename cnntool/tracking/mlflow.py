"""MLflow through MlflowClient: one run per training run in the experiment named after its group.

Store: ``--mlflow-uri`` (any tracking URI: ``sqlite:///path.db``, ``http://host:5000``, ...), else
``$MLFLOW_TRACKING_URI``, else a local sqlite file ``mlflow.db`` beside the run directory
(``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from cnntool.tracking import base

DB_FILE = "mlflow.db"
MAX_PARAM = 6000  # MLflow's limit on a parameter value
STATUS = {"finished": RunStatus.to_string(RunStatus.FINISHED), "failed": RunStatus.to_string(RunStatus.FAILED),
          "killed": RunStatus.to_string(RunStatus.KILLED)}


def default_uri(run_dir: Path) -> str:
    import os

    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(run_dir.resolve().parent / DB_FILE)}"


def artifact_root(uri: str) -> str | None:
    """Artifacts of a local sqlite store go beside its file (``mlflow-artifacts/``), not into the working
    directory (MLflow's default ``./mlruns``); a server keeps its own."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlflow-artifacts").as_uri()


def _experiment(client: MlflowClient, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root(uri))
    except Exception:  # another process (a parallel sweep trial) created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class Tracker(base.Tracker):
    name = "mlflow"

    def __init__(self, run: base.TrackedRun):
        super().__init__(run)
        for name in ("mlflow", "alembic"):  # their INFO lines (creating tables, ...) are not ours to show
            logging.getLogger(name).setLevel(logging.WARNING)
        uri = run.state.get("uri") or run.mlflow_uri or default_uri(run.run_dir)
        self.client = MlflowClient(tracking_uri=uri)
        run_id = run.state.get("run_id")
        if run_id:  # --resume: continue the same MLflow run
            self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        else:
            experiment = _experiment(self.client, run.group, uri)
            created = self.client.create_run(experiment, run_name=run.name,
                                             tags={MLFLOW_RUN_NAME: run.name, "cnntool.run_dir": str(run.run_dir)})
            run_id = created.info.run_id
            run.state.update({"run_id": run_id, "experiment_id": experiment, "uri": uri})
        self.run_id = run_id

    def log_params(self, params: dict[str, Any]) -> None:
        if self.run.state.get("params_logged"):
            return  # MLflow parameters are immutable: a resumed run keeps the ones it started with
        items = [Param(k, str(v)[:MAX_PARAM]) for k, v in base.scalar_params(params).items()]
        for i in range(0, len(items), 100):  # log_batch takes at most 100 parameters at a time
            self.client.log_batch(self.run_id, params=items[i:i + 100])
        self.run.state["params_logged"] = True

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def log_image(self, name: str, path: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path="figures")

    def log_summary(self, metrics: dict[str, float], step: int) -> None:
        self.log_metrics({f"final/{k}": v for k, v in metrics.items()}, step)

    def close(self, status: str = "finished") -> None:
        self.client.set_terminated(self.run_id, STATUS.get(status, STATUS["failed"]))
