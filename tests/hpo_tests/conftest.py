"""Fixtures for hpo tests: study files for the tiny linear-regression trainable."""

from __future__ import annotations

import copy
import typing as tp
from pathlib import Path

import optuna
import pytest
import yaml

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE_STUDY: dict[str, tp.Any] = {
    "name": "tiny",
    "trainable": "hpo.testing:linear_regression",
    "direction": "minimize",
    "metric": "val_loss",
    "seed": 0,
    "sampler": {"name": "TPESampler", "configs": {"n_startup_trials": 4}},
    "pruner": {"name": "HyperbandPruner", "configs": {"min_resource": 1, "max_resource": 9, "reduction_factor": 3}},
    "config": {"epochs": 9},
    "keep_top_k": 2,
    "tune_params": {
        "lr": {"state": True, "suggest": "float", "kwargs": {"low": 0.001, "high": 0.3, "log": True}, "path": "lr"},
        "momentum": {"state": True, "suggest": "float", "kwargs": {"low": 0.0, "high": 0.9}, "path": "momentum"},
    },
}


def _merge(base: dict[str, tp.Any], update: dict[str, tp.Any]) -> dict[str, tp.Any]:
    out = copy.deepcopy(base)
    for k, v in update.items():
        if v is None and k in out:
            del out[k]
        elif isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("tune_params", "pruner", "sampler", "config"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@pytest.fixture
def write_study(tmp_path: Path) -> tp.Callable[..., Path]:
    """``write_study(**changes)`` writes a study file (outputs under tmp_path) and returns its path."""

    def write(filename: str = "study.yaml", **changes: tp.Any) -> Path:
        data = _merge({**BASE_STUDY, "output_dir": str(tmp_path / "out")}, changes)
        path = tmp_path / filename
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def fresh_pg() -> tp.Iterator[str]:
    """A storage URL on PostgreSQL with no Optuna tables yet; dropped afterwards.

    A new database when the test role has CREATEDB, else a new schema of its database (the URL
    sets ``search_path``): either way Optuna creates its tables and types from scratch.
    """
    import uuid

    import sqlalchemy

    from tests.slurm_tests._cluster import PG_MISSING, pg_url, unavailable

    url = pg_url()
    if url is None:
        unavailable(PG_MISSING)
    name = f"hpo_fresh_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        createdb = conn.exec_driver_sql("SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user").scalar()
        conn.exec_driver_sql(f"CREATE {'DATABASE' if createdb else 'SCHEMA'} {name}")
    u = sqlalchemy.engine.make_url(url)
    if createdb:
        fresh = u.set(database=name)
    else:
        fresh = u.update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield fresh.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if createdb:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            else:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        admin.dispose()
