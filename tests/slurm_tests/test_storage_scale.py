"""Many concurrent workers on one study: SQLite (16) and PostgreSQL (32), no storage errors.

Workers are local processes started by the launcher's ``--executor local`` (the storage, not
the scheduler, is under test), each running several trials of a trainable that returns at once.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from optuna.trial import TrialState

from slurm.launch import SlurmLauncher
from tests.slurm_tests._cluster import export_repo_path, load, write_study

pytestmark = pytest.mark.slow

STORAGE_ERRORS = re.compile(
    r"database is locked|OperationalError|too many clients|could not connect|"
    r"connection (refused|reset)|Traceback",
    re.IGNORECASE,
)


def _run_workers(study_file: Path, workers: int, trials: int) -> tuple[list, str]:
    export_repo_path()
    launcher = SlurmLauncher(study_file, workers=workers, trials_per_worker=trials, executor="local")
    launcher.launch()
    counts = launcher.wait(progress=False, timeout_s=600)
    logs = "\n".join(p.read_text(errors="replace") for p in sorted(launcher.folder.glob("*_log.*")))
    return counts, logs


def test_16_workers_on_sqlite_never_see_database_is_locked(tmp_path):
    study_file = write_study(tmp_path, storage=f"sqlite:///{tmp_path}/study.db", config={"epochs": 1, "epoch_s": 0.0})
    counts, logs = _run_workers(study_file, 16, 4)
    assert not STORAGE_ERRORS.search(logs), STORAGE_ERRORS.search(logs)
    trials = load(study_file).get_trials()
    assert len(trials) == 64 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(64))
    assert counts.complete == 64


@pytest.mark.postgres
def test_32_workers_on_postgres_have_no_connection_errors(tmp_path, pg_url):
    study_file = write_study(tmp_path, storage=pg_url, config={"epochs": 1, "epoch_s": 0.0})
    counts, logs = _run_workers(study_file, 32, 3)
    assert not STORAGE_ERRORS.search(logs), STORAGE_ERRORS.search(logs)
    password = re.search(r"://[^:]+:([^@]+)@", pg_url).group(1)
    assert f":{password}@" not in logs  # the URL is only ever printed masked
    trials = load(study_file).get_trials()
    assert len(trials) == 96 and all(t.state == TrialState.COMPLETE for t in trials)
    assert counts.complete == 96
