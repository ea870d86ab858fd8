"""The chaos suite's small configuration (``benchmarks/chaos_study.py --small``) on the dev cluster.

12 trials run by 4 array tasks plus 2 one-trial tasks while SIGKILL, USR2 preemption,
``scontrol requeue`` and ``scancel`` hit them at random (seeded) times, on journal storage and on
a freshly created PostgreSQL database (without the server restart of the full run: tests do not
restart services). Every invariant must hold: no trial lost or duplicated, none left running,
values equal to uninterrupted runs, no password written, top-k weights collated.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.slurm_tests._cluster import REPO, export_repo_path, unavailable

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _chaos():
    spec = importlib.util.spec_from_file_location("chaos_study", REPO / "benchmarks" / "chaos_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["chaos_study"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("storage", ["journal", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_small_chaos_run_loses_and_duplicates_nothing(slurm_cluster, storage, tmp_path, monkeypatch):
    chaos = _chaos()
    if storage == "postgres":
        from tests.slurm_tests._cluster import PG_MISSING, pg_url

        url = pg_url.__wrapped__()
        if url is None:
            unavailable(PG_MISSING)
        monkeypatch.setenv("HPO_PG_URL", url)
        reason = chaos.postgres_missing()
        if reason:
            unavailable(reason)
    export_repo_path()
    settings = chaos.Settings(trials=12, tasks=4, one_trial_tasks=2, epochs=2, faults=6, timeout_s=420, seed=3, pg_restart=False)
    results, ok = chaos.run(settings, [storage], tmp_path, baseline=False, log=lambda line: None)
    text = chaos.table(results)
    (result,) = results
    assert ok, text
    assert result.counts["lost"] == 0 and result.counts["duplicated"] == 0, text
    assert result.counts["complete"] == settings.trials, text
    assert sum(f.ok for f in result.faults) >= 4, text  # faults really hit running tasks
