"""MLflow: one experiment per study, one run per trial, in a SQLite store under the study folder.

MLflow 3 refuses its old ``./mlruns`` file store by default; the default here is
``sqlite:///<output_dir>/<study>/mlflow.db`` with artifacts in ``<output_dir>/<study>/mlflow-artifacts``,
so compute nodes need no server (``mlflow ui --backend-store-uri sqlite:///…/mlflow.db`` reads it).
Many workers share the store: its tables and the experiment are created under a file lock, the
file is switched to WAL, and writes that meet a locked database are retried.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
import typing as tp
from pathlib import Path

from hpo.tracking._base import Tracker, TrialRun
from runtools import schema

__all__ = ["MLflowTracker"]

_LOG = logging.getLogger(__name__)

#: MLflow run status of each Optuna state (the state itself is also the tag ``optuna.state``).
_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
_ATTEMPTS = 10


def _retry(fn: tp.Callable[..., tp.Any], *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
    """``fn(*args, **kwargs)``, retried with a jittered back-off while SQLite says it is locked."""
    delay = 0.05
    for attempt in range(_ATTEMPTS):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if "locked" not in str(e) or attempt == _ATTEMPTS - 1:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(2 * delay, 2.0)
    raise AssertionError("unreachable")


@dataclasses.dataclass
class _Options:
    tracking_uri: str | None = schema.field(None, None, "MLflow tracking URI (default sqlite:///<study_dir>/mlflow.db)")
    experiment: str | None = schema.field(None, None, "experiment name (default: the study name)")
    artifact_location: str | None = schema.field(
        None, None, "artifact folder of a new experiment (default <study_dir>/mlflow-artifacts)"
    )


class MLflowTracker(Tracker):
    """Options: ``tracking_uri`` (default the SQLite store above), ``experiment`` (default the
    study name), ``artifact_location`` (default ``<study>/mlflow-artifacts``, for a new experiment)."""

    name = "mlflow"
    module = "mlflow"
    extra = "mlflow"
    Options = _Options

    def __init__(self, study_dir: Path, options: dict[str, tp.Any]) -> None:
        super().__init__(study_dir, options)
        self.uri = str(options.get("tracking_uri") or f"sqlite:///{(self.study_dir / 'mlflow.db').resolve()}")
        self._client: tp.Any = None
        self._experiment_id: str | None = None
        self._run_id: str | None = None

    def _open(self, study: str) -> tuple[tp.Any, str]:
        if self._client is not None and self._experiment_id is not None:
            return self._client, self._experiment_id
        from mlflow import MlflowClient

        from hpo.study import _file_lock

        name = str(self.options.get("experiment") or study)
        db = self._sqlite_file()
        lock = db.with_name(db.name + ".lock") if db is not None else self.study_dir / ".mlflow.lock"
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(lock):  # table creation (migrations) and the experiment: once, by one worker
            client = MlflowClient(tracking_uri=self.uri)
            exp = client.get_experiment_by_name(name)
            if exp is None:
                where = Path(self.options.get("artifact_location") or self.study_dir / "mlflow-artifacts").resolve()
                exp_id = client.create_experiment(name, artifact_location=where.as_uri())
            else:
                exp_id = exp.experiment_id
            if db is not None:
                import sqlite3

                with sqlite3.connect(db) as conn:
                    conn.execute("PRAGMA journal_mode=WAL")  # readers do not block the other workers' writes
        self._client, self._experiment_id = client, exp_id
        return client, exp_id

    def _sqlite_file(self) -> Path | None:
        return Path(self.uri[len("sqlite:///") :]) if self.uri.startswith("sqlite:///") else None

    def start(self, run: TrialRun) -> None:
        from mlflow.entities import Metric, Param, RunTag  # noqa: F401  (fail early without mlflow)

        client, exp_id = self._open(run.study)
        tags = {f"hpo.{k}": v for k, v in run.tags.items()}
        tags.update({"hpo.study": run.study, "hpo.run_dir": str(run.run_dir), "optuna.state": "RUNNING"})
        self._run_id = None
        if run.resume:  # continue the trial's run
            found = _retry(client.search_runs, [exp_id], filter_string=f"tags.`hpo.trial` = '{run.number}'", max_results=1)
            if found:
                self._run_id = found[0].info.run_id
                _retry(client.update_run, self._run_id, status="RUNNING")
        if self._run_id is None:
            self._run_id = _retry(client.create_run, exp_id, run_name=f"trial-{run.number}", tags=tags).info.run_id
            params = [Param(k, str(v)) for k, v in run.params.items()]
            _retry(client.log_batch, self._run_id, params=params)
        else:
            _retry(client.log_batch, self._run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), now, int(epoch))
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and math.isfinite(float(v))
        ]
        _retry(self._client.log_batch, self._run_id, metrics=batch)

    def finish(
        self, state: str, values: list[float] | None, plots: list[Path], weights: list[Path], error: str | None = None
    ) -> None:
        client, run_id = self._client, self._run_id
        for f in plots:
            _retry(client.log_artifact, run_id, str(f), "plots")
        for f in weights:
            _retry(client.log_artifact, run_id, str(f), "weights")
        _retry(client.set_tag, run_id, "optuna.state", state)
        if error:
            _retry(client.set_tag, run_id, "optuna.error", error[:4000])
        for i, v in enumerate(values or []):
            _retry(client.log_metric, run_id, f"objective_{i}", float(v))
        _retry(client.set_terminated, run_id, _STATUS.get(state, "FAILED"))
        self._run_id = None
