"""Helpers for tests against the real dev cluster (``slurm/dev-cluster/up.sh``).

Nothing here fakes Slurm or PostgreSQL, and nothing here starts them: tests use services that
are up and otherwise skip with a one-line reason (or fail under ``FSPNET_REQUIRE_SERVICES=1``,
which ``.ci/run`` sets after starting the services with ``up.sh``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import textwrap
import time
import typing as tp
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
RUN_DIR = Path(os.environ.get("SLURM_CI_DIR", "/tmp/slurm-ci"))
#: The dev cluster's throw-away PostgreSQL account (up.sh creates it; also written to RUN_DIR/env).
DEV_PG_URL = "postgresql+psycopg2://optuna:optuna@127.0.0.1:5432/optuna"


def slurm_missing() -> str | None:
    """Why the dev cluster's Slurm cannot be used, or ``None`` when it answers. Starts nothing."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm not installed here (no sinfo/sbatch); start the dev cluster with slurm/dev-cluster/up.sh"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return f"sinfo failed ({e}); start the dev cluster with slurm/dev-cluster/up.sh"
    if proc.returncode != 0 or not any(s.startswith(("idle", "mix", "alloc")) for s in proc.stdout.split()):
        return "no Slurm node up (sinfo); start the dev cluster with slurm/dev-cluster/up.sh"
    return None


def export_repo_path() -> None:
    """Jobs inherit this environment (sbatch --export=ALL): let them import this checkout."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO) not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *parts])


def unavailable(reason: str) -> tp.NoReturn:
    """Skip for a missing service, or fail when CI says the services must be there."""
    import pytest

    if os.environ.get("FSPNET_REQUIRE_SERVICES") == "1":
        pytest.fail(f"FSPNET_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def require_slurm() -> None:
    export_repo_path()
    reason = slurm_missing()
    if reason is not None:
        unavailable(reason)


@functools.lru_cache(maxsize=1)
def pg_url() -> str | None:
    """The test PostgreSQL URL (``HPO_PG_URL`` or the dev cluster's), if a server answers."""
    url = os.environ.get("HPO_PG_URL") or DEV_PG_URL
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            conn.exec_driver_sql("select 1")
        engine.dispose()
    except Exception:
        return None
    return url


PG_MISSING = "PostgreSQL not reachable at HPO_PG_URL / 127.0.0.1:5432 (run slurm/dev-cluster/up.sh)"


def require_postgres() -> str:
    url = pg_url.__wrapped__()
    if url is None:
        unavailable(PG_MISSING)
    return url


def write_study(
    folder: Path,
    *,
    storage: str,
    trainable: str = "slurm.testing:counter_trainable",
    config: dict[str, tp.Any] | None = None,
    name: str | None = None,
    **extra: tp.Any,
) -> Path:
    """Write a two-parameter study over a test trainable; returns the study file."""
    name = name or f"t{uuid.uuid4().hex[:10]}"
    study = {
        "name": name,
        "output_dir": str(folder / "out"),
        "storage": storage,
        "metric": "val_loss",
        "direction": "minimize",
        "pruner": "none",
        "sampler": {"name": "RandomSampler"},
        "trainable": trainable,
        "config": {"x": 0.0, "y": 0.0, "epochs": 2, "epoch_s": 0.1, **(config or {})},
        "collate_results": False,
        "tune_params": {
            "x": {"state": True, "suggest": "float", "kwargs": {"low": -1.0, "high": 1.0}, "path": "x"},
            "y": {"state": True, "suggest": "float", "kwargs": {"low": -1.0, "high": 1.0}, "path": "y"},
        },
        **extra,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def load(study_file: Path, storage: str | None = None) -> tp.Any:
    """The Optuna study of a study file."""
    import optuna

    from hpo.study import make_storage

    raw = yaml.safe_load(study_file.read_text())
    return optuna.load_study(study_name=raw["name"], storage=make_storage(storage or raw["storage"]))


def trials_or_empty(study_file: Path, states: tp.Any = None, storage: str | None = None) -> list:
    """The study's trials, or ``[]`` while no worker has created the study yet."""
    try:
        return load(study_file, storage).get_trials(states=states)
    except KeyError:
        return []


def trial_dir(study_file: Path, number: int) -> Path:
    """``<output_dir>/<study>/trials/<number>`` of a study file written by :func:`write_study`."""
    raw = yaml.safe_load(study_file.read_text())
    return Path(raw["output_dir"]) / raw["name"] / "trials" / str(number)


def uninterrupted_values(study_file: Path, trial: tp.Any, run_dir: Path) -> list[float]:
    """Per-epoch ``val_loss`` of ``trial``'s params (``counter_trainable`` study, seed 0) trained
    once without interruption in ``run_dir``: what an exactly resumed trial must report."""
    from hpo.objective import trial_seed
    from slurm.testing import counter_trainable

    raw = yaml.safe_load(study_file.read_text())
    ref: list[float] = []
    config = {**raw["config"], **trial.params, "epoch_s": 0.0, "seed": trial_seed(0, trial.number), "run_dir": str(run_dir)}
    counter_trainable(config, lambda e, m: ref.append(m["val_loss"]))
    return ref


def hpo_run(study_file: Path, n_trials: int, env: dict[str, str] | None = None, **popen: tp.Any) -> subprocess.Popen:
    """Start ``python -m hpo.run`` as a separate worker process."""
    export_repo_path()
    cmd = [sys.executable, "-m", "hpo.run", "--study", str(study_file), "--n-trials", str(n_trials), "--no-progress"]
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=REPO, **popen)


def slurm_worker(
    study_file: Path, n_trials: int, env: dict[str, str] | None = None, *args: str, **popen: tp.Any
) -> subprocess.Popen:
    """Start ``python -m slurm.worker`` (a worker with Slurm's preemption handling) as a process."""
    export_repo_path()
    cmd = [sys.executable, "-m", "slurm.worker", *args, "--study", str(study_file), "--n-trials", str(n_trials), "--no-progress"]
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=REPO, **popen)


def wait_for(predicate: tp.Callable[[], tp.Any], timeout_s: float, what: str, poll_s: float = 0.5) -> tp.Any:
    """Poll ``predicate`` until it returns something truthy."""
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def squeue_empty(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout
    return not out.strip()


def sacct_states(job_id: str) -> list[str]:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", job_id], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()
